"""Completes FastAPI's generated OpenAPI document with what the middleware enforces:
API-key and bearer-token security, ``x-api-version``, 401/413/429 answers (429 with ``Retry-After``),
and Absorb's error body for every error."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
WRITE_METHODS = ("post", "put", "patch", "delete")


def _error(description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}
    if headers:
        response["headers"] = headers
    return response


def customise_openapi(app: FastAPI) -> None:
    def build() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(
            {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "The portal's private key (GUID).",
                },
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Token from POST /authenticate (the raw token also works).",
                },
            }
        )
        retry_after = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "string", "pattern": r"^\d+$"},
            }
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                operation["security"] = (
                    [{"apiKey": []}] if path == "/authenticate" else [{"apiKey": [], "bearerToken": []}]
                )
                operation.setdefault("parameters", []).append(
                    {
                        "name": "x-api-version",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "enum": ["2"]},
                        "description": "API version (2).",
                    }
                )
                responses = operation.setdefault("responses", {})
                responses.pop("422", None) if "422" in responses and _is_fastapi_422(
                    responses["422"]
                ) else None
                responses.setdefault("401", _error("Missing or invalid x-api-key or token"))
                responses.setdefault("422", _error("Validation failed"))
                responses.setdefault("429", _error("Rate limit exceeded", retry_after))
                if method in WRITE_METHODS:
                    responses.setdefault("400", _error("Malformed or missing body"))
                    responses.setdefault("413", _error("Request body too large"))
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = build


def _is_fastapi_422(response: dict) -> bool:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return ref.endswith("/HTTPValidationError")
