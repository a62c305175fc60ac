"""The OpenAPI document is complete: every route the app answers is in it, each with a
summary, a description, its security and the errors it can answer in their real shape; every
schema property and parameter says what it is; the examples are valid. A route or field
added without its docs fails here, not in a user's hands."""

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel

from app import schemas as schemas_package
from app.api import docs
from app.core.config import Settings
from app.main import create_app
from app.serving.front_door import DOORS

# Paths the app answers that are not API routes: the docs themselves, and the dashboard.
NOT_API = (*docs.PATHS, "/openapi.json", "/ui")
OPEN = {("get", "/"), ("get", "/healthz"), ("get", "/readyz")}  # DESIGN.md: no key
METHODS = {"get", "put", "post", "delete", "patch"}
EXAMPLED = (
    "JobSpec",
    "DatasetRef",
    "ModelConfig",
    "TrainingConfig",
    "OptimizerConfig",
    "PredictRequest",
    "PredictResponse",
    "InferRequest",
    "GenerateRequest",
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi")))


@pytest.fixture(scope="module")
def openapi(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_every_route_the_app_answers_is_documented(app: FastAPI, openapi: dict[str, Any]) -> None:
    """Every route of every router (those left out of the schema too), and the front door's
    table: FastAPI sees no route there."""
    routes = [(route.path or "", route.methods) for route in iter_route_contexts(app.routes)]
    served = {
        (method.lower(), path)
        for path, methods in routes
        if not path.startswith(NOT_API)
        for method in (methods or {"?"}) - {"HEAD"}
    } | {("post", door.path) for door in DOORS}
    documented = {(method, path) for method, path, _ in operations(openapi)}
    assert served == documented
    assert {path for path, _ in routes if path.startswith(NOT_API)} >= set(docs.PATHS)


def test_every_operation_has_a_summary_a_description_and_described_parameters(
    openapi: dict[str, Any],
) -> None:
    missing = [
        f"{method} {path}: {what}"
        for method, path, operation in operations(openapi)
        for what in ("summary", "description")
        if not operation.get(what)
    ] + [
        f"{method} {path}: parameter {param['name']}"
        for method, path, operation in operations(openapi)
        for param in operation.get("parameters", [])
        if not param.get("description")
    ]
    assert missing == []


def _undescribed(schema: Any, where: str) -> Iterator[str]:
    if isinstance(schema, dict):
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                yield f"{where}.{name}"
            yield from _undescribed(prop, f"{where}.{name}")
        for key in ("items", "additionalProperties"):
            yield from _undescribed(schema.get(key), f"{where}[]")
        for key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(schema.get(key, [])):
                yield from _undescribed(sub, f"{where}|{i}")


def test_every_schema_property_has_a_description(openapi: dict[str, Any]) -> None:
    missing = [
        found
        for name, schema in openapi["components"]["schemas"].items()
        for found in _undescribed(schema, name)
    ]
    assert missing == [], f"{len(missing)} properties say nothing: {missing}"


def test_protected_routes_declare_the_bearer_scheme_and_open_ones_do_not(
    openapi: dict[str, Any],
) -> None:
    assert openapi["components"]["securitySchemes"]["bearerAuth"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }
    for method, path, operation in operations(openapi):
        if (method, path) in OPEN:
            assert "security" not in operation, path
        else:
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in operation["responses"], (method, path)


def test_errors_are_documented_in_the_shape_the_api_answers(openapi: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    for method, path, operation in operations(openapi):
        if (method, path) not in OPEN | {("get", "/metrics")}:  # no project header there
            assert {"400", "401", "403", "422"} <= set(operation["responses"]), (method, path)
        for status, response in operation["responses"].items():
            assert response["description"], (method, path, status)
            if not status.startswith(("4", "5")) or path in ("/readyz", "/v2/health/ready"):
                continue
            shape = "OpenInferenceError" if path.startswith("/v2/") else "ErrorResponse"
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, (method, path, status)
            assert response["description"] not in ("Validation Error", "Successful Response")


def test_the_event_streams_declare_their_media_type(openapi: dict[str, Any]) -> None:
    events = openapi["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]
    assert set(events["content"]) == {"text/event-stream"}
    generate = openapi["paths"]["/v1/models/{name}/generate"]["post"]["responses"]["200"]
    assert set(generate["content"]) == {"application/json", "text/event-stream"}
    for said in ("`status`", "`metrics`", "`end`", "Last-Event-ID"):
        assert said in events["description"]
    for said in ("`token`", "`done`"):
        assert said in generate["description"]


def _models() -> dict[str, type[BaseModel]]:
    """Every pydantic model of app/schemas, by its name (its component's name)."""
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.iter_modules(schemas_package.__path__):
        module = importlib.import_module(f"app.schemas.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel):
                found[value.__name__] = value
    return found


def test_every_example_is_valid(openapi: dict[str, Any]) -> None:
    """The job spec, its parts, and predict's, infer's and generate's bodies carry examples;
    each is valid for its own model (and tests/integration/test_fuzz.py sends them)."""
    models = _models()
    with_examples = {
        name: schema["examples"]
        for name, schema in openapi["components"]["schemas"].items()
        if "examples" in schema
    }
    for name in EXAMPLED:
        assert with_examples.get(name), f"{name} has no example"
    for name, examples in with_examples.items():
        for example in examples:
            models[name].model_validate(example)


def test_the_docs_pages_load_nothing_from_another_origin(app: FastAPI) -> None:
    assert Path(docs.ASSETS, "swagger-ui-bundle.js").is_file()
    assert app.docs_url is None and app.redoc_url is None  # FastAPI's own load from a CDN
