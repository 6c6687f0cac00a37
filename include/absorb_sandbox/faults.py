"""Fault injection and rate limiting, both repeatable.

Fault spec (``--faults`` and ``POST /_sandbox/faults``): comma-separated ``key=value`` pairs::

    seed=7,error=0.1,429=0.05,drop=0.02,latency=0.05:200ms

- ``seed``: RNG seed; the same seed and the same request sequence give the same faults.
- ``error``: probability of answering 500, 502 or 503 (chosen by the same RNG) with Absorb's
  error body; ``500=``, ``502=``, ``503=`` set one code's probability on its own.
- ``429``: probability of a 429 with ``Retry-After: 1``.
- ``drop``: probability of closing the connection without any response.
- ``latency``: probability of adding a delay, ``PROB:DURATION`` (``200ms``, ``1.5s``, plain = ms).

The faults above strike *before* the request is processed: nothing was applied. Two more strike
*after*, on API writes only (POST/PUT/DELETE/PATCH, not ``/authenticate``), to simulate "Absorb
applied it but the answer never came back":

- ``lost``: probability of processing the write (its change is committed), then closing the
  connection without any response.
- ``lost5xx``: probability of processing the write, then answering 502 or 503 instead of its
  real answer.
- ``writelatency``: like ``latency`` but for API writes only (``PROB:DURATION``), e.g. to make a
  write answer after the client's timeout while the reads stay fast; the write is applied after
  the delay.

One more changes what reads look like rather than whether they succeed:

- ``rename``: ``OLD:NEW`` renames the JSON field ``OLD`` to ``NEW`` in every API GET answer (at
  any depth), e.g. ``rename=externalId:employeeKey`` to serve a portal whose API renamed a field
  the integration relies on; repeat it for several fields. It draws nothing from the RNGs and
  counts under ``injected`` as ``rename`` on the answers it changed.

These are drawn from their own RNG (seeded by ``seed`` too) only for writes that no earlier fault
stopped, so adding them does not change the sequence of the other faults. ``/_sandbox/stats``
counts every injected fault under ``injected`` (``error``/``429``/``drop``/``lost``/``lost5xx``);
a lost write also counts under ``by_status`` as ``dropped`` or as the status it was answered with.

The JSON form of the admin call takes the same keys: ``{"seed": 7, "error": 0.1, "429": 0.05,
"drop": 0.02, "latency": 0.05, "latency_ms": 200, "lost": 0.3, "lost5xx": 0.1}``, or ``{"spec": "seed=7,error=0.1"}``;
``{}`` or ``"off"`` turns faults off. Faults never apply to ``/_sandbox/*``.

With ``serve --workers N`` the spec is stored in the shared state file (``absorb_sandbox.shared``),
so ``--faults`` and ``POST /_sandbox/faults`` apply to every process; each process draws from
its own RNGs seeded by ``seed`` (re-seeded when the spec changes), so the sequence is repeatable
*per process*: with one worker it is exactly the sequence of the requests, with several it
depends on which process serves which request. The token bucket of ``--rate-limit`` is shared
too (one bucket per API key across all processes).
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from absorb_sandbox.shared import SharedState


class FaultSpecError(ValueError):
    """A fault spec that cannot be understood."""


@dataclass(frozen=True)
class FaultSpec:
    seed: int = 0
    status_probabilities: dict[int, float] = field(default_factory=dict)  # 429/500/502/503 -> p
    error: float = 0.0  # spread over 500/502/503
    drop: float = 0.0
    latency: float = 0.0
    latency_ms: float = 0.0
    lost: float = 0.0  # writes: applied, then the connection is closed without an answer
    lost5xx: float = 0.0  # writes: applied, then answered 502/503
    write_latency: float = 0.0  # writes: probability of a delay before processing
    write_latency_ms: float = 0.0
    renames: tuple[tuple[str, str], ...] = ()  # GET answers: field OLD served as NEW

    @property
    def active(self) -> bool:
        return bool(
            self.error
            or self.drop
            or self.latency
            or self.lost
            or self.lost5xx
            or self.write_latency
            or any(self.status_probabilities.values())
        )

    def describe(self) -> dict:
        data = asdict(self)
        data["status_probabilities"] = {str(k): v for k, v in self.status_probabilities.items()}
        return data

    @classmethod
    def from_description(cls, data: dict | None) -> FaultSpec:
        """The inverse of ``describe()`` (how the shared state stores a spec)."""
        if not data:
            return cls()
        data = dict(data)
        data["status_probabilities"] = {int(k): v for k, v in data.get("status_probabilities", {}).items()}
        data["renames"] = tuple(tuple(pair) for pair in data.get("renames", ()))
        return cls(**data)


FAULT_STATUSES = (429, 500, 502, 503)


def _probability(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"fault '{key}' needs a probability between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"fault '{key}' probability must be between 0 and 1, got {value}")
    return value


def _duration_ms(text: str) -> float:
    text = text.strip().lower()
    try:
        if text.endswith("ms"):
            value = float(text[:-2])
        elif text.endswith("s"):
            value = float(text[:-1]) * 1000
        else:
            value = float(text)
    except ValueError:
        raise FaultSpecError(f"latency duration must look like 200ms or 1.5s, got {text!r}") from None
    if value < 0 or value > 60_000:
        raise FaultSpecError("latency duration must be between 0 and 60s")
    return value


def parse_spec(spec: str | dict | None) -> FaultSpec:
    """Parse the text or JSON form of a fault spec (see the module docstring)."""
    if spec is None:
        return FaultSpec()
    if isinstance(spec, dict):
        if "spec" in spec:
            return parse_spec(spec["spec"])
        pairs = []
        for key, value in spec.items():
            if key == "latency_ms":
                continue
            if key == "latency" and "latency_ms" in spec:
                value = f"{value}:{spec['latency_ms']}ms"
            values = value if key == "rename" and isinstance(value, list) else [value]
            pairs += [f"{key}={item}" for item in values]
        return parse_spec(",".join(pairs))
    if not isinstance(spec, str):
        raise FaultSpecError("fault spec must be a string or an object")
    text = spec.strip()
    if text.lower() in ("", "off", "none"):
        return FaultSpec()
    seed, error, drop, latency, latency_ms = 0, 0.0, 0.0, 0.0, 0.0
    lost, lost5xx, write_latency, write_latency_ms = 0.0, 0.0, 0.0, 0.0
    statuses: dict[int, float] = {}
    renames: list[tuple[str, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep:
            raise FaultSpecError(f"fault spec part {part!r} is not key=value")
        if key == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise FaultSpecError(f"seed must be an integer, got {value!r}") from None
        elif key == "error":
            error = _probability(key, value)
        elif key == "drop":
            drop = _probability(key, value)
        elif key == "lost":
            lost = _probability(key, value)
        elif key == "lost5xx":
            lost5xx = _probability(key, value)
        elif key == "writelatency":
            probability, _, duration = value.partition(":")
            write_latency = _probability(key, probability)
            write_latency_ms = _duration_ms(duration or "100ms")
        elif key == "rename":
            renames.append(_rename(value))
        elif key in {str(s) for s in FAULT_STATUSES}:
            statuses[int(key)] = _probability(key, value)
        elif key == "latency":
            probability, _, duration = value.partition(":")
            latency = _probability(key, probability)
            latency_ms = _duration_ms(duration or "100ms")
        else:
            raise FaultSpecError(
                f"unknown fault {key!r}; use seed, error, 429, 500, 502, 503, drop, latency, lost, lost5xx, "
                "writelatency, rename"
            )
    if error + drop + sum(statuses.values()) > 1.0:
        raise FaultSpecError("fault probabilities (error, status codes, drop) add up to more than 1")
    if lost + lost5xx > 1.0:
        raise FaultSpecError("fault probabilities lost and lost5xx add up to more than 1")
    return FaultSpec(
        seed,
        statuses,
        error,
        drop,
        latency,
        latency_ms,
        lost,
        lost5xx,
        write_latency,
        write_latency_ms,
        tuple(renames),
    )


def _rename(value: str) -> tuple[str, str]:
    old, sep, new = value.strip().partition(":")
    if not sep or not old.strip() or not new.strip():
        raise FaultSpecError(f"fault 'rename' needs OLD:NEW field names, got {value!r}")
    return old.strip(), new.strip()


def rename_fields(data: object, renames: dict[str, str]) -> tuple[object, bool]:
    """``data`` with every dict key in ``renames`` renamed (at any depth), and whether any was."""
    changed = False

    def walk(node: object) -> object:
        nonlocal changed
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            changed = changed or any(key in renames for key in node)
            return {renames.get(key, key): walk(value) for key, value in node.items()}
        return node

    return walk(data), changed


@dataclass(frozen=True)
class FaultDecision:
    status: int | None = None
    drop: bool = False
    delay_seconds: float = 0.0
    lost: bool = False  # apply the write, then close the connection without answering
    lost_status: int | None = None  # apply the write, then answer this 5xx instead

    @property
    def kind(self) -> str | None:
        """The injected fault's name for the stats (``None``: no fault, or latency only)."""
        if self.lost:
            return "lost"
        if self.lost_status is not None:
            return "lost5xx"
        if self.drop:
            return "drop"
        if self.status == 429:
            return "429"
        return "error" if self.status is not None else None


NO_FAULT = FaultDecision()


class FaultInjector:
    """Draws one repeatable decision per API request from the spec's seeded RNG.

    With a ``SharedState`` the spec is shared by every server process: ``configure`` stores it
    there, and each decision first checks (one read) whether another process changed it."""

    def __init__(self, spec: FaultSpec | None = None, state: SharedState | None = None):
        self._lock = threading.Lock()
        self._state = state
        self._version = -1
        self._use(spec or FaultSpec())
        if state is not None:
            self._sync()

    def _use(self, spec: FaultSpec) -> None:
        with self._lock:
            self.spec = spec
            self._rng = random.Random(spec.seed)
            self._lost_rng = random.Random(f"lost:{spec.seed}")

    def configure(self, spec: FaultSpec) -> None:
        """Use ``spec`` from now on, in every process sharing the state."""
        if self._state is not None:
            self._version = self._state.set_faults(spec.describe())
        self._use(spec)

    def _sync(self) -> None:
        if self._state is not None and self._state.faults_version() != self._version:
            self._version, description = self._state.faults()
            self._use(FaultSpec.from_description(description))

    def current(self) -> FaultSpec:
        self._sync()
        return self.spec

    def decide(self, write: bool = False) -> FaultDecision:
        """The decision for the next request; ``write``: an API write (``lost``, ``lost5xx`` and ``writelatency`` apply)."""
        self._sync()
        decision = self._decide_before()
        spec = self.spec
        if write and spec.write_latency:
            with self._lock:
                slow = self._lost_rng.random() < spec.write_latency
            if slow:
                delay = decision.delay_seconds + spec.write_latency_ms / 1000
                decision = FaultDecision(decision.status, decision.drop, delay)
        if not write or not (spec.lost or spec.lost5xx) or decision.drop or decision.status is not None:
            return decision
        with self._lock:
            lost_roll = self._lost_rng.random()
            code_roll = self._lost_rng.random()
        if lost_roll < spec.lost:
            return FaultDecision(delay_seconds=decision.delay_seconds, lost=True)
        if lost_roll < spec.lost + spec.lost5xx:
            return FaultDecision(
                delay_seconds=decision.delay_seconds, lost_status=(502, 503)[code_roll >= 0.5]
            )
        return decision

    def _decide_before(self) -> FaultDecision:
        spec = self.spec
        if not spec.active:
            return NO_FAULT
        with self._lock:
            outcome_roll = self._rng.random()
            latency_roll = self._rng.random()
            code_roll = self._rng.random()
        delay = spec.latency_ms / 1000 if latency_roll < spec.latency else 0.0
        threshold = spec.error
        if outcome_roll < threshold:
            return FaultDecision(status=(500, 502, 503)[int(code_roll * 3) % 3], delay_seconds=delay)
        for status, probability in sorted(spec.status_probabilities.items()):
            threshold += probability
            if outcome_roll < threshold:
                return FaultDecision(status=status, delay_seconds=delay)
        if outcome_roll < threshold + spec.drop:
            return FaultDecision(drop=True, delay_seconds=delay)
        return FaultDecision(delay_seconds=delay) if delay else NO_FAULT


class RateLimiter:
    """Token bucket per API key: ``rate`` requests/s with a burst of ``rate`` (at least 1).

    With a ``SharedState`` the buckets live there, shared by every server process."""

    def __init__(self, rate: float | None, state: SharedState | None = None):
        self.rate = rate
        self.capacity = max(1.0, rate or 0.0)
        self._state = state
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds until a token is available."""
        if not self.rate:
            return 0.0
        if self._state is not None:
            return self._state.acquire(key, self.rate, self.capacity)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after_header(wait_seconds: float) -> str:
    return str(max(1, math.ceil(wait_seconds)))
