"""Bounded-concurrency runner for bulk writes: per-item outcomes, progress with rate and ETA."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

OUTCOMES = ("created", "updated", "unchanged", "already_enrolled", "unenrolled", "already_gone", "failed")


@dataclass
class BulkResult:
    """Outcome of every item, in input order, and the count per outcome."""

    outcomes: list[dict[str, Any]] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(outcome["outcome"] for outcome in self.outcomes)
        return {name: counts.get(name, 0) for name in OUTCOMES if counts.get(name, 0)} | {
            "total": len(self.outcomes)
        }

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [outcome for outcome in self.outcomes if outcome["outcome"] == "failed"]

    @property
    def items_per_second(self) -> float:
        return len(self.outcomes) / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


class Progress:
    """Logs done/total, rate and ETA at most every ``interval`` seconds (thread-safe)."""

    def __init__(self, label: str, total: int, interval: float = 10.0) -> None:
        self.label = label
        self.total = total
        self.interval = interval
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._lock = threading.Lock()

    def advance(self, count: int = 1, failed: int = 0) -> None:
        with self._lock:
            self.done += count
            self.failed += failed
            now = time.monotonic()
            if now - self._last_log < self.interval and self.done < self.total:
                return
            self._last_log = now
            self.log(now)

    def log(self, now: float | None = None) -> None:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        log.info(
            "%s: %d/%d done (%.1f%%), %.1f items/s, ETA %.0fs, %d failed",
            self.label,
            self.done,
            self.total,
            100.0 * self.done / max(self.total, 1),
            rate,
            eta,
            self.failed,
        )


def run_bulk(
    label: str,
    items: Sequence[Any],
    work: Callable[[Any], list[dict[str, Any]]],
    *,
    concurrency: int,
    on_error: Callable[[Any, BaseException], list[dict[str, Any]]],
    weight: Callable[[Any], int] = lambda _item: 1,
    progress_interval: float = 10.0,
    on_outcomes: Callable[[list[dict[str, Any]]], None] | None = None,
) -> BulkResult:
    """Runs ``work`` on each item with at most ``concurrency`` in flight; never lets one error stop the rest.

    ``work`` returns the outcome rows of one unit (an enrollment, or a batch of unenrollments);
    an exception becomes the rows ``on_error`` builds. Rows come back in input order.
    ``on_outcomes`` sees each unit's rows as soon as they are known (in this thread, so a caller
    can journal them durably before the next unit settles).
    """
    started = time.monotonic()
    progress = Progress(label, sum(weight(item) for item in items), progress_interval)
    slots: list[list[dict[str, Any]] | None] = [None] * len(items)

    def settle(index: int, future: Future) -> None:
        try:
            rows = future.result()
        except Exception as exc:  # one bad item must not hide the rest
            rows = on_error(items[index], exc)
        slots[index] = rows
        if on_outcomes is not None:
            on_outcomes(rows)
        progress.advance(len(rows), sum(1 for row in rows if row["outcome"] == "failed"))

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="absorb-bulk") as pool:
        in_flight: dict[Future, int] = {}
        for index, item in enumerate(items):
            if len(in_flight) >= concurrency * 2:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    settle(in_flight.pop(future), future)
            in_flight[pool.submit(work, item)] = index
        done, _ = wait(in_flight)
        for future in done:
            settle(in_flight.pop(future), future)
    result = BulkResult([row for rows in slots for row in (rows or [])], time.monotonic() - started)
    log.info("%s finished in %.1fs: %s", label, result.elapsed_seconds, result.counts)
    return result
