"""Connection checks: gateway reachable, authentication, API version, latency, rate-limit
headroom, and whether another client logs in as the same API user (token take-over)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from absorb_sync.portal.readiness import FAIL, PASS, SKIP, WARN, latency_figures

if TYPE_CHECKING:
    from absorb_sync.portal.readiness import CallRecorder, Readiness

SECTION = "connection"
SLOW_P95_MS = 2000.0
PROBE = ("departments", {"_limit": 1, "_offset": 0})


class TokenWatch:
    """What the shared token manager did during the check: logins, take-overs, contention."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.logins_before = manager.login_count
        self.takeovers_before = manager.takeover_count
        self.contention: Exception | None = None

    def note(self, error: Exception) -> bool:
        """Remembers a contention error; True when ``error`` is one (the caller stops reading)."""
        from absorb_provider.exceptions import AbsorbTokenContentionError

        if isinstance(error, AbsorbTokenContentionError):
            self.contention = error
            return True
        return False

    @property
    def logins(self) -> int:
        return self.manager.login_count - self.logins_before

    @property
    def takeovers(self) -> int:
        return self.manager.takeover_count - self.takeovers_before


def check_access(hook: Any, recorder: CallRecorder, readiness: Readiness, tokens: TokenWatch) -> bool:
    """Gateway, authentication and API version; True when the API answered an authenticated GET."""
    from absorb_provider.exceptions import AbsorbApiError, AbsorbAuthError, AbsorbError

    base_url = readiness.portal["base_url"]
    user = readiness.portal["api_user"]
    try:
        hook.authenticate()
        hook.client.get(*PROBE)
    except AbsorbAuthError as error:
        if tokens.note(error):
            _reachable(readiness, recorder, base_url)
            readiness.add(
                SECTION, "authentication", SKIP, "not tried: this host stopped logging in (contention)"
            )
            return False
        _reachable(readiness, recorder, base_url)
        readiness.add(
            SECTION,
            "authentication",
            FAIL,
            f"{error}. Check the connection's username, password and private key (sent as x-api-key) "
            f"for API user '{user}' on {base_url}",
        )
        readiness.add(SECTION, "API version", SKIP, "not checked: not authenticated")
        return False
    except AbsorbApiError as error:
        _reachable(readiness, recorder, base_url)
        readiness.add(SECTION, "authentication", PASS, f"authenticated as '{user}'")
        if error.status == 400 and error.mentions("version"):
            readiness.add(SECTION, "API version", FAIL, f"the portal refused Integration API v2: {error}")
        else:
            readiness.add(SECTION, "API version", FAIL, f"the first authenticated read failed: {error}")
        return False
    except AbsorbError as error:
        _reachable(readiness, recorder, base_url, error)
        readiness.add(SECTION, "authentication", SKIP, "not tried: the gateway did not answer")
        readiness.add(SECTION, "API version", SKIP, "not checked: the gateway did not answer")
        return False
    _reachable(readiness, recorder, base_url)
    how = (
        "logged in"
        if tokens.logins
        else "the shared token of this host was accepted (sealed with these credentials)"
    )
    login = [c for c in recorder.calls if c.route == "/authenticate" and c.status == 200]
    readiness.add(
        SECTION,
        "authentication",
        PASS,
        f"authenticated as '{user}': {how}",
        login_ms=login[-1].ms if login else None,
    )
    versions = sorted({c.api_version for c in recorder.calls if c.api_version})
    readiness.add(
        SECTION,
        "API version",
        PASS,
        "Integration API v2 accepted (every request sends x-api-version: 2)"
        + (f"; the portal reports version {', '.join(versions)}" if versions else ""),
        sent="2",
        reported=versions,
    )
    return True


def _reachable(
    readiness: Readiness, recorder: CallRecorder, base_url: str, error: Exception | None = None
) -> None:
    answered = [c for c in recorder.calls]
    if answered:
        first = answered[0]
        readiness.add(
            SECTION,
            "gateway reachable",
            PASS,
            f"{base_url} answered ({first.method} {first.route}: HTTP {first.status} in {first.ms:.0f} ms)",
            region=readiness.portal.get("region"),
        )
    else:
        readiness.add(
            SECTION,
            "gateway reachable",
            FAIL,
            f"no answer from {base_url}: {error}. Check the connection's region or base URL, DNS, "
            "proxy and firewall",
            region=readiness.portal.get("region"),
        )


def watch_token(hook: Any, seconds: float, tokens: TokenWatch) -> None:
    """Keeps reading one row every second for ``seconds``: a take-over in that time shows up."""
    from absorb_provider.exceptions import AbsorbError

    deadline = time.monotonic() + max(0.0, seconds)
    while time.monotonic() < deadline and tokens.contention is None:
        try:
            hook.client.get(*PROBE)
        except AbsorbError as error:
            if tokens.note(error):
                return
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def check_traffic(hook: Any, recorder: CallRecorder, readiness: Readiness, tokens: TokenWatch) -> None:
    """Latency per call, the rate limit the portal showed, and the token's fate during the check."""
    calls = recorder.api_calls()
    if not recorder.calls:
        return
    _latency(readiness, calls)
    _rate_limit(readiness, recorder, hook.settings.requests_per_second)
    _token(readiness, recorder, tokens)


def _latency(readiness: Readiness, calls: list) -> None:
    if not calls:
        readiness.add(SECTION, "latency", SKIP, "no API call was answered")
        return
    figures = latency_figures([c.ms for c in calls])
    slowest = max(calls, key=lambda c: c.ms)
    verdict = WARN if figures["p95_ms"] > SLOW_P95_MS else PASS
    note = f" (slow: above {SLOW_P95_MS:.0f} ms, large syncs will take long)" if verdict == WARN else ""
    readiness.add(
        SECTION,
        "latency",
        verdict,
        f"{len(calls)} API calls: median {figures['median_ms']:.0f} ms, p95 {figures['p95_ms']:.0f} ms, "
        f"slowest {figures['max_ms']:.0f} ms ({slowest.method} {slowest.route}){note}",
        **figures,
    )
    readiness.figures["latency_p95_ms"] = figures["p95_ms"]


def _rate_limit(readiness: Readiness, recorder: CallRecorder, configured: float) -> None:
    calls = recorder.calls
    throttled = [c for c in calls if c.status == 429]
    waits = [float(c.retry_after) for c in throttled if _number(c.retry_after)]
    headers = {}
    for call in calls:
        headers.update(call.rate_headers)
    details = {
        "calls": len(calls),
        "throttled_429": len(throttled),
        "retry_after_max_s": max(waits) if waits else None,
        "configured_requests_per_second": configured,
        "rate_limit_headers": headers,
    }
    readiness.figures["throttled_429"] = len(throttled)
    if throttled:
        readiness.add(
            SECTION,
            "rate-limit headroom",
            WARN,
            f"the portal throttled {len(throttled)} of {len(calls)} calls (HTTP 429"
            + (f", Retry-After up to {max(waits):g} s" if waits else "")
            + f"): it allows less than the connection's {configured:g} requests/s; lower 'Requests per "
            "second' so syncs do not spend their time waiting",
            **details,
        )
        return
    shown = "; headers " + ", ".join(f"{k}: {v}" for k, v in sorted(headers.items())) if headers else ""
    readiness.add(
        SECTION,
        "rate-limit headroom",
        PASS,
        f"no 429 in {len(calls)} calls, the sync's concurrent paging included (the connection allows "
        f"{configured:g} requests/s){shown}",
        **details,
    )


def _token(readiness: Readiness, recorder: CallRecorder, tokens: TokenWatch) -> None:
    user = readiness.portal["api_user"]
    rejected = sum(1 for c in recorder.api_calls() if c.status == 401)
    details = {"logins": tokens.logins, "takeovers": tokens.takeovers, "rejected_401": rejected}
    readiness.figures["token_takeovers"] = tokens.takeovers
    if tokens.contention is not None:
        readiness.add(SECTION, "token ownership", FAIL, f"{tokens.contention}", **details)
        return
    if tokens.takeovers:
        readiness.add(
            SECTION,
            "token ownership",
            FAIL,
            f"another client logged in as API user '{user}' during the check: the token was taken over "
            f"{tokens.takeovers} time(s) moments after login. Absorb keeps one live token per user, so "
            "the DAGs and that client would log each other out: give each deployment its own API user, "
            "or share the token store",
            **details,
        )
        return
    expired = " (an expired token was refreshed)" if rejected else ""
    readiness.add(
        SECTION,
        "token ownership",
        PASS,
        f"one token for the whole check, {tokens.logins} login(s){expired}: no other client took "
        f"API user '{user}' over while the check ran ({readiness.inputs.get('watch_seconds') or 0:g} s watched "
        "after the reads)",
        **details,
    )


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
