"""The JSON of every answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer, which writes non-ASCII characters as UTF-8, except that a lone
    surrogate (U+D800 to U+DFFF), which UTF-8 cannot encode, is written as its JSON escape.

    A 400 may quote the client's input ('"\\ud800" is not a valid choice.'), and JSON's
    ``\\ud800`` escape makes lone surrogates: DRF's renderer would then raise while Django
    renders the response, after every handler of the view, and Django answer with its HTML 500.
    """

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            # Rare, so the usual answer is not slowed down: again, all escaped (pure ASCII).
            return _ASCII_JSON.render(data, accepted_media_type, renderer_context)


class _ASCIIJSONRenderer(renderers.JSONRenderer):
    ensure_ascii = True


_ASCII_JSON = _ASCIIJSONRenderer()
