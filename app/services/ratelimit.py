"""Per-token request budgets: a token bucket per API token, kept in memory.

A runaway CI loop with one token then gets 429s while other tokens, and the scheduler,
carry on. The budget refills continuously (``requests`` per ``per_seconds``), so a client
that slows down is served again without waiting for a window to end.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from app.errors import RateLimited


class RateLimiter:
    def __init__(
        self, requests: int, per_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._capacity = float(requests)
        self._rate = requests / per_seconds
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one request of ``key``'s budget, or raise RateLimited with Retry-After."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self._rate)
                raise RateLimited(
                    f"This token has used its request budget ({int(self._capacity)} per "
                    f"{int(self._capacity / self._rate)} s, RUNYARD_RATE_LIMIT). "
                    f"Retry in {wait} s.",
                    headers={"Retry-After": str(wait)},
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # bound memory: forget idle, refilled buckets
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full_after = self._capacity / self._rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
