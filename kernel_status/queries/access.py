"""Who may do what with a session: the pluggable access policy.

The policy turns a user into a SQL expression that gives, for each session row, an
:class:`~kernel_status.choices.AccessLevel`. Because it is an expression and not a Python
callback, the status endpoint checks access and derives the state in one query.

A host platform with its own membership model subclasses :class:`AccessPolicy`, implements
:meth:`AccessPolicy.access_level_expression`, and points ``KERNEL_STATUS_ACCESS_POLICY`` at it.
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import cache
from typing import TYPE_CHECKING

from django.db.models import Case, Exists, IntegerField, OuterRef, Q, Value, When
from django.utils.module_loading import import_string

from kernel_status.choices import AccessLevel, AccessRole
from kernel_status.conf import conf
from kernel_status.queries import mirror_model

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.models import Expression, Model

    User = AbstractBaseUser | AnonymousUser


class AccessPolicy:
    """Base class of access policies. Subclasses implement :meth:`access_level_expression`."""

    def access_level_expression(self, user: User) -> Expression:
        """An integer expression over ``Session`` rows: the user's :class:`AccessLevel`.

        It is evaluated inside ``Session.objects.annotate(...)``, so it may use ``OuterRef("pk")``
        subqueries and lookups through the session's to-one relations. Many-valued relations
        belong inside ``Exists(...)``: a join over them would duplicate session rows. It must
        not run queries itself.
        """
        raise NotImplementedError

    def compiled_query_key(self, user: User) -> Hashable | None:
        """Opt in to the status endpoint's compiled SQL: the user's kind, or ``None``.

        Return a small hashable value (such as ``"member"``) such that, for all users with equal
        values, :meth:`access_level_expression` builds the same SQL, differing at most in
        parameters equal to ``user.pk``. The endpoint then compiles its query once per value
        and binds each request's user, session and time into it. The access check still runs
        in that query on every request; only the SQL text is reused.

        The default, ``None``, builds the query with the ORM on every request: always correct,
        several times slower. Return ``None`` for users whose expression depends on anything
        else about them (names, groups, flags not covered by the key).
        """
        return None

    def get_access_level(self, user: User, session: Model) -> AccessLevel:
        """The user's access level on one session (one query), for code outside a queryset."""
        level = (
            mirror_model("Session")
            ._default_manager.filter(pk=session.pk)
            .annotate(level=self.access_level_expression(user))
            .values_list("level", flat=True)
            .first()
        )
        return AccessLevel(level or AccessLevel.NONE)


class DefaultAccessPolicy(AccessPolicy):
    """Access from the session's owner and its :class:`~kernel_status.models.SessionAccess` rows.

    - the owner, and users with an ``edit`` grant, may edit;
    - users with a ``view`` grant may view;
    - active superusers may edit every session (they can already change anything in the admin);
    - anonymous and inactive users have no access.
    """

    def access_level_expression(self, user: User) -> Expression:
        if not user.is_authenticated or not user.is_active:
            return Value(AccessLevel.NONE.value, output_field=IntegerField())
        if getattr(user, "is_superuser", False):
            return Value(AccessLevel.EDIT.value, output_field=IntegerField())
        grants = mirror_model("SessionAccess")._default_manager

        def granted(role: AccessRole) -> Exists:
            return Exists(grants.filter(session_id=OuterRef("pk"), user_id=user.pk, role=role))

        return Case(
            When(
                Q(owner_id=user.pk) | granted(AccessRole.EDIT), then=Value(AccessLevel.EDIT.value)
            ),
            When(granted(AccessRole.VIEW), then=Value(AccessLevel.VIEW.value)),
            default=Value(AccessLevel.NONE.value),
            output_field=IntegerField(),
        )

    def compiled_query_key(self, user: User) -> Hashable | None:
        if type(self).access_level_expression is not DefaultAccessPolicy.access_level_expression:
            return None  # a subclass with its own rules must opt in for itself
        if not user.is_authenticated or not user.is_active:
            return "none"
        if getattr(user, "is_superuser", False):
            return "superuser"
        return "member"


@cache
def _load_policy(path: str) -> AccessPolicy:
    policy_class = import_string(path)
    return policy_class()  # type: ignore[no-any-return]


def get_access_policy() -> AccessPolicy:
    """The policy named by ``KERNEL_STATUS_ACCESS_POLICY`` (instances are cached per path)."""
    return _load_policy(conf.KERNEL_STATUS_ACCESS_POLICY)
