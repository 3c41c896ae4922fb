"""Validation of session and cell ids, shared by the models, the header and the write API."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

SESSION_ID_MAX_LENGTH = 128
CELL_ID_MAX_LENGTH = 128


def _id_problem(value: str, max_length: int) -> str | None:
    if not value.strip():
        return str(_("is empty"))
    if len(value) > max_length:
        return str(_("is longer than %(max)d characters") % {"max": max_length})
    if any(unicodedata.category(char) == "Cc" for char in value):
        return str(_("contains control characters"))
    return None


def session_id_problem(value: str) -> str | None:
    """Say what is wrong with ``value`` as a session id, or ``None`` if it is fine."""
    return _id_problem(value, SESSION_ID_MAX_LENGTH)


def cell_id_problem(value: str) -> str | None:
    """Say what is wrong with ``value`` as a cell id, or ``None`` if it is fine."""
    return _id_problem(value, CELL_ID_MAX_LENGTH)


def validate_session_id(value: str) -> None:
    """Model field validator: reject empty, over-long and control-character ids."""
    problem = session_id_problem(value)
    if problem is not None:
        raise ValidationError(
            _("Session id %(problem)s."), code="invalid_session_id", params={"problem": problem}
        )
