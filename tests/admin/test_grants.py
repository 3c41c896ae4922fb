"""Editing access grants on the session admin's change form: the only thing an operator edits."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from kernel_status.admin import (
    CellStatusInline,
    ExistingGrantInline,
    NewGrantInline,
)
from kernel_status.choices import AccessRole, ProcessState
from kernel_status.choices import CellRuntimeState as Cell
from kernel_status.models import KernelProcess, Session
from tests.utils import (
    CHANGE_URL,
    CHANGELIST_URL,
    inline_formset,
    session_form,
)

# --- Editing grants --------------------------------------------------------------------


def grant_index(response: Any, user: User) -> int:
    forms = inline_formset(response, ExistingGrantInline).formset.forms
    return next(i for i, form in enumerate(forms) if form.instance.user_id == user.pk)


def test_change_form_edits_adds_and_deletes_grants_only(
    admin_client_: Client, situations: dict[str, Session], users: dict[str, User]
) -> None:
    session = situations["busy-queued"]
    url = reverse(CHANGE_URL, args=[session.pk])
    before_cells = list(session.cells.order_by("cell_id").values_list("cell_id", "status"))
    before_kernel = KernelProcess.objects.filter(pk=session.pk).values().get()
    page = admin_client_.get(url)
    data = session_form(page.content).data
    existing = inline_formset(page, ExistingGrantInline).formset.prefix
    new = inline_formset(page, NewGrantInline).formset.prefix
    cells_prefix = inline_formset(page, CellStatusInline).formset.prefix
    assert existing != new  # both grant inlines are on SessionAccess; Django tells them apart

    data[f"{existing}-{grant_index(page, users['viewer'])}-role"] = AccessRole.EDIT
    data[f"{existing}-{grant_index(page, users['inactive'])}-DELETE"] = "on"
    data[f"{new}-0-user"] = str(users["stranger"].pk)
    data[f"{new}-0-role"] = AccessRole.VIEW
    # Read-only values sent anyway (a tampered form) are ignored.
    data |= {
        "session_id": "hijacked",
        "notebook": "evil.py",
        "owner": str(users["stranger"].pk),
        f"{cells_prefix}-0-status": Cell.IDLE,
        "kernel-0-state": ProcessState.STOPPED,
        "_save": "Save",
    }
    response = admin_client_.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert response["Location"] == reverse(CHANGELIST_URL)
    assert dict(session.grants.values_list("user__username", "role")) == {
        "editor": AccessRole.EDIT,
        "viewer": AccessRole.EDIT,
        "stranger": AccessRole.VIEW,
    }
    session.refresh_from_db()
    assert (session.session_id, session.notebook, session.owner) == (
        "busy-queued",
        "nb.py",
        users["owner"],
    )
    assert list(session.cells.order_by("cell_id").values_list("cell_id", "status")) == (
        before_cells
    )
    assert KernelProcess.objects.filter(pk=session.pk).values().get() == before_kernel


def test_change_form_rejects_a_second_grant_for_the_same_user(
    admin_client_: Client, situations: dict[str, Session], users: dict[str, User]
) -> None:
    session = situations["busy-queued"]
    url = reverse(CHANGE_URL, args=[session.pk])
    page = admin_client_.get(url)
    data = session_form(page.content).data
    new = inline_formset(page, NewGrantInline).formset.prefix
    data |= {f"{new}-0-user": str(users["editor"].pk), f"{new}-0-role": AccessRole.VIEW}

    response = admin_client_.post(url, data)

    # The form again, with the error (Django 5.2 alone let this reach the database's
    # unique constraint: IntegrityError, a server error).
    assert response.status_code == 200
    assert inline_formset(response, NewGrantInline).formset.errors == [
        {"__all__": ["Session access grant with this Session and User already exists."]}
    ]
    assert dict(session.grants.values_list("user__username", "role")) == {
        "editor": AccessRole.EDIT,
        "viewer": AccessRole.VIEW,
        "inactive": AccessRole.EDIT,
    }


def test_change_form_rejects_two_new_grants_for_the_same_user(
    admin_client_: Client, situations: dict[str, Session], users: dict[str, User]
) -> None:
    session = situations["busy-queued"]
    url = reverse(CHANGE_URL, args=[session.pk])
    page = admin_client_.get(url)
    data = session_form(page.content).data
    new = inline_formset(page, NewGrantInline).formset.prefix
    stranger = str(users["stranger"].pk)
    data |= {
        f"{new}-TOTAL_FORMS": "2",
        f"{new}-0-user": stranger,
        f"{new}-0-role": AccessRole.VIEW,
        f"{new}-1-user": stranger,
        f"{new}-1-role": AccessRole.EDIT,
    }

    response = admin_client_.post(url, data)

    assert response.status_code == 200
    assert inline_formset(response, NewGrantInline).formset.non_form_errors() == [
        "Please correct the duplicate data for user."
    ]
    assert not session.grants.filter(user=users["stranger"]).exists()
