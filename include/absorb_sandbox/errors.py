"""Absorb's error body and the exception that carries it through the app."""

from __future__ import annotations

import json

TERMS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationFailed",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
}


class ApiError(Exception):
    """An error answered with Absorb's body ``{validations, code, message, term, _meta}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        validations: list[str] | None = None,
        term: str | None = None,
        meta: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.validations = validations if validations is not None else [message]
        self.term = term or TERMS.get(status, "Error")
        self.meta = meta or {}
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.status, self.message, self.validations, self.term, self.meta)


def error_body(
    status: int,
    message: str,
    validations: list[str] | None = None,
    term: str | None = None,
    meta: dict[str, str] | None = None,
) -> dict:
    return {
        "validations": validations if validations is not None else [message],
        "code": status,
        "message": message,
        "term": term or TERMS.get(status, "Error"),
        "_meta": {str(k): str(v) for k, v in (meta or {}).items()},
    }


def error_bytes(status: int, message: str, **kwargs) -> bytes:
    return json.dumps(error_body(status, message, **kwargs)).encode()


def invalid_guid(name: str) -> ApiError:
    return ApiError(422, f"Invalid format provided for {name}", meta={"field": name})


def not_found(what: str, identifier: str | None = None) -> ApiError:
    meta = {"id": identifier} if identifier else {}
    return ApiError(404, f"{what} not found.", meta=meta)
