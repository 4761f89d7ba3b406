"""A thread-safe token bucket, shared by every request a destination client makes."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """Allows `rate` acquisitions per second on average with bursts up to `burst` (default 1: evenly paced).

    Even pacing is the default because providers count requests in fixed windows: a bucket that may burst a
    whole second's worth at a window's end and again at the next one's start sends twice the limit within
    one second and draws 429s. Spaced at least 1/rate apart, no one-second window sees more than `rate`.

    `pause_until` lets a 429's Retry-After stop every caller, not just the one that saw it, so retries
    do not pile into the same rate-limit window.
    """

    def __init__(self, rate: float | None, burst: float = 1.0) -> None:
        self.rate = rate
        self.capacity = max(1.0, burst)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a token is available; return seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                delay = self._paused_until - now
                if delay <= 0 and self.rate is None:
                    return waited
                if delay <= 0:
                    self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                    self._updated = now
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return waited
                    delay = (1 - self._tokens) / self.rate
            time.sleep(delay)
            waited += delay

    def pause_until(self, monotonic_deadline: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, monotonic_deadline)
