"""Invariants 1 and 5 on the real pipeline: every declared sync runs over the built sample warehouse against
the sandboxes while everything observable is captured (logs at DEBUG, stdout/stderr, exceptions, results,
tidings.* tables) and scanned for raw emails, phones and sandbox secrets. Also: the sandboxes refuse wrong
credentials and the webhook receiver verifies signatures."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests

from syncs.destinations.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from syncs.engine import load_project, run_sync
from syncs.sandbox.apps import SANDBOX_CREDENTIALS, all_apps, use_sandbox_credentials
from syncs.sandbox.sftp import SftpSandbox
from tests.reliability.figures import FIGURES
from tests.reliability.pii import personal_values

ROWS_PER_MODEL = 40  # enough rows to exercise every path; a sandbox's real-world rate limit sets the pace
# Run history and errors. tidings.sync_state is not history: a mirror keeps the identifiers it sent there so it
# can remove the member later, next to the same PII in the models.
HISTORY_TABLES = ("sync_runs", "row_errors", "message_ledger", "message_acks", "sync_locks")


def history_text(warehouse: Any) -> str:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return json.dumps(
            {t: con.execute(f"select * from tidings.{t}").fetchall() for t in HISTORY_TABLES}, default=str
        )


def trim_synced_models(warehouse: Any, models: set[str]) -> None:
    """Keep the first rows of each synced model table so a full run of every sync stays quick."""
    with duckdb.connect(str(warehouse)) as con:
        for model in sorted(models):
            kind = con.execute(
                "select table_type from information_schema.tables where table_schema = 'analytics' and table_name = ?",
                [model],
            ).fetchone()
            if kind == ("BASE TABLE",):
                con.execute(f"delete from analytics.{model} where rowid >= {ROWS_PER_MODEL}")


@pytest.fixture
def sftp_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SftpSandbox]:
    """The mail-house SFTP drop box, where the sandbox profile of destinations.yml looks for it."""
    with SftpSandbox(tmp_path / "mailhouse") as sftp:
        monkeypatch.setenv("TIDINGS_SANDBOX_SFTP_PORT", str(sftp.port))
        yield sftp


def test_no_raw_pii_or_secret_escapes_a_full_pipeline_run(warehouse_copy, clean_sandbox, sftp_sandbox, caplog, capsys):
    use_sandbox_credentials()
    caplog.set_level(logging.DEBUG)
    project = load_project()
    assert project.syncs, "the project declares no syncs"
    trim_synced_models(warehouse_copy, {sync.model for sync in project.syncs.values()})
    observed: list[str] = []
    statuses = {}
    for name in project.syncs:
        try:
            result = run_sync(name, project=project, warehouse=warehouse_copy)
            statuses[name] = result.status
            observed.append(json.dumps(result.to_dict(), default=str))
        except Exception as error:  # a failing run is fine here; what it says is what we scan
            statuses[name] = f"raised {type(error).__name__}"
            observed += [str(error), repr(error), repr(error.__cause__)]
    captured = capsys.readouterr()
    observed += [captured.out, captured.err, caplog.text, history_text(warehouse_copy)]
    observed += [str(record.args) for record in caplog.records]
    haystack = "\n".join(observed)

    needles = personal_values(warehouse_copy)
    secrets = set(SANDBOX_CREDENTIALS.values())
    FIGURES.rows_checked += len(needles)
    leaked_pii = sorted(n for n in needles if n in haystack)
    leaked_secrets = sorted(s for s in secrets if s in haystack)
    assert len(needles) > 100, "the sample warehouse should hold emails and phones to look for"
    assert not leaked_secrets, f"sandbox secrets in logs/results/history: {len(leaked_secrets)}"
    assert not leaked_pii, f"{len(leaked_pii)} raw emails/phones in logs/results/history, e.g. {leaked_pii[0][:3]}***"
    assert all(status in ("success", "partial") for status in statuses.values()), statuses


def test_audiences_and_message_queue_only_hold_reachable_customers(built_warehouse):
    """Invariant 1 on the built sample warehouse: a message-queue row goes out only on a channel its customer
    can be reached on (consent, not suppressed, a valid identifier)."""
    with duckdb.connect(str(built_warehouse), read_only=True) as con:
        violations = con.execute(
            """select q.channel, count(*) from analytics.message_queue q
               join analytics.dim_customers c using (customer_id)
               where (q.channel = 'email' and not c.can_email) or (q.channel = 'sms' and not c.can_sms)
                  or (q.channel = 'direct_mail' and not c.can_mail) or c.is_globally_suppressed
               group by all"""
        ).fetchall()
        queued = con.execute("select count(*) from analytics.message_queue").fetchone()[0]
    FIGURES.rows_checked += queued
    assert queued > 0
    assert violations == []


# Authentication ------------------------------------------------------------------------------------------

WRONG = "wrong-credential-0000"
# For each HTTP sandbox: a request to a real route carrying a wrong credential in the provider's scheme.
WRONG_CREDENTIAL_REQUESTS: dict[str, dict[str, Any]] = {
    "webhook": {"method": "POST", "path": "/events", "headers": {TIMESTAMP_HEADER: "1", SIGNATURE_HEADER: "sha256=0"}},
    "mailchimp": {"method": "POST", "path": "/lists/lifecycle", "auth": ("anystring", WRONG)},
    "meta": {"method": "POST", "path": "/v21.0/123/users", "params": {"access_token": WRONG}},
    "google_ads": {
        "method": "POST",
        "path": "/v19/customers/123/offlineUserDataJobs:create",
        "headers": {"Authorization": f"Bearer {WRONG}", "developer-token": WRONG},
    },
    "lob": {"method": "POST", "path": "/v1/postcards", "auth": (WRONG, "")},
    "sendgrid": {"method": "PUT", "path": "/v3/marketing/contacts", "headers": {"Authorization": f"Bearer {WRONG}"}},
}


@pytest.mark.parametrize("app_name", sorted(app.name for app in all_apps()))
def test_each_sandbox_refuses_a_wrong_credential(clean_sandbox, app_name):
    assert app_name in WRONG_CREDENTIAL_REQUESTS, f"no wrong-credential probe for sandbox app {app_name!r}"
    probe = dict(WRONG_CREDENTIAL_REQUESTS[app_name])
    url = f"{clean_sandbox.url}{clean_sandbox.app(app_name).prefix}{probe.pop('path')}"
    response = requests.request(probe.pop("method"), url, json={}, timeout=10, **probe)
    assert response.status_code in (401, 403), (app_name, response.status_code)
    assert WRONG not in response.text


def post_signed(sandbox: Any, body: bytes, secret: str, timestamp: str) -> requests.Response:
    headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}
    return requests.post(f"{sandbox.url}/webhook/events", data=body, headers=headers, timeout=10)


def test_webhook_signatures_are_verified(clean_sandbox):
    secret = SANDBOX_CREDENTIALS["TIDINGS_WEBHOOK_SECRET"]
    body = json.dumps({"topic": "t", "operation": "upsert", "rows": [{"key": "k", "fields": {}}]}).encode()
    now = str(int(time.time()))

    assert post_signed(clean_sandbox, body, secret, now).status_code == 200
    signed = {TIMESTAMP_HEADER: now, SIGNATURE_HEADER: sign(secret, now, body)}
    tampered = body.replace(b'"k"', b'"x"')
    assert (
        requests.post(f"{clean_sandbox.url}/webhook/events", data=tampered, headers=signed, timeout=10).status_code
        == 401
    )
    assert post_signed(clean_sandbox, body, "not-the-secret", now).status_code == 401
    assert post_signed(clean_sandbox, body, secret, str(int(time.time()) - 3600)).status_code == 401
    assert list(clean_sandbox.app("webhook").members) == ["t"]
