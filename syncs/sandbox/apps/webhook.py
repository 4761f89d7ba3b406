"""A webhook receiver that checks what a careful consumer checks: the HMAC signature, the timestamp's age,
the envelope, each row's fields, and repeated sends (deduplicated by idempotency key, answered with the
original acknowledgement)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from syncs.sandbox.apps.credentials import SANDBOX_CREDENTIALS, WEBHOOK_SECRET
from syncs.sandbox.server import Request, Response, SandboxApp, problem, route

MAX_AGE_SECONDS = 300
OPERATIONS = frozenset({"upsert", "remove", "send"})
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class WebhookApp(SandboxApp):
    name = "webhook"
    prefix = "/webhook"
    default_requests_per_second = 200

    def __init__(self, *, secret: str | None = None, **limits: Any) -> None:
        self.secret = secret or SANDBOX_CREDENTIALS[WEBHOOK_SECRET]
        super().__init__(**limits)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.stats.update(delivered=0, duplicates=0, rejected_rows=0)
            self.deliveries: list[dict[str, Any]] = []  # every delivered row, in order
            self.members: dict[str, dict[str, dict[str, Any]]] = {}  # topic -> key -> fields (upserts - removes)
            self.sent: dict[str, dict[str, Any]] = {}  # idempotency key -> original acknowledgement
            # Delivery ids: unique per reset without a random draw per row (uuid4 would be most of a row's cost).
            self._delivery_prefix = uuid.uuid4().hex[:16]
            self._delivery_numbers = itertools.count(1)

    @route("POST", r"/events")
    def receive(self, request: Request) -> Response:
        refusal = self._authenticate(request)
        if refusal is not None:
            return refusal
        envelope = request.json()
        if not _valid_envelope(envelope):
            return problem(400, "Bad Request", "expected {topic, operation, rows: [{key, idempotency_key, fields}]}")
        with self.lock:
            outcome = _Tally()
            accept = partial(self._accept, envelope["topic"], envelope["operation"], outcome)
            results = [accept(row) for row in envelope["rows"]]
            self.count("delivered", outcome.delivered)
            self.count("duplicates", outcome.duplicates)
            self.count("rejected_rows", outcome.rejected)
        return Response(200, {"results": results})

    def _authenticate(self, request: Request) -> Response | None:
        timestamp = request.headers.get("x-tidings-timestamp", "")
        signature = request.headers.get("x-tidings-signature", "")
        if not timestamp.isdigit() or not signature.startswith("sha256="):
            return problem(401, "Unauthorized", "missing X-Tidings-Timestamp or X-Tidings-Signature")
        expected = hmac.new(self.secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
        if not hmac.compare_digest(signature.removeprefix("sha256="), expected.hexdigest()):
            self.count("invalid_signatures")
            return problem(401, "Invalid Signature", "the signature does not match the body")
        if abs(time.time() - int(timestamp)) > MAX_AGE_SECONDS:
            self.count("stale_timestamps")
            return problem(401, "Stale Timestamp", f"timestamps older than {MAX_AGE_SECONDS} s are rejected")
        return None

    def _accept(self, topic: str, operation: str, tally: _Tally, row: dict[str, Any]) -> dict[str, Any]:
        """One row, under the app's lock. The parsed row itself is kept as the delivery record."""
        key, idempotency_key, fields = row["key"], row.get("idempotency_key"), row["fields"]
        code = _field_error(operation, idempotency_key, fields)
        if code is not None:
            tally.rejected += 1
            return {"key": key, "status": "rejected", "code": code}
        if operation == "send" and idempotency_key in self.sent:
            tally.duplicates += 1
            return {**self.sent[idempotency_key], "key": key, "status": "duplicate"}
        delivery_id = f"{self._delivery_prefix}{next(self._delivery_numbers):016x}"
        ack = {"key": key, "status": "accepted", "delivery_id": delivery_id}
        row["topic"], row["operation"], row["delivery_id"] = topic, operation, delivery_id
        self.deliveries.append(row)
        if operation == "remove":
            self.members.setdefault(topic, {}).pop(key, None)
        else:
            self.members.setdefault(topic, {})[key] = fields
        if operation == "send":
            self.sent[idempotency_key] = ack
        tally.delivered += 1
        return ack


@dataclass
class _Tally:
    """Row counts of one request, added to the app's stats once."""

    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0


def _valid_envelope(envelope: Any) -> bool:
    return (
        isinstance(envelope, dict)
        and isinstance(envelope.get("topic"), str)
        and envelope.get("operation") in OPERATIONS
        and isinstance(envelope.get("rows"), list)
        and all(isinstance(row, dict) and isinstance(row.get("key"), str) and row["key"] for row in envelope["rows"])
    )


def _field_error(operation: str, idempotency_key: Any, fields: Any) -> str | None:
    """The receiver's schema: an object of scalar fields; `email`, when present, looks like one."""
    if type(fields) is not dict:
        return "invalid_fields"
    for value in fields.values():
        if isinstance(value, dict | list):
            return "invalid_fields"
    if operation == "send" and not (isinstance(idempotency_key, str) and idempotency_key):
        return "missing_idempotency_key"
    email = fields.get("email")
    if email is not None and not (isinstance(email, str) and EMAIL.match(email)):
        return "invalid_email"
    return None
