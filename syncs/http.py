"""HTTP for destination clients: one pooled session with urllib3 retries, a shared token bucket, and
errors that never echo payloads (which hold PII) or credentials."""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from syncs.ratelimit import TokenBucket

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers saying the server did not process the request; a 500, 502 or 504 may come after it did.
NOT_PROCESSED_STATUSES = frozenset({429, 503})


class DestinationHTTPError(Exception):
    """A request that failed after retries. The message holds method, path and status only."""

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        super().__init__(f"{method} {path} failed: {status or 'no response'} {detail}".strip())


class _RateLimitedRetry(Retry):
    """Retry that also pauses the shared token bucket for a server-given Retry-After."""

    bucket: TokenBucket | None = None

    def new(self, **kw: Any) -> _RateLimitedRetry:
        new = super().new(**kw)
        new.bucket = self.bucket
        return new

    def sleep_for_retry(self, response: Any = None) -> bool:
        retry_after = self.get_retry_after(response) if response is not None else None
        if retry_after and self.bucket is not None:
            self.bucket.pause_until(time.monotonic() + retry_after)
        return super().sleep_for_retry(response)


def build_retry(max_retries: int, bucket: TokenBucket | None, *, resend_processed: bool = True) -> Retry:
    """`resend_processed=False` for calls that must never reach the server twice (no idempotency key): only a
    request the server never got (connect errors) or did not process (429, 503) is re-sent."""
    retry = _RateLimitedRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries if resend_processed else False,
        status=max_retries,
        backoff_factor=0.2,
        backoff_max=30,
        backoff_jitter=0.3,
        status_forcelist=RETRY_STATUSES if resend_processed else NOT_PROCESSED_STATUSES,
        allowed_methods=None,  # every method: our writes are idempotent (upserts, idempotency keys)
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    retry.bucket = bucket
    return retry


class HttpClient:
    """`request()` returns the final `requests.Response` (any status) or raises DestinationHTTPError
    when no response came back after retries."""

    def __init__(
        self,
        base_url: str,
        *,
        requests_per_second: float | None = None,
        max_retries: int = 6,
        timeout_seconds: float = 30.0,
        pool_size: int = 10,
        auth: Any = None,
        headers: dict[str, str] | None = None,
        bucket: TokenBucket | None = None,
        resend_processed: bool = True,
    ) -> None:
        """`bucket` shares another client's rate limit; `resend_processed`: see `build_retry`."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_seconds
        self.bucket = bucket or TokenBucket(requests_per_second)
        self.session = requests.Session()
        self.session.auth = auth
        self.session.headers.update({"User-Agent": "tidings/0.1", **(headers or {})})
        adapter = HTTPAdapter(
            max_retries=build_retry(max_retries, self.bucket, resend_processed=resend_processed),
            pool_connections=pool_size,
            pool_maxsize=pool_size,
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.bucket.acquire()
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, self.url(path), **kwargs)
        except requests.RequestException as exc:
            # str(exc) can include the URL with query parameters; keep only the exception type.
            raise DestinationHTTPError(method, _path_only(path), None, type(exc).__name__) from None

    def close(self) -> None:
        self.session.close()


def _path_only(path: str) -> str:
    return path.split("?", 1)[0]
