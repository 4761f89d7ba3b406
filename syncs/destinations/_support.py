"""Plumbing shared by the HTTP connectors: secrets from env vars, the HTTP client from settings, and the
outcomes for a batch that failed as a whole. Underscored so the registry loader does not import it as a type."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import requests

from syncs.destinations.base import Destination, DestinationSettings, OutboundRow, RowOutcome
from syncs.http import RETRY_STATUSES, DestinationHTTPError, HttpClient
from syncs.ratelimit import TokenBucket

T = TypeVar("T")
NON_FINITE_MESSAGE = "a field holds NaN or Infinity, which JSON cannot carry"


def json_value(value: Any) -> Any:
    """Warehouse values JSON cannot hold natively: dates, times and timestamps as ISO 8601, decimals as exact
    strings, UUIDs as text."""
    if isinstance(value, datetime | date | dt_time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} in a JSON payload")


class MissingSecretError(RuntimeError):
    """A destination's secret env var is unset. Names the variable, never a value."""


def secret_from_env(var_name: str, destination: str) -> str:
    value = os.environ.get(var_name, "")
    if not value:
        raise MissingSecretError(
            f"destination {destination!r}: environment variable {var_name} is not set; "
            "export it (for the sandbox profile, `tidings sandbox serve` prints the values it accepts)"
        )
    return value


def http_client(
    destination: Destination,
    settings: DestinationSettings,
    *,
    auth: Any = None,
    headers: dict[str, str] | None = None,
    pool_size: int = 1,
    bucket: TokenBucket | None = None,
    resend_processed: bool = True,
) -> HttpClient:
    """One pooled, rate-limited, retrying client configured from a destination's settings. The connection pool
    holds `pool_size` connections per batch in flight (a connector that fans a batch out asks for more)."""
    rate = settings.requests_per_second or destination.default_requests_per_second
    return HttpClient(
        settings.base_url,
        requests_per_second=rate,
        max_retries=settings.max_retries,
        timeout_seconds=settings.timeout_seconds,
        pool_size=max(settings.concurrency, 1) * max(pool_size, 1),
        auth=auth,
        headers=headers,
        bucket=bucket,
        resend_processed=resend_processed,
    )


def status_code(status: int | None) -> str:
    return f"http_{status}" if status else "no_response"


def is_transient(status: int | None) -> bool:
    """Worth retrying on a later run: no answer, rate limits, server faults, auth/config problems."""
    return status is None or status in RETRY_STATUSES or status in (401, 403, 404, 408, 409)


def fail_all(rows: Iterable[OutboundRow], code: str, message: str, *, permanent: bool = False) -> list[RowOutcome]:
    return fail_keys([row.key for row in rows], code, message, permanent=permanent)


def fail_keys(keys: Iterable[str], code: str, message: str, *, permanent: bool = False) -> list[RowOutcome]:
    return [RowOutcome.failure(key, code, message, permanent=permanent) for key in keys]


def split_non_finite(rows: Iterable[T], row_of: Callable[[T], OutboundRow]) -> tuple[list[T], list[RowOutcome]]:
    """Rows JSON can carry, and a permanent failure for each row with a NaN or Infinity field: JSON has no form
    for them, and an API answers a body holding one with a 400 for the whole batch."""
    sendable, failed = [], []
    for item in rows:
        row = row_of(item)
        if any(isinstance(value, float) and not math.isfinite(value) for value in row.fields.values()):
            failed.append(RowOutcome.failure(row.key, "non_finite_number", NON_FINITE_MESSAGE, permanent=True))
        else:
            sendable.append(item)
    return sendable, failed


def fail_batch_for_response(rows: Sequence[OutboundRow], response: requests.Response, what: str) -> list[RowOutcome]:
    """Outcomes for every row of a batch the destination refused as a whole."""
    return fail_keys_for_response([row.key for row in rows], response, what)


def fail_keys_for_response(keys: Iterable[str], response: requests.Response, what: str) -> list[RowOutcome]:
    status = response.status_code
    detail = safe_detail(response)
    message = f"{what} failed with HTTP {status}" + (f": {detail}" if detail else "")
    return fail_keys(keys, status_code(status), message, permanent=not is_transient(status))


def fail_batch_for_error(rows: Sequence[OutboundRow], error: DestinationHTTPError) -> list[RowOutcome]:
    return fail_keys_for_error([row.key for row in rows], error)


def fail_keys_for_error(keys: Iterable[str], error: DestinationHTTPError) -> list[RowOutcome]:
    return fail_keys(keys, status_code(error.status), str(error), permanent=False)


def safe_detail(response: requests.Response) -> str:
    """The problem title of an error answer. Titles are fixed strings; details may echo payload values (PII)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in ("title", "error_code", "code"):
            value = body.get(key)
            if isinstance(value, str):
                return value[:120]
    return ""


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
