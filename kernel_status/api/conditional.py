"""Conditional GETs: an ETag computed from the body, and 304 when the client has it already.

The tag is a hash of the exact bytes of the JSON body, so it changes exactly when the body
changes, and a 304 tells a caller nothing that the 200 it replaces would not. Callers get a
304 only after every permission check has passed.
"""

from __future__ import annotations

import hashlib
from base64 import urlsafe_b64encode

from django.utils.http import parse_etags


def body_etag(body: bytes) -> str:
    """A strong entity tag for these body bytes: 128 bits of their SHA-256, base64url (22
    characters, shorter than hex on every poll)."""
    digest = hashlib.sha256(body).digest()[:16]
    return f'"{urlsafe_b64encode(digest).rstrip(b"=").decode()}"'


def client_has_current(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` says the client has the current answer, so 304 replaces it
    (RFC 9110 13.1.2): the header lists ``etag`` (weak comparison, as for GET) or is ``*``."""
    if not if_none_match:
        return False
    tags = parse_etags(if_none_match)
    if tags == ["*"]:
        return True
    bare = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == bare for tag in tags)
