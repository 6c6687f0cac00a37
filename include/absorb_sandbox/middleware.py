"""The ASGI layer in front of the routes: stats, body-size guard, faults, rate limit and auth.

Written as plain ASGI (not ``BaseHTTPMiddleware``) because it runs on every request and the
sandbox must serve hundreds of authenticated GETs per second from one process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import TYPE_CHECKING

from absorb_sandbox.errors import error_bytes
from absorb_sandbox.faults import FaultInjector, RateLimiter, rename_fields, retry_after_header

if TYPE_CHECKING:
    from absorb_sandbox.auth import TokenStore
    from absorb_sandbox.shared import SharedState

ADMIN_PREFIX = "/_sandbox"
DOC_PATHS = frozenset({"/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"})
AUTHENTICATE_PATH = "/authenticate"
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
MAX_BODY_BYTES = 1024 * 1024
ABORT_EXTENSION = "absorb_sandbox.abort"

log = logging.getLogger("absorb_sandbox")


class Stats:
    """Request counters for ``GET /_sandbox/stats``, kept in the shared state file so that every
    server process adds to (and reads) the same counters.

    ``by_status`` counts what the client got (``dropped``: the connection was closed without an
    answer, by an injected ``drop``/``lost`` fault); ``injected`` counts the injected faults by
    kind; ``internal_errors`` counts requests the sandbox itself failed on (an uncaught
    exception, answered 500): each is a sandbox defect, never an injected fault. ``by_worker``
    counts the requests each server process (by pid) answered; ``paging`` counts how paged
    listings were served (``first`` page, ``keyset`` seek after the page before, ``offset``
    jump, ``count_cached`` / ``count_computed`` for ``totalItems``).
    """

    SCALARS = ("total_requests", "authenticate_calls", "write_calls", "internal_errors")
    GROUPS = {"route": "by_route", "status": "by_status", "injected": "injected", "worker": "by_worker"}

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self.worker = str(os.getpid())

    def reset(self) -> None:
        self.state.reset_stats()

    def record(
        self,
        method: str,
        path: str,
        template: str,
        status: int | None,
        *,
        fault: str | None = None,
        internal_error: bool = False,
    ) -> None:
        counters = [
            ("total", "total_requests"),
            ("route", f"{method} {template}"),
            ("status", "dropped" if status is None else str(status)),
            ("worker", self.worker),
        ]
        if path == AUTHENTICATE_PATH:
            counters.append(("total", "authenticate_calls"))
        elif method in WRITE_METHODS:
            counters.append(("total", "write_calls"))
        if fault:
            counters.append(("injected", fault))
        if internal_error:
            counters.append(("total", "internal_errors"))
        self.state.add(counters)

    def record_internal_error(self) -> None:
        """An internal error after the answer had started (the request itself is counted)."""
        self.state.add([("total", "internal_errors")])

    def record_paging(self, kind: str) -> None:
        self.state.add([("paging", kind)])

    def snapshot(self) -> dict:
        data: dict = {name: 0 for name in self.SCALARS}
        data.update({group: {} for group in self.GROUPS.values()})
        data["paging"] = {}
        for kind, name, count in self.state.counters():
            if kind == "total":
                data[name] = count
            else:
                data[self.GROUPS.get(kind, kind)][name] = count
        return data


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def bearer_token(authorization: str | None) -> str | None:
    """``Bearer <t>`` or the raw token (some clients send it bare, and Absorb accepts it)."""
    if not authorization:
        return None
    value = authorization.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value.strip('"') or None


class SandboxMiddleware:
    def __init__(
        self,
        app,
        *,
        api_key: str,
        tokens: TokenStore,
        stats: Stats,
        faults: FaultInjector,
        limiter: RateLimiter,
        route_template,
    ):
        self.app = app
        self.api_key = api_key
        self.tokens = tokens
        self.stats = stats
        self.faults = faults
        self.limiter = limiter
        self.route_template = route_template

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path.startswith(ADMIN_PREFIX) or path in DOC_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status_box: list[int] = []
        outcome: dict = {"fault": None, "internal_error": False}

        async def recording_send(message):
            if message["type"] == "http.response.start":
                status_box.append(message["status"])
                # Counted before the answer leaves: a client that reads /_sandbox/stats next
                # (perhaps from another worker process) already sees this request.
                self._record(scope, path, method, message["status"], outcome)
            await send(message)

        try:
            await self._handle(scope, receive, recording_send, path, method, outcome)
        except ConnectionAbortedError:  # an injected drop where the server offers no abort
            raise
        except Exception:
            # The sandbox's own failure (a defect, not a fault): answered 500 with Absorb's body
            # when nothing was sent yet, and counted apart from injected drops.
            outcome["internal_error"] = True
            log.exception("sandbox internal error on %s %s", method, path)
            if status_box:
                self.stats.record_internal_error()
                raise
            await _send_error(recording_send, 500, "Internal error in the sandbox.")
        finally:
            if not status_box:  # closed without an answer
                self._record(scope, path, method, None, outcome)

    def _record(self, scope, path: str, method: str, status: int | None, outcome: dict) -> None:
        self.stats.record(
            method,
            path,
            self._template(scope),
            status,
            fault=outcome["fault"],
            internal_error=outcome["internal_error"],
        )

    def _template(self, scope) -> str:
        route = scope.get("route")
        if route is not None and hasattr(route, "path_format"):
            return route.path_format
        return self.route_template(scope)

    async def _handle(self, scope, receive, send, path: str, method: str, outcome: dict) -> None:
        decision = self.faults.decide(write=method in WRITE_METHODS and path != AUTHENTICATE_PATH)
        outcome["fault"] = decision.kind
        renames = self.faults.spec.renames
        if renames and method == "GET":
            send = _renaming_send(send, dict(renames), outcome)
        if decision.delay_seconds:
            await asyncio.sleep(decision.delay_seconds)
        if decision.drop:
            await self._drop(scope)
            return
        if decision.status is not None:
            headers = {"retry-after": "1"} if decision.status == 429 else {}
            message = "Too many requests (injected fault)." if decision.status == 429 else "Injected fault."
            await _send_error(send, decision.status, message, headers)
            return
        api_key = _header(scope, b"x-api-key")
        wait = self.limiter.acquire(api_key or "")
        if wait:
            await _send_error(
                send, 429, "Rate limit exceeded; retry later.", {"retry-after": retry_after_header(wait)}
            )
            return
        if api_key != self.api_key:
            await _send_error(send, 401, "Missing or invalid x-api-key header.")
            return
        version = _header(scope, b"x-api-version")
        if version is not None and version.strip() not in ("2", ""):
            await _send_error(
                send, 400, f"Unsupported x-api-version {version.strip()!r}; this sandbox speaks 2."
            )
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _send_error(send, 413, f"Request body larger than {MAX_BODY_BYTES} bytes.")
            return
        if path != AUTHENTICATE_PATH:
            token = bearer_token(_header(scope, b"authorization"))
            session = self.tokens.check(token) if token else None
            if session is None:
                await _send_error(
                    send, 401, "Missing, invalid, replaced or expired token; authenticate again."
                )
                return
            scope.setdefault("state", {})["username"] = session.username
        if decision.lost or decision.lost_status is not None:
            await self._apply_then_lose(scope, receive, send, decision)
            return
        await self.app(scope, _limited_receive(receive), send)

    async def _apply_then_lose(self, scope, receive, send, decision) -> None:
        """Runs the write to completion (its change is committed), throws its answer away, then
        closes the connection (``lost``) or answers 502/503 (``lost5xx``)."""

        async def discard(_message) -> None:
            return None

        await self.app(scope, _limited_receive(receive), discard)
        if decision.lost:
            await self._drop(scope)
            return
        await _send_error(
            send, decision.lost_status, "Bad gateway (injected fault after the write was applied)."
        )

    @staticmethod
    async def _drop(scope) -> None:
        abort = scope.get("extensions", {}).get(ABORT_EXTENSION)
        if abort is None:
            raise ConnectionAbortedError("dropped connection (injected fault)")
        abort()
        for _ in range(3):  # let the server notice the closed connection before we return
            await asyncio.sleep(0)


def _renaming_send(send, renames: dict[str, str], outcome: dict):
    """The ``rename`` fault: holds the answer, renames its JSON fields, then sends it."""
    held: dict = {}
    chunks: list[bytes] = []

    async def wrapped(message):
        if message["type"] == "http.response.start":
            held.update(message)
            return
        if message["type"] != "http.response.body" or not held:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        try:
            data, changed = rename_fields(json.loads(body), renames)
        except ValueError:
            changed = False
        if changed:
            body = json_bytes(data)
            outcome["fault"] = "rename"
        headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**held, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _limited_receive(receive):
    """Refuse chunked bodies that grow beyond the limit (no Content-Length to check up front)."""
    received = 0

    async def wrapped():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise BodyTooLarge()
        return message

    return wrapped


class BodyTooLarge(Exception):
    """A streamed body passed the size limit."""


async def _send_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = error_bytes(status, message)
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def json_bytes(data) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
