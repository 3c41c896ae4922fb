"""schema.yml is fresh, valid, and documents the contract with pinned names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.yml"


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
    assert response["properties"]["state"]["allOf"] == [
        {"$ref": "#/components/schemas/KernelStatusStateEnum"}
    ]
    assert components["KernelStatusStateEnum"]["enum"] == ["idle", "running", "stopped"]
    assert components["KernelStatusError"]["required"] == ["detail"]


def test_operation_documents_header_and_every_response(schema: dict[str, Any]) -> None:
    operation = schema["paths"]["/api/kernel/status"]["get"]
    assert list(schema["paths"]["/api/kernel/status"]) == ["get"]
    assert operation["parameters"] == [
        {
            "in": "header",
            "name": "Marimo-Session-Id",
            "schema": {"type": "string"},
            "description": operation["parameters"][0]["description"],
            "required": True,
        }
    ]
    responses = operation["responses"]
    assert sorted(responses) == ["200", "400", "401", "403", "404", "405"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KernelStatusResponse"
    }
    for code in ["400", "401", "403", "404", "405"]:
        assert responses[code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/KernelStatusError"
        }


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
