"""Validation of session and cell ids, shared by the models, the header, the write API and
the schema (one pattern, so generated clients check exactly what the server checks), and the
column limits of the other mirrored values."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

SESSION_ID_MAX_LENGTH = 128
CELL_ID_MAX_LENGTH = 128
# Column limits of KernelProcess.exit_code (a 32-bit integer) and exit_cause.
EXIT_CODE_MIN, EXIT_CODE_MAX = -(2**31), 2**31 - 1
EXIT_CAUSE_MAX_LENGTH = 255

# No control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F), and at least one
# character that is not whitespace. Written in the subset of regular expressions that Python
# and ECMA-262 (OpenAPI's dialect) read alike; the server matches it with re.fullmatch.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
ID_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"
_ID_RE = re.compile(ID_PATTERN)
_CONTROL_RE = re.compile(rf"[{_CONTROL}]")
# Lone surrogates (U+D800-U+DFFF): JSON's "\ud800" escape makes one, but no UTF-8 text holds
# it, so PostgreSQL refuses it in a JSON parameter and MariaDB in a utf8mb4 column. Not in
# ID_PATTERN: ECMA-262 (without the u flag) sees every character above U+FFFF as two
# surrogates, so the same class would refuse emoji there; clients cannot send one in UTF-8.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def id_schema(max_length: int) -> dict[str, object]:
    """The OpenAPI schema of an id, the same constraints as :func:`_id_problem` but one: no
    lone surrogates, which UTF-8 cannot carry (see ``_SURROGATE_RE``)."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": ID_PATTERN}


def _id_problem(value: str, max_length: int) -> str | None:
    if _ID_RE.fullmatch(value) is not None:
        if len(value) > max_length:
            return _too_long(max_length)
        if _SURROGATE_RE.search(value):
            return str(_("contains a lone surrogate, which is not valid Unicode"))
        return None
    if _CONTROL_RE.search(value):
        return str(_("contains control characters"))
    return str(_("is empty"))


def _too_long(max_length: int) -> str:
    return str(_("is longer than %(max)d characters") % {"max": max_length})


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
