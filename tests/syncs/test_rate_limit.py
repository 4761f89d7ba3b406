"""Client-side pacing: a destination's published limit is never exceeded, so fixed-window limiters see no 429."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from syncs.http import HttpClient
from syncs.ratelimit import TokenBucket


def test_no_one_second_window_sees_more_than_the_rate() -> None:
    bucket = TokenBucket(40)
    stamps = []
    for _ in range(60):
        bucket.acquire()
        stamps.append(time.monotonic())
    busiest = max(sum(1 for t in stamps if start <= t < start + 1) for start in stamps)
    assert busiest <= 40


def test_a_pause_stops_every_caller_until_its_deadline() -> None:
    bucket = TokenBucket(None)
    bucket.pause_until(time.monotonic() + 0.3)
    with ThreadPoolExecutor(3) as pool:
        waited = list(pool.map(lambda _: bucket.acquire(), range(3)))
    assert min(waited) >= 0.25


def test_paced_client_draws_no_429_from_a_fixed_window_limiter(clean_sandbox: Any) -> None:
    app = clean_sandbox.app("webhook")
    app.set_rate_limit(20)
    client = HttpClient(f"{clean_sandbox.url}/webhook", requests_per_second=20, pool_size=2)
    try:
        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(lambda _: client.request("GET", "/no-such-route").status_code, range(45)))
    finally:
        client.close()
    assert app.stats["rate_limited"] == 0
    assert statuses == [404] * 45
