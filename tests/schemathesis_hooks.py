"""schemathesis hooks and checks for its run against uvicorn
(tests/integration/test_schemathesis.py).

Loaded by the CLI through ``SCHEMATHESIS_HOOKS``. ``KS_BASE_URL``, ``KS_TOKEN`` and
``KS_SESSION_ID`` name the server, a token and a session the token's user may edit.

- Blocking reads: half of the generated ``GET /api/kernel/status`` cases get ``Prefer:
  wait=1`` and an ``If-None-Match``: the session's current ``ETag`` (read from the server just
  before) for half of those, so the wait's 304 with ``Preference-Applied`` is reached, a tag
  that is not current for the others (200 at once); schemathesis then checks statuses and
  headers against the schema as usual.
- The change stream: every event's ``data`` is JSON that the schema's ``x-data-schemas``
  describes under the event's name (OpenAPI 3.0 has no ``contentSchema`` to say it).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # drf-spectacular's dependency; no stubs
import schemathesis
import yaml

STATUS_PATH = "/api/kernel/status"
STREAM_PATH = "/api/kernel/sessions/stream"
SCHEMA = yaml.safe_load((Path(__file__).resolve().parent.parent / "schema.yml").read_text())
_EVENT = SCHEMA["components"]["schemas"]["KernelSessionEvent"]
DATA_SCHEMAS: dict[str, Any] = _EVENT["properties"]["data"]["x-data-schemas"]
_counter = itertools.count()


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema says it."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if not node.get("nullable"):
        return converted
    if "type" in converted:
        return {**converted, "type": [converted["type"], "null"]}
    return {"anyOf": [converted, {"type": "null"}]}


COMPONENTS = json_schema(SCHEMA["components"])


def current_etag() -> str:
    answer = httpx.get(
        os.environ["KS_BASE_URL"] + STATUS_PATH,
        headers={
            "Authorization": f"Token {os.environ['KS_TOKEN']}",
            "Marimo-Session-Id": os.environ["KS_SESSION_ID"],
        },
        timeout=10,
    )
    answer.raise_for_status()
    return answer.headers["ETag"]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.path != STATUS_PATH:
        return
    turn = next(_counter) % 4
    if turn >= 2:
        return  # left as generated
    case.headers = dict(case.headers or {})
    case.headers["Prefer"] = "wait=1"
    # The current tag (held, then 304), or one that is not (200 at once).
    case.headers["If-None-Match"] = current_etag() if turn == 0 else '"not-current"'


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """A line per answer in ``KS_TALLY``: the test asserts which paths the run took."""
    applied = response.headers.get("preference-applied", ["-"])[0]
    with open(os.environ["KS_TALLY"], "a") as tally:
        tally.write(f"{case.operation.path} {response.status_code} {applied}\n")


def sse_events(text: str) -> list[dict[str, str]]:
    """The events of a text/event-stream body (the fields this server writes)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append(fields)
    return events


@schemathesis.check
def stream_event_data_conforms(ctx: Any, response: Any, case: Any) -> bool | None:
    if case.operation.path != STREAM_PATH or response.status_code != 200:
        return None
    events = sse_events(response.content.decode())
    assert events, "a 200 stream with no event"
    for position, fields in enumerate(events):
        name = fields.get("event", "message")
        assert name in DATA_SCHEMAS, f"event #{position}: {name!r} is not documented"
        data = json.loads(fields["data"])
        schema = {**json_schema(DATA_SCHEMAS[name]), "components": COMPONENTS}
        try:
            jsonschema.validate(data, schema)
        except jsonschema.ValidationError as error:
            raise AssertionError(f"event #{position} ({name}): {error.message}") from None
    # The stream was read whole: it ends at its lifetime, after its snapshot.
    names = [fields.get("event") for fields in events]
    assert "ready" in names, names
    assert names[-1] == "reconnect", names
    with open(os.environ["KS_TALLY"], "a") as tally:
        tally.write(f"checked-stream {len(events)}\n")
    return True
