"""A thread-safe token bucket: bulk threads share one request budget per hook."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Allows ``rate`` acquisitions per second on average, with a small burst.

    The burst is kept small (a tenth of a second of budget) so the sustained rate stays at the
    limit instead of overshooting it after idle periods and earning 429s.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = float(rate)
        self.capacity = max(1.0, burst if burst is not None else self.rate / 10)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def acquire(self) -> float:
        """Blocks until a request may go; returns the seconds waited."""
        if self.unlimited:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait
