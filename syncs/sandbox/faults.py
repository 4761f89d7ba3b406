"""Fault injection shared by every sandbox app: error rate, latency, 5xx/429 bursts, dropped connections."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields


@dataclass
class Faults:
    error_rate: float = 0.0  # share of requests answered 500/503 at random
    latency_seconds: float = 0.0  # added before every answer
    burst_5xx: int = 0  # the next N requests get 503
    burst_429: int = 0  # the next N requests get 429 with Retry-After
    retry_after_seconds: float = 1.0
    retry_after_http_date: bool = False  # send Retry-After as an HTTP date instead of seconds
    drop_rate: float = 0.0  # share of requests whose connection is closed without an answer
    drop_next: int = 0  # the next N connections are closed without an answer
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def update(self, **changes: float | int | bool) -> None:
        names = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}; known: {sorted(names)}")
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
            if "seed" in changes:
                self._rng.seed(self.seed)

    def clear(self) -> None:
        """Back to no faults at all (the defaults), with the random stream restarted."""
        self.update(**{f.name: f.default for f in fields(self) if not f.name.startswith("_")})

    def draw(self) -> str | None:
        """Decide the fault for one request: 'drop', '429', '5xx' or None."""
        with self._lock:
            if self.drop_next > 0:
                self.drop_next -= 1
                return "drop"
            if self.burst_429 > 0:
                self.burst_429 -= 1
                return "429"
            if self.burst_5xx > 0:
                self.burst_5xx -= 1
                return "5xx"
            roll = self._rng.random()
            if roll < self.drop_rate:
                return "drop"
            if roll < self.drop_rate + self.error_rate:
                return "5xx"
            return None
