"""A webhook receiver that checks what a careful consumer checks: the HMAC signature, the timestamp's age,
the envelope, each row's fields, and repeated sends (deduplicated by idempotency key, answered with the
original acknowledgement)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
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

    @route("POST", r"/events")
    def receive(self, request: Request) -> Response:
        refusal = self._authenticate(request)
        if refusal is not None:
            return refusal
        envelope = request.json()
        if not _valid_envelope(envelope):
            return problem(400, "Bad Request", "expected {topic, operation, rows: [{key, idempotency_key, fields}]}")
        with self.lock:
            results = [self._accept(envelope["topic"], envelope["operation"], row) for row in envelope["rows"]]
        return Response(200, {"results": results})

    def _authenticate(self, request: Request) -> Response | None:
        timestamp = request.headers.get("x-tidings-timestamp", "")
        signature = request.headers.get("x-tidings-signature", "")
        if not timestamp.isdigit() or not signature.startswith("sha256="):
            return problem(401, "Unauthorized", "missing X-Tidings-Timestamp or X-Tidings-Signature")
        expected = hmac.new(self.secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
        if not hmac.compare_digest(signature.removeprefix("sha256="), expected.hexdigest()):
            return problem(401, "Invalid Signature", "the signature does not match the body")
        if abs(time.time() - int(timestamp)) > MAX_AGE_SECONDS:
            return problem(401, "Stale Timestamp", f"timestamps older than {MAX_AGE_SECONDS} s are rejected")
        return None

    def _accept(self, topic: str, operation: str, row: dict[str, Any]) -> dict[str, Any]:
        key, idempotency_key, fields = row["key"], row.get("idempotency_key"), row["fields"]
        code = _field_error(operation, idempotency_key, fields)
        if code is not None:
            self.count("rejected_rows")
            return {"key": key, "status": "rejected", "code": code}
        if operation == "send" and idempotency_key in self.sent:
            self.count("duplicates")
            return {**self.sent[idempotency_key], "key": key, "status": "duplicate"}
        ack = {"key": key, "status": "accepted", "delivery_id": uuid.uuid4().hex}
        self.deliveries.append({"topic": topic, "operation": operation, **row, "delivery_id": ack["delivery_id"]})
        members = self.members.setdefault(topic, {})
        if operation == "remove":
            members.pop(key, None)
        else:
            members[key] = fields
        if operation == "send":
            self.sent[idempotency_key] = ack
        self.count("delivered")
        return ack


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
    if not isinstance(fields, dict) or any(isinstance(v, dict | list) for v in fields.values()):
        return "invalid_fields"
    if operation == "send" and not (isinstance(idempotency_key, str) and idempotency_key):
        return "missing_idempotency_key"
    email = fields.get("email")
    if email is not None and not (isinstance(email, str) and EMAIL.match(email)):
        return "invalid_email"
    return None
