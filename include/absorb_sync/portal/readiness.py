"""The portal readiness check: what ``absorb-portal check`` and ``absorb_portal_check`` run.

Read-only by construction: the hook's HTTP session is wrapped so that anything but a GET or
``POST /authenticate`` raises :class:`ReadOnlyViolation` before it is sent, and every answer is
recorded (route, status, latency, ``Retry-After``) for the connection checks. Three sections:

- connection (:mod:`readiness_connection`): gateway, authentication, API version, latency,
  rate-limit headroom, whether another client took the API user's token over;
- shapes (:mod:`readiness_shapes`): one page of every list the DAGs read, against the provider's
  own schemas (:mod:`absorb_provider.schemas`);
- data fit (:mod:`readiness_fit`): the feed and rules against the portal, and the first sync's
  plan (the planner run on the reads the check made).
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
SECTIONS = ("connection", "shapes", "data fit")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
AUTHENTICATE = "/authenticate"


class ReadOnlyViolation(RuntimeError):
    """The check tried to send a request that could change the portal (a bug: never sent)."""


@dataclass
class Check:
    """One verdict: ``pass``, ``warn`` (go, but look), ``fail`` (no-go) or ``skip`` (could not run)."""

    section: str
    name: str
    verdict: str
    message: str
    details: dict = field(default_factory=dict)


@dataclass
class Inputs:
    """What the data-fit checks compare the portal with (each optional)."""

    feed_path: str | None = None
    column_mapping: Any = None
    rules_path: str | None = None
    today: date | None = None
    sample_size: int = 100
    watch_seconds: float = 0.0


@dataclass
class Readiness:
    """The checks' verdicts, the figures a person needs before saying go, and the calls made."""

    portal: dict
    inputs: dict
    started_at: str
    finished_at: str | None = None
    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)
    plan_lines: Any = None  # the first sync's plan (a DataFrame), written as CSV next to the report

    def add(self, section: str, name: str, verdict: str, message: str, **details: Any) -> Check:
        check = Check(section, name, verdict, message, details)
        self.checks.append(check)
        return check

    @property
    def verdict(self) -> str:
        """``no-go`` when any check failed, else ``go`` (warnings are for a person to read)."""
        return "no-go" if any(c.verdict == FAIL for c in self.checks) else "go"

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == FAIL]

    def to_json(self) -> dict:
        counts = {v: sum(1 for c in self.checks if c.verdict == v) for v in (PASS, WARN, FAIL, SKIP)}
        return {
            "verdict": self.verdict,
            "counts": counts,
            "portal": self.portal,
            "inputs": self.inputs,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "checks": [asdict(c) for c in self.checks],
            "figures": self.figures,
            "calls": self.calls,
        }


@dataclass
class Call:
    method: str
    route: str
    status: int
    ms: float
    retry_after: str | None = None
    rate_headers: dict = field(default_factory=dict)
    api_version: str | None = None


class CallRecorder:
    """Guards and records the HTTP calls of one hook's session (see the module docstring)."""

    def __init__(self, session: Any, base_url: str) -> None:
        self.calls: list[Call] = []
        self.refused: list[str] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._base_path = urlsplit(base_url).path.rstrip("/")
        send = session.request

        def read_only_request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            route = self.route(url)
            if method.upper() != "GET" and not (method.upper() == "POST" and route == AUTHENTICATE):
                self.refused.append(f"{method.upper()} {route}")
                raise ReadOnlyViolation(f"the readiness check never sends {method.upper()} {route}")
            return send(method, url, *args, **kwargs)

        session.request = read_only_request
        session.hooks.setdefault("response", []).append(self._record)

    def route(self, url: str) -> str:
        """The path relative to the gateway, GUIDs shown as ``{id}`` (no query: no values leak)."""
        path = urlsplit(url).path
        if self._base_path and path.startswith(self._base_path):
            path = path[len(self._base_path) :]
        return _GUID.sub("{id}", "/" + path.lstrip("/"))

    def _record(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        headers = response.headers
        call = Call(
            method=response.request.method,
            route=self.route(response.request.url),
            status=response.status_code,
            ms=round(response.elapsed.total_seconds() * 1000, 1),
            retry_after=headers.get("Retry-After"),
            rate_headers={k: v for k, v in headers.items() if "ratelimit" in k.lower()},
            api_version=headers.get("x-api-version"),
        )
        with self._lock:
            self.calls.append(call)
        return response

    def api_calls(self) -> list[Call]:
        return [c for c in self.calls if c.route != AUTHENTICATE]

    def summary(self) -> dict:
        """Counts per route and status, latency figures, the methods used (GET and the login only)."""
        calls = list(self.calls)
        routes: dict[str, dict] = {}
        for call in calls:
            entry = routes.setdefault(f"{call.method} {call.route}", {"calls": 0, "ms": []})
            entry["calls"] += 1
            entry["ms"].append(call.ms)
        return {
            "total": len(calls),
            "seconds": round(time.monotonic() - self.started, 2),
            "methods": sorted({f"{c.method} {c.route}" if c.method != "GET" else "GET" for c in calls}),
            "by_status": _count(str(c.status) for c in calls),
            "by_route": {
                route: {"calls": e["calls"], **latency_figures(e["ms"])}
                for route, e in sorted(routes.items())
            },
            "refused_writes": list(self.refused),
        }


def latency_figures(values: list[float]) -> dict:
    if not values:
        return {"median_ms": None, "p95_ms": None, "max_ms": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 1), "p95_ms": p95, "max_ms": ordered[-1]}


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def portal_facts(hook: Any) -> dict:
    """Where the check pointed (never a secret): connection id, gateway, API user, region."""
    settings = hook.settings
    connection = hook.get_connection(hook.absorb_conn_id)
    region = (connection.extra_dejson or {}).get("region")
    return {
        "conn_id": hook.absorb_conn_id,
        "base_url": settings.base_url,
        "region": "custom base URL" if connection.host else (region or "US (default)"),
        "api_user": settings.username,
        "requests_per_second": settings.requests_per_second,
        "max_concurrency": settings.max_concurrency,
    }


def run_check(hook: Any, inputs: Inputs, progress: Callable[[str], None] | None = None) -> Readiness:
    """Runs every check against ``hook``'s portal; never raises for a portal problem (it is a verdict)."""
    from absorb_sync.portal import readiness_connection, readiness_fit, readiness_shapes

    say = progress or (lambda _message: None)
    readiness = Readiness(
        portal={},
        inputs=_inputs_summary(inputs),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    try:
        readiness.portal = portal_facts(hook)
    except Exception as error:  # a broken connection is the first verdict
        readiness.add("connection", "connection settings", FAIL, f"{type(error).__name__}: {error}")
        return _finish(readiness, None)
    recorder = CallRecorder(hook.client.session, hook.settings.base_url)
    tokens = readiness_connection.TokenWatch(hook.client.tokens)
    say(f"checking {readiness.portal['base_url']} as {readiness.portal['api_user']}")
    if readiness_connection.check_access(hook, recorder, readiness, tokens):
        say("reading one page of every list the DAGs read")
        pages = readiness_shapes.check_shapes(hook, readiness, inputs.sample_size, tokens)
        say("comparing the feed and rules with the portal")
        readiness_fit.check_data_fit(hook, readiness, inputs, pages, tokens)
        readiness_connection.watch_token(hook, inputs.watch_seconds, tokens)
    readiness_connection.check_traffic(hook, recorder, readiness, tokens)
    return _finish(readiness, recorder)


def _finish(readiness: Readiness, recorder: CallRecorder | None) -> Readiness:
    readiness.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    if recorder is not None:
        readiness.calls = recorder.summary()
    order = {name: index for index, name in enumerate(SECTIONS)}
    readiness.checks.sort(key=lambda c: order.get(c.section, len(order)))
    return readiness


def _inputs_summary(inputs: Inputs) -> dict:
    mapping = inputs.column_mapping
    return {
        "feed_path": inputs.feed_path,
        "column_mapping": mapping if isinstance(mapping, str | type(None)) else "custom mapping object",
        "rules_path": inputs.rules_path,
        "today": (inputs.today or datetime.now(UTC).date()).isoformat(),
        "sample_size": inputs.sample_size,
        "watch_seconds": inputs.watch_seconds,
    }
