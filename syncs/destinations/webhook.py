"""Signed JSON batches to an HTTP endpoint of your own.

Each request body is `{"topic", "operation", "rows": [{"key", "idempotency_key", "fields"}]}`, sent with
`X-Tidings-Timestamp` (unix seconds) and `X-Tidings-Signature: sha256=<hex HMAC-SHA256(secret, ts + "." + body)>`.
The receiver answers `{"results": [{"key", "status": "accepted" | "duplicate" | "rejected", "code"?}]}`;
`duplicate` (a send it already delivered under that idempotency key) counts as delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from time import time as wall_clock
from typing import Any, ClassVar

import orjson
import requests

from syncs.destinations._support import (
    fail_all,
    fail_keys_for_error,
    fail_keys_for_response,
    http_client,
    json_value,
    secret_from_env,
    split_non_finite,
)
from syncs.destinations.base import (
    AcknowledgedRows,
    Destination,
    DestinationSettings,
    Mode,
    Operation,
    OutboundBatch,
    OutboundRow,
    RowOutcome,
    SyncTarget,
    register,
)
from syncs.http import DestinationHTTPError

TIMESTAMP_HEADER = "X-Tidings-Timestamp"
SIGNATURE_HEADER = "X-Tidings-Signature"
ACKNOWLEDGED = frozenset({"accepted", "duplicate"})
# Receivers refuse old signatures (the sandbox, like most, after 300 s) and urllib3 re-sends the same headers on its
# retries, so a long Retry-After can age a signature past that. An auth refusal of a signature this old is sent again,
# signed anew; a fresh signature's refusal (a wrong secret) is final.
RESIGN_AFTER_SECONDS = 60
MAX_RESIGNS = 3
AUTH_REFUSALS = frozenset({401, 403})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for one request."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSettings(DestinationSettings):
    """`base_url` is the full receiver URL; `secret_env` names the env var holding the signing secret."""

    secret_env: str


class WebhookTarget(SyncTarget):
    topic: str


@register
class WebhookDestination(Destination):
    type_name = "webhook"
    channel = "webhook"
    modes = frozenset({Mode.UPSERT, Mode.MIRROR, Mode.SEND_ONCE})
    max_batch_size = 500
    default_requests_per_second: ClassVar[float | None] = 20.0
    Settings = WebhookSettings
    Target = WebhookTarget
    accepts_extra_fields = True
    reads_json_rows = True

    def __init__(self, name: str, settings: WebhookSettings, target: WebhookTarget) -> None:
        super().__init__(name, settings, target)
        self.secret = secret_from_env(settings.secret_env, name)
        self.http = http_client(self, settings, headers={"Content-Type": "application/json"})

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> Sequence[RowOutcome]:
        needs_key = op is Operation.SEND
        encoded = rows.json_rows if isinstance(rows, OutboundBatch) else None
        if encoded is not None and (not needs_key or all(rows.idempotency_keys)):  # rendered in the warehouse
            return self._post(op, rows.keys, f"[{','.join(encoded)}]")
        keyed = [row for row in rows if row.idempotency_key or not needs_key]
        unkeyed = [row for row in rows if needs_key and not row.idempotency_key]
        outcomes = fail_all(unkeyed, "missing_idempotency_key", "a send needs an idempotency key", permanent=True)
        sendable, not_finite = split_non_finite(keyed, lambda row: row)
        outcomes += not_finite
        if sendable:
            rendered = [{"key": r.key, "idempotency_key": r.idempotency_key, "fields": r.fields} for r in sendable]
            rows_json = json.dumps(rendered, default=json_value, separators=(",", ":"), allow_nan=False)
            outcomes += self._post(op, [r.key for r in sendable], rows_json)
        return outcomes

    def _post(self, op: Operation, keys: list[str], rows_json: str) -> Sequence[RowOutcome]:
        """POST the rows (a JSON array, rendered by the warehouse or by `write`) in one signed body."""
        topic = json.dumps(self.target.topic)
        payload = f'{{"topic":{topic},"operation":"{op.value}","rows":{rows_json}}}'.encode()
        try:
            response = self._post_signed(payload)
        except DestinationHTTPError as error:
            return fail_keys_for_error(keys, error)
        if response.status_code != 200:
            return fail_keys_for_response(keys, response, "webhook delivery")
        results = orjson.loads(response.content).get("results", [])
        if len(results) == len(keys) and all(
            item.get("key") == key and item.get("status") in ACKNOWLEDGED
            for item, key in zip(results, keys, strict=True)
        ):
            return AcknowledgedRows(keys, [item.get("delivery_id") for item in results])
        by_key = {item.get("key"): item for item in results}
        return [self._outcome(key, by_key.get(key)) for key in keys]

    def _post_signed(self, payload: bytes) -> requests.Response:
        for _ in range(MAX_RESIGNS + 1):
            signed_at = wall_clock()
            timestamp = str(int(signed_at))
            headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self.secret, timestamp, payload)}
            response = self.http.request("POST", self.http.base_url, data=payload, headers=headers)
            if response.status_code not in AUTH_REFUSALS or wall_clock() - signed_at < RESIGN_AFTER_SECONDS:
                break
        return response

    @staticmethod
    def _outcome(key: str, result: dict[str, Any] | None) -> RowOutcome:
        if result is None:
            return RowOutcome.failure(key, "missing_result", "the receiver did not acknowledge this row")
        if result.get("status") in ACKNOWLEDGED:
            return RowOutcome.success(key, destination_ref=result.get("delivery_id"))
        code = str(result.get("code") or "rejected")
        return RowOutcome.failure(key, code, f"the receiver rejected the row ({code})", permanent=True)

    def close(self, *, success: bool) -> None:
        self.http.close()
