"""Webhook connector against the receiver sandbox: signed batches, per-row errors, send idempotency."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import duckdb
import requests

from syncs.destinations import webhook as webhook_module
from syncs.destinations.base import AcknowledgedRows, Operation, OutboundBatch, OutboundRow
from syncs.destinations.webhook import WebhookDestination, sign
from syncs.sandbox.apps.credentials import WEBHOOK_SECRET


def webhook(sandbox: Any, **settings: Any) -> WebhookDestination:
    cfg = WebhookDestination.Settings(base_url=f"{sandbox.url}/webhook/events", secret_env=WEBHOOK_SECRET, **settings)
    return WebhookDestination("webhook", cfg, WebhookDestination.Target(topic="lifecycle"))


def rows(n: int, *, send: bool = False) -> list[OutboundRow]:
    return [
        OutboundRow(f"c{i}", {"email": f"person{i}@example.com", "stage": "trial"}, f"occ-{i}" if send else None)
        for i in range(n)
    ]


def test_upsert_then_remove_reaches_the_receiver_signed(clean_sandbox: Any) -> None:
    dest = webhook(clean_sandbox)
    outcomes = dest.write(Operation.UPSERT, rows(3))
    assert [o.ok for o in outcomes] == [True, True, True]
    app = clean_sandbox.app("webhook")
    assert set(app.members["lifecycle"]) == {"c0", "c1", "c2"}
    assert dest.write(Operation.REMOVE, rows(1))[0].ok
    assert set(app.members["lifecycle"]) == {"c1", "c2"}


def test_payload_shape(clean_sandbox: Any) -> None:
    webhook(clean_sandbox).write(Operation.SEND, rows(1, send=True))
    delivery = clean_sandbox.app("webhook").deliveries[0]
    assert delivery["topic"] == "lifecycle"
    assert delivery["operation"] == "send"
    assert delivery["key"] == "c0"
    assert delivery["idempotency_key"] == "occ-0"
    assert delivery["fields"] == {"email": "person0@example.com", "stage": "trial"}


def test_repeated_send_is_acknowledged_but_delivered_once(clean_sandbox: Any) -> None:
    dest = webhook(clean_sandbox)
    first = dest.write(Operation.SEND, rows(2, send=True))
    again = dest.write(Operation.SEND, rows(2, send=True))
    assert all(o.ok for o in first + again)
    assert [o.destination_ref for o in first] == [o.destination_ref for o in again]
    app = clean_sandbox.app("webhook")
    assert len(app.deliveries) == 2
    assert app.stats["duplicates"] == 2


def test_send_without_idempotency_key_is_a_permanent_row_error(clean_sandbox: Any) -> None:
    [outcome] = webhook(clean_sandbox).write(Operation.SEND, rows(1))
    assert (outcome.ok, outcome.code, outcome.permanent) == (False, "missing_idempotency_key", True)
    assert clean_sandbox.app("webhook").stats["requests"] == 0


def test_invalid_row_fails_alone_without_echoing_its_value(clean_sandbox: Any) -> None:
    batch = [*rows(2), OutboundRow("bad", {"email": "not-an-email"})]
    outcomes = {o.key: o for o in webhook(clean_sandbox).write(Operation.UPSERT, batch)}
    assert outcomes["c0"].ok and outcomes["c1"].ok
    assert (outcomes["bad"].code, outcomes["bad"].permanent) == ("invalid_email", True)
    assert "not-an-email" not in (outcomes["bad"].message or "")


def test_dates_and_decimals_are_serialised(clean_sandbox: Any) -> None:
    from datetime import date
    from decimal import Decimal

    row = OutboundRow("c1", {"renews_on": date(2026, 12, 1), "revenue": Decimal("12.50")})
    assert webhook(clean_sandbox).write(Operation.UPSERT, [row])[0].ok
    assert clean_sandbox.app("webhook").members["lifecycle"]["c1"] == {"renews_on": "2026-12-01", "revenue": "12.50"}


def post_signed(sandbox: Any, body: bytes, timestamp: str, secret: str) -> requests.Response:
    headers = {"X-Tidings-Timestamp": timestamp, "X-Tidings-Signature": sign(secret, timestamp, body)}
    return requests.post(f"{sandbox.url}/webhook/events", data=body, headers=headers, timeout=5)


def test_receiver_verifies_signature_and_rejects_stale_timestamps(clean_sandbox: Any) -> None:
    body = json.dumps({"topic": "t", "operation": "upsert", "rows": [{"key": "k", "fields": {}}]}).encode()
    secret = os.environ[WEBHOOK_SECRET]
    now = str(int(time.time()))
    assert post_signed(clean_sandbox, body, now, secret).status_code == 200
    assert post_signed(clean_sandbox, body, now, "wrong-secret").json()["title"] == "Invalid Signature"
    stale = post_signed(clean_sandbox, body, str(int(time.time()) - 301), secret)
    assert (stale.status_code, stale.json()["title"]) == (401, "Stale Timestamp")
    tampered = requests.post(
        f"{clean_sandbox.url}/webhook/events",
        data=body.replace(b'"t"', b'"x"'),
        headers={"X-Tidings-Timestamp": now, "X-Tidings-Signature": sign(secret, now, body)},
        timeout=5,
    )
    assert tampered.status_code == 401


def test_wrong_secret_fails_the_batch_as_transient(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(WEBHOOK_SECRET, "not-the-receivers-secret")
    outcomes = webhook(clean_sandbox).write(Operation.UPSERT, rows(2))
    assert {(o.ok, o.code, o.permanent) for o in outcomes} == {(False, "http_401", False)}
    assert clean_sandbox.app("webhook").stats["invalid_signatures"] == 1  # a fresh signature's refusal is final


def test_a_signature_aged_by_retries_is_signed_again(clean_sandbox: Any, monkeypatch: Any) -> None:
    """urllib3 re-sends a request's headers on its retries, so after a long Retry-After the receiver sees an aged
    signature; the connector signs the same body anew instead of failing the batch."""
    signing_times = [time.time() - 400]  # the first signature was made 400 s before its last attempt
    monkeypatch.setattr(webhook_module, "wall_clock", lambda: signing_times.pop() if signing_times else time.time())
    outcomes = webhook(clean_sandbox).write(Operation.UPSERT, rows(2))
    assert all(o.ok for o in outcomes)
    stats = clean_sandbox.app("webhook").stats
    assert (stats["stale_timestamps"], stats["delivered"]) == (1, 2)


def test_retries_through_429_and_503(clean_sandbox: Any, control: Any) -> None:
    control("webhook", burst_429=1, burst_5xx=2, retry_after_seconds=1)
    outcomes = webhook(clean_sandbox).write(Operation.UPSERT, rows(2))
    assert all(o.ok for o in outcomes)
    stats = clean_sandbox.app("webhook").stats
    assert (stats["rate_limited"], stats["faults_5xx"], stats["delivered"]) == (1, 2, 2)


def test_exhausted_retries_become_transient_row_failures(clean_sandbox: Any, control: Any) -> None:
    control("webhook", burst_5xx=10)
    outcomes = webhook(clean_sandbox, max_retries=1).write(Operation.UPSERT, rows(2))
    assert {(o.ok, o.code, o.permanent) for o in outcomes} == {(False, "http_503", False)}


def test_missing_secret_env_names_the_variable(monkeypatch: Any) -> None:
    import pytest

    from syncs.destinations._support import MissingSecretError

    monkeypatch.delenv(WEBHOOK_SECRET)
    with pytest.raises(MissingSecretError, match=WEBHOOK_SECRET):
        webhook(type("S", (), {"url": "http://127.0.0.1:1"})())


def warehouse_rendered(batch: list[OutboundRow]) -> OutboundBatch:
    """The batch as the runner streams it when the plan's fields are JSON-exact: each row rendered by DuckDB."""
    con = duckdb.connect()
    json_rows = [
        con.execute(
            "select json_object('key', ?, 'idempotency_key', ?, 'fields', json(?))::varchar",
            [row.key, row.idempotency_key, json.dumps(row.fields)],
        ).fetchone()[0]
        for row in batch
    ]
    return OutboundBatch([r.key for r in batch], [r.idempotency_key for r in batch], lambda: batch, json_rows)


def tricky_rows() -> list[OutboundRow]:
    names = ['Zoë "Z" O\'Brien', "Łukasz\\", "名前", None]
    return [
        OutboundRow(f"c{i}", {"email": f"person{i}@example.com", "first_name": name, "score": i, "vip": i % 2 == 0})
        for i, name in enumerate(names)
    ]


def test_rows_rendered_in_the_warehouse_arrive_as_the_rows_themselves(clean_sandbox: Any) -> None:
    app = clean_sandbox.app("webhook")
    webhook(clean_sandbox).write(Operation.UPSERT, tricky_rows())
    from_python = [(d["key"], d["idempotency_key"], d["fields"]) for d in app.deliveries]
    app.reset()

    batch = warehouse_rendered(tricky_rows())
    outcomes = webhook(clean_sandbox).write(Operation.UPSERT, batch)

    assert [(d["key"], d["idempotency_key"], d["fields"]) for d in app.deliveries] == from_python
    assert isinstance(outcomes, AcknowledgedRows) and outcomes.keys == batch.keys
    assert [o.destination_ref for o in outcomes] == [d["delivery_id"] for d in app.deliveries]
    assert batch._rows is None, "the connector built row objects it did not need"


def test_a_rejected_row_in_a_rendered_batch_is_answered_row_by_row(clean_sandbox: Any) -> None:
    batch = [*rows(2), OutboundRow("bad", {"email": "not-an-email"})]
    outcomes = webhook(clean_sandbox).write(Operation.UPSERT, warehouse_rendered(batch))
    answered = [(o.key, o.ok, o.code) for o in outcomes]
    assert answered == [("c0", True, None), ("c1", True, None), ("bad", False, "invalid_email")]


def test_a_rendered_send_without_idempotency_keys_falls_back_to_row_checks(clean_sandbox: Any) -> None:
    batch = [*rows(1, send=True), OutboundRow("c9", {"email": "person9@example.com"})]
    outcomes = {o.key: o for o in webhook(clean_sandbox).write(Operation.SEND, warehouse_rendered(batch))}
    assert outcomes["c0"].ok
    unkeyed = outcomes["c9"]
    assert (unkeyed.ok, unkeyed.code, unkeyed.permanent) == (False, "missing_idempotency_key", True)
