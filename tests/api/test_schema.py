"""schema.yml is fresh, valid, and documents the contract with pinned names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from kernel_status.mirror.wire import EVENT_SERIALIZERS
from kernel_status.validators import cell_id_problem, session_id_problem

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema.yml"
OPERATIONS = [
    ("/api/kernel/status", "get"),
    ("/api/kernel/events", "post"),
    ("/api/kernel/sessions", "get"),
]
ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("schema") / "schema.yml"
    # --fail-on-warn makes any drf-spectacular warning an error here.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return path.read_text()


@pytest.fixture(scope="module")
def schema(generated: str) -> dict[str, Any]:
    return yaml.safe_load(generated)  # type: ignore[no-any-return]


def test_committed_schema_is_fresh(generated: str) -> None:
    assert SCHEMA_PATH.read_text() == generated, "schema.yml is stale: run `make schema`"


def test_response_component_and_enum_names_are_pinned(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    response = components["KernelStatusResponse"]
    assert response["required"] == ["state"]
    # Optional and nullable: clients generated before it existed keep working.
    assert response["properties"]["last_activity"] == {
        "type": "string",
        "format": "date-time",
        "nullable": True,
        "description": response["properties"]["last_activity"]["description"],
    }
    assert response["properties"]["state"]["allOf"] == [
        {"$ref": "#/components/schemas/KernelStatusStateEnum"}
    ]
    assert components["KernelStatusStateEnum"]["enum"] == ["idle", "running", "stopped"]
    assert components["KernelStatusError"]["required"] == ["detail"]


def test_operation_documents_header_and_every_response(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/kernel/status"]["get"]
    assert list(schema["paths"]["/api/kernel/status"]) == ["get"]
    by_name = {p["name"]: p for p in operation["parameters"]}
    assert by_name == {
        "If-None-Match": {
            "in": "header",
            "name": "If-None-Match",
            "schema": {"type": "string"},
            "description": by_name["If-None-Match"]["description"],
        },
        "Marimo-Session-Id": {
            "in": "header",
            "name": "Marimo-Session-Id",
            "schema": ID_SCHEMA,
            "description": by_name["Marimo-Session-Id"]["description"],
            "required": True,
        },
        "Prefer": {
            "in": "header",
            "name": "Prefer",
            "schema": {"type": "string"},
            "description": by_name["Prefer"]["description"],
            "examples": {"Wait": {"value": "wait=30"}},
        },
    }
    assert "RFC 7240" in by_name["Prefer"]["description"]
    responses = operation["responses"]
    assert sorted(responses) == ["200", "304", "400", "401", "403", "404", "405", "429", "503"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KernelStatusResponse"
    }
    for code in ["200", "304"]:
        assert responses[code]["headers"]["ETag"]["schema"] == {"type": "string"}
        assert responses[code]["headers"]["Preference-Applied"]["schema"] == {"type": "string"}
    assert "content" not in responses["304"]
    for code in ["400", "401", "403", "404", "405", "429", "503"]:
        assert responses[code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/KernelStatusError"
        }


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_429_and_503_are_documented_with_retry_after(
    schema: dict[str, Any], path: str, method: str
) -> None:
    for code in ["429", "503"]:
        response = schema["paths"][path][method]["responses"][code]
        assert response["headers"] == {
            "Retry-After": {
                "schema": {"type": "integer"},
                "description": "Seconds to wait before retrying.",
            }
        }


def test_every_event_pins_its_op_and_the_discriminator_maps_every_op(
    schema: dict[str, Any],
) -> None:
    components = schema["components"]["schemas"]
    union = components["KernelEvent"]
    mapping = union["discriminator"]["mapping"]
    assert union["discriminator"]["propertyName"] == "op"
    assert sorted(mapping) == sorted(EVENT_SERIALIZERS)
    assert sorted(ref["$ref"] for ref in union["oneOf"]) == sorted(mapping.values())
    for op, ref in mapping.items():
        event = components[ref.rsplit("/", 1)[1]]
        assert event["required"] == ["data", "op"]
        [enum_ref] = event["properties"]["op"]["allOf"]
        assert components[enum_ref["$ref"].rsplit("/", 1)[1]]["enum"] == [op]


def test_batch_errors_are_optional_in_400_bodies(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["KernelEventBatchError"]
    assert error["required"] == ["detail"]
    assert "errors" in error["properties"]


def test_cell_ids_and_causes_are_constrained_as_the_server_does(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["CellOpData"]["properties"]["cell_id"] == ID_SCHEMA
    assert components["KernelStoppedData"]["properties"]["cause"] == {
        "type": "string",
        "maxLength": 255,
    }


@pytest.mark.parametrize(
    "value",
    ["a", "sésame", " a ", "x" * 128, "", " ", "\u00a0\u3000", "a\x00", "a\n", "a\x85", "x" * 129],
)
def test_id_schema_accepts_exactly_what_the_server_accepts(value: str) -> None:
    by_schema = (
        ID_SCHEMA["minLength"] <= len(value) <= ID_SCHEMA["maxLength"]
        # fullmatch: in ECMA-262, OpenAPI's dialect, "$" is the end of the input; in Python's
        # re.search it may also stand before a final newline.
        and re.fullmatch(ID_SCHEMA["pattern"], value) is not None
    )
    assert by_schema == (session_id_problem(value) is None) == (cell_id_problem(value) is None)


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb"])
def test_a_lone_surrogate_is_the_one_rule_the_pattern_does_not_state(value: str) -> None:
    # ECMA-262 without the u flag reads U+1F600 as two surrogates, so a class that excluded
    # them would refuse emoji in clients; UTF-8, the body's encoding, cannot carry one anyway.
    assert re.fullmatch(ID_SCHEMA["pattern"], value) is not None
    assert session_id_problem(value) == cell_id_problem(value) is not None


def test_listing_documents_filters_pages_and_errors(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/kernel/sessions"]["get"]
    assert operation["operationId"] == "kernel_sessions"
    assert {p["name"] for p in operation["parameters"]} == {
        "state",
        "idle_for",
        "cursor",
        "page_size",
    }
    responses = operation["responses"]
    assert sorted(responses) == ["200", "400", "401", "404", "405", "429", "503"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PaginatedKernelSessionList"
    }
    for code in ["400", "401", "404", "405", "429", "503"]:
        assert responses[code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/KernelStatusError"
        }
    entry = schema["components"]["schemas"]["KernelSession"]
    assert sorted(entry["required"]) == sorted(
        ["session_id", "notebook", "state", "last_activity", "queued_cells", "running_cells"]
    )


def test_security_comes_from_authentication_classes(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/kernel/status"]["get"]
    assert operation["security"] == [{"tokenAuth": []}, {"cookieAuth": []}]
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}
    assert all(p["name"] != "Authorization" for p in operation["parameters"])


@pytest.mark.django_db
def test_example_project_serves_schema_and_offline_docs() -> None:
    client = APIClient()
    schema_response = client.get("/api/schema/")
    assert schema_response.status_code == 200
    assert b"/api/kernel/status" in schema_response.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert "cdn.jsdelivr.net" not in html
    assert "unpkg.com" not in html


def test_the_change_stream_is_documented_as_server_sent_events(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/kernel/sessions/stream"]["get"]
    assert operation["operationId"] == "kernel_sessions_stream"
    ok = operation["responses"]["200"]["content"]
    assert list(ok) == ["text/event-stream"]
    assert ok["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/KernelSessionEvent"}
    event = schema["components"]["schemas"]["KernelSessionEvent"]
    assert set(event["properties"]) == {"id", "event", "data"}
    assert sorted(operation["responses"]) == ["200", "400", "401", "429", "501", "503"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"state", "idle_for", "Last-Event-ID"} <= names
