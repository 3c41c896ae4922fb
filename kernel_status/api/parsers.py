"""What HTTP does with a batch's body before ingestion: its length and its JSON.

DRF reads the body as a stream, past Django's own check of ``DATA_UPLOAD_MAX_MEMORY_SIZE``,
so the limits are checked here: 411 without a length, 413 for too many bytes, 400 for a body
shorter than its length, 400 for JSON nested too deeply, and 413 for too many events before
any is validated.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.request import Request

from kernel_status.conf import conf
from kernel_status.exceptions import BatchTooLarge, BodyTooLarge, LengthRequired


class EventBatchParser(JSONParser):
    """DRF's JSON parser, with a 400 for JSON nested too deeply for Python's json module, and a
    413 for more events than ``KERNEL_STATUS_MAX_BATCH_SIZE`` before any is validated.

    ``json.loads`` recurses once per level and raises ``RecursionError`` (not ``ValueError``,
    which DRF catches) about 1,000 levels down.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        # The whole body, as json.load would read it: its size was checked (check_length).
        raw: bytes = stream.read()
        announced = _content_length((parser_context or {}).get("request"))
        if announced is not None and len(raw) < announced:
            # The client closed its side early: WSGI servers hand on what arrived, which may
            # be valid JSON that is not what was sent.
            raise ParseError(
                f"The body has {len(raw)} bytes, fewer than its Content-Length ({announced})."
            )
        try:
            body = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        if isinstance(body, Mapping):
            check_batch_size(body.get("events"))
        return body


def _content_length(request: Request | None) -> int | None:
    try:
        return int(request.META["CONTENT_LENGTH"]) if request is not None else None
    except (KeyError, ValueError):
        return None


def check_length(request: Request) -> None:
    """411 for a body without ``Content-Length``, 413 for one over Django's upload limit.

    DRF reads the body as a stream, past Django's own check of ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
    """
    meta = request.META
    if not meta.get("CONTENT_LENGTH") and meta.get("HTTP_TRANSFER_ENCODING"):
        raise LengthRequired()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if limit is not None and length > limit:
        raise BodyTooLarge(
            f"The body has {length} bytes; at most {limit} are accepted "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE)."
        )


def check_batch_size(events: Any) -> None:
    """413 for a list of more events than ``KERNEL_STATUS_MAX_BATCH_SIZE``."""
    limit = conf.KERNEL_STATUS_MAX_BATCH_SIZE
    if isinstance(events, list) and len(events) > limit:
        raise BatchTooLarge(
            f"The batch has {len(events)} events; at most {limit} are accepted per request."
        )
