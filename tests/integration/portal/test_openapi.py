"""The OpenAPI description (portal/openapi.py): valid OpenAPI 3.1, served without a login,
and in step with the routes the app really has."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from portal.openapi import ERRORS, TAGS

if TYPE_CHECKING:
    from tests.clients import Bearer

CONVERTER = re.compile(r"<(?:[^<>]*:)?(\w+)>")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def api_routes(app: Flask) -> set[tuple[str, str]]:
    """Every (method, path) the app answers under /api/, its converters written {param}."""
    return {
        (method.lower(), CONVERTER.sub(r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in (rule.methods or set()) - IGNORED_METHODS
    }


def described(document: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def test_openapi_served_without_login(client: FlaskClient) -> None:
    answer = client.get("/api/v1/openapi.json")

    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    document = answer.get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)  # openapi-spec-validator: the 3.1 meta-schema and every $ref
    schemathesis.openapi.from_dict(document).validate()


def test_openapi_describes_every_route(app: Flask, client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    routes = api_routes(app)

    missing = sorted(routes - described(document))
    assert not missing, f"routes missing from portal/openapi.py: {missing}"
    phantom = sorted(described(document) - routes)
    assert not phantom, f"portal/openapi.py describes routes that do not exist: {phantom}"


def test_openapi_operations_are_complete(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    tags = {name for name, _ in TAGS}
    ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation["summary"], where
            assert set(operation["tags"]) <= tags, where
            ids.append(operation["operationId"])
            public = operation.get("security") == []
            statuses = {int(s) for s in operation["responses"]}
            assert public or 401 in statuses, f"{where} can answer 401"
            assert "requestBody" not in operation or 400 in statuses, f"{where} can answer 400"
            assert statuses - {200, 201, 202} <= set(ERRORS), where
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), where
    assert len(ids) == len(set(ids))


def test_openapi_retry_after_on_every_429(client: FlaskClient) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    too_many = document["components"]["responses"]["E429"]

    assert too_many["headers"]["Retry-After"]["required"] is True
    for item in document["paths"].values():
        for operation in item.values():
            answer = operation["responses"].get("429")
            assert answer is None or answer == {"$ref": "#/components/responses/E429"}


def test_csv_answer_names_its_charset_once(client: FlaskClient, bearer: Bearer) -> None:
    answer = client.get(
        "/api/v1/datasets/health/mock?table=visits&rows=2", headers=bearer("analyst")
    )

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
