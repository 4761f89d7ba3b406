"""Building blocks of the reliability tests: sync projects (reusing tests/syncs' SyncEnv), syncs run in a real
child process that we kill, and the delivery invariants checked against what the sandbox received."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncs.sandbox.apps import use_sandbox_credentials
from tests.reliability.figures import FIGURES
from tests.syncs.conftest import DESTINATIONS, MODEL_YAML, SyncEnv

# Syncs of tests/syncs' project, by mode, with what the sandbox calls their topic.
SYNC_BY_MODE = {
    "mirror": ("audience_mirror", "audience"),
    "upsert": ("audience_upsert", "contacts"),
    "send_once": ("welcome_send", "welcome"),
    "export": ("audience_export", None),
}

# Destinations and syncs the reliability suite adds to that project.
EXTRA_DESTINATIONS = """
    hooks_impatient:
      type: webhook
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/webhook/events"
      secret_env: TIDINGS_WEBHOOK_SECRET
      batch_size: 20
      timeout_seconds: 0.25
      max_retries: 1
    meta_ads:
      type: meta_custom_audiences
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/meta/v21.0"
      access_token_env: TIDINGS_META_ACCESS_TOKEN
      batch_size: 3
"""
META_AUDIENCE_ID = "23850000000000099"

EXTRA_MODELS = """
models:
  - name: urgent_messages
    config:
      meta:
        tidings:
          syncs:
            - name: urgent_send_impatient
              destination: hooks_impatient
              mode: send_once
              primary_key: occurrence_key
              target: {topic: urgent}
              mapping: {email: email, template: template}
  - name: consented_audience
    config:
      meta:
        tidings:
          syncs:
            - name: consented_mirror
              destination: hooks
              mode: mirror
              primary_key: customer_id
              target: {topic: consented}
              mapping: {email: email}
              guards: {max_removal_share: 1.0}
  - name: adversarial
    config:
      meta:
        tidings:
          syncs:
            - name: adversarial_upsert
              destination: hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: adversarial}
              mapping: {email: email, phone: phone, first_name: first_name}
  - name: ad_audience
    config:
      meta:
        tidings:
          syncs:
            - name: ad_audience_meta
              destination: meta_ads
              mode: mirror
              primary_key: customer_id
              target: {audience_id: "23850000000000099"}
              mapping: {EMAIL: email}
              guards: {max_removal_share: 1.0}
"""

# How the segment models filter (dim_customers.can_email): consent given and not withdrawn, not globally
# suppressed, and a usable address.
# A send_once sync of model `mail_pieces` to a destination named `mailhouse` (SFTP), for mail-drop tests.
MAIL_MODEL_YAML = """
models:
  - name: mail_pieces
    config:
      meta:
        tidings:
          syncs:
            - name: winback_mail
              destination: mailhouse
              mode: send_once
              primary_key: occurrence_key
              target: {campaign: winback}
              mapping: {full_name: full_name, address_line1: street, city: city, state: state, postal_code: zip}
"""


CONSENTED_AUDIENCE_VIEW = """
create view analytics.consented_audience as
select customer_id, lower(trim(email)) as email
from analytics.generated_customers
where consent_email and not coalesce(consent_withdrawn, false) and not coalesce(suppressed, true)
  and regexp_full_match(lower(trim(email)), '[^@\\s]+@[^@\\s]+\\.[^@\\s.]{2,}')
"""


def make_env(root: Path, sandbox: Any, *, audience: int = 100, messages: int = 40) -> SyncEnv:
    """tests/syncs' project (all four modes) plus the reliability syncs, in a fresh warehouse under `root`."""
    use_sandbox_credentials()
    project_dir = root / "dbt_project"
    (project_dir / "models").mkdir(parents=True)
    (project_dir / "models" / "_audiences.yml").write_text(textwrap.dedent(MODEL_YAML))
    (project_dir / "models" / "_reliability.yml").write_text(textwrap.dedent(EXTRA_MODELS))
    destinations = project_dir / "destinations.yml"
    text = DESTINATIONS.replace("EXPORTS_DIR", str(root / "exports")).rstrip("\n") + EXTRA_DESTINATIONS
    destinations.write_text(text)
    env = SyncEnv(root, root / "warehouse.duckdb", project_dir, destinations, sandbox)
    env.sql("create schema analytics")
    env.fill_audience(audience)
    env.fill_messages(messages)
    env.sql("create view analytics.urgent_messages as select * from analytics.messages")
    env.sql(
        "create table analytics.generated_customers "
        "(customer_id varchar, email varchar, consent_email boolean, consent_withdrawn boolean, suppressed boolean)"
    )
    env.sql(CONSENTED_AUDIENCE_VIEW)
    env.sql(
        "create table analytics.adversarial (customer_id varchar, email varchar, phone varchar, first_name varchar)"
    )
    env.sql("create table analytics.ad_audience (customer_id varchar, email varchar)")
    return env


# Child processes -----------------------------------------------------------------------------------------


@dataclass
class ChildRun:
    returncode: int
    killed: bool
    stdout: str
    stderr: str


def cli_command(env: SyncEnv, sync_name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "syncs.cli",
        "--warehouse",
        str(env.warehouse),
        "--project-dir",
        str(env.dbt_project_dir),
        "--destinations",
        str(env.destinations_file),
        "--profile",
        "sandbox",
        "run",
        sync_name,
        "--json",
    ]


def child_environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_CRASH_")}
    return {**environment, **extra}


def run_with_crash_hook(env: SyncEnv, sync_name: str, after_batches: int, before_commit: bool) -> ChildRun:
    """Run the sync in a child that exits abruptly (os._exit) after batch `after_batches` is settled."""
    hooks = {"TIDINGS_CRASH_AFTER_BATCHES": str(after_batches)}
    if before_commit:
        hooks["TIDINGS_CRASH_BEFORE_COMMIT"] = "1"
    done = subprocess.run(
        cli_command(env, sync_name), env=child_environment(**hooks), capture_output=True, text=True, timeout=120
    )
    killed = done.returncode == 137
    _count_child(killed, hook=True)
    return ChildRun(done.returncode, killed, done.stdout, done.stderr)


def run_and_sigkill(env: SyncEnv, sync_name: str, rng: random.Random, *, window_seconds: float) -> ChildRun:
    """Start the sync in a child, wait until it starts talking to the sandbox (or, for a sync without HTTP, a
    startup allowance), then SIGKILL it after a random delay within `window_seconds`."""
    webhook = env.webhook()
    requests_before = webhook.stats["requests"]
    child = subprocess.Popen(
        cli_command(env, sync_name),
        env=child_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    talks_http = sync_name != SYNC_BY_MODE["export"][0]  # an export's delay window covers start-up and writing
    deadline = time.monotonic() + 30
    while talks_http and child.poll() is None and webhook.stats["requests"] == requests_before:
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0, window_seconds))
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    stdout, stderr = child.communicate(timeout=60)  # reaps the child, so its pid no longer looks alive
    killed = child.returncode == -signal.SIGKILL
    _count_child(killed, hook=False)
    return ChildRun(child.returncode, killed, stdout, stderr)


def _count_child(killed: bool, *, hook: bool) -> None:
    FIGURES.subprocess_runs += 1
    if killed:
        FIGURES.runs_killed += 1
        if hook:
            FIGURES.crash_hook_kills += 1
        else:
            FIGURES.sigkill_kills += 1


def record_faults(env: SyncEnv) -> None:
    stats = env.webhook().stats
    FIGURES.faults_injected += stats["rate_limited"] + stats["faults_5xx"] + stats["dropped"]


# Invariants ----------------------------------------------------------------------------------------------


def recover(env: SyncEnv, sync_name: str, max_runs: int = 3) -> list[Any]:
    """Re-run (in process, as an operator would) until a run has nothing left to do."""
    results = []
    for _ in range(max_runs):
        result = env.run(sync_name, allow_large_removal=True)
        FIGURES.recovery_runs += 1
        results.append(result)
        planned = result.planned
        if result.status == "success" and planned.add + planned.change + planned.remove == 0:
            break
    return results


def audience_rows(env: SyncEnv, where: str = "true") -> dict[str, dict[str, Any]]:
    rows = env.sql(f"select customer_id, email, first_name, score from analytics.audience where {where}")
    return {r[0]: {"email": r[1], "first_name": r[2], "score": r[3]} for r in rows}


def assert_converged(env: SyncEnv, mode: str) -> None:
    """The destination holds exactly what the model says, each send_once occurrence delivered once."""
    sync_name, topic = SYNC_BY_MODE[mode]
    if mode == "mirror":
        expected = audience_rows(env)
        _assert_members(env, topic, expected, exact=True)
    elif mode == "upsert":
        expected = {k: {"email": v["email"], "score": v["score"]} for k, v in audience_rows(env, "score >= 10").items()}
        _assert_members(env, topic, expected, exact=False)
    elif mode == "send_once":
        assert_sent_exactly_once(env, sync_name, topic, "messages")
    else:
        _assert_export(env, sync_name)


def _assert_members(env: SyncEnv, topic: str, expected: dict[str, dict[str, Any]], *, exact: bool) -> None:
    members = env.webhook().members.get(topic, {})
    lost = set(expected) - set(members)
    FIGURES.rows_checked += len(expected)
    FIGURES.rows_lost += len(lost)
    assert not lost, f"{len(lost)} audience rows never reached the destination, e.g. {sorted(lost)[:5]}"
    if exact:
        extra = set(members) - set(expected)
        FIGURES.stale_members_left += len(extra)
        assert not extra, f"{len(extra)} members the model no longer holds were not removed: {sorted(extra)[:5]}"
    stale = [key for key, fields in expected.items() if members[key] != fields]
    assert not stale, f"{len(stale)} members hold outdated fields, e.g. {stale[:5]}"


def assert_sent_exactly_once(env: SyncEnv, sync_name: str, topic: str, model: str) -> None:
    occurrences = {k for (k,) in env.sql(f"select occurrence_key from analytics.{model}")}
    delivered = Counter(d["key"] for d in env.webhook().deliveries if d["topic"] == topic and d["operation"] == "send")
    duplicates = sum(n - 1 for n in delivered.values())
    lost = occurrences - set(delivered)
    FIGURES.rows_checked += len(occurrences)
    FIGURES.duplicates_delivered += duplicates
    FIGURES.rows_lost += len(lost)
    assert duplicates == 0, f"{duplicates} duplicate deliveries: {[k for k, n in delivered.items() if n > 1][:5]}"
    assert not lost, f"{len(lost)} occurrences never delivered, e.g. {sorted(lost)[:5]}"
    assert set(delivered) == occurrences
    ledger = dict(
        env.sql("select status, count(*) from tidings.message_ledger where sync_name = ? group by all", [sync_name])
    )
    assert ledger == {"sent": len(occurrences)}, f"ledger out of step with the destination: {ledger}"


def _assert_export(env: SyncEnv, sync_name: str) -> None:
    expected = {k: str(v["score"]) for k, v in audience_rows(env).items()}
    latest = env.root / "exports" / "audience" / "latest.csv"
    with latest.open() as handle:
        exported = {row["customer_id"]: row["score"] for row in csv.DictReader(handle)}
    FIGURES.rows_checked += len(expected)
    FIGURES.rows_lost += len(set(expected) - set(exported))
    assert exported == expected, "the latest export does not match the model"
    in_state = {k for (k,) in env.sql("select row_key from tidings.sync_state where sync_name = ?", [sync_name])}
    assert in_state == set(expected), "export state does not match the rows in the latest file"


def assert_history_truthful(env: SyncEnv, sync_name: str) -> None:
    """Every run in tidings.sync_runs has finished with a status; none still claims to be running, and a run
    that was killed is not recorded as a success."""
    runs = env.sql(
        "select run_id, status, sent, failed, finished_at from tidings.sync_runs where sync_name = ? "
        "order by started_at",
        [sync_name],
    )
    unfinished = [run_id for run_id, status, *_ in runs if status == "running"]
    assert not unfinished, f"{len(unfinished)} of {len(runs)} runs still recorded as 'running' after recovery"
    for run_id, status, sent, failed, finished_at in runs:
        assert finished_at is not None, run_id
        if status == "success":
            assert failed == 0, run_id
        if status in ("partial", "failed"):
            assert status == "failed" or (sent or 0) > 0, run_id


def assert_ledger_matches_history(env: SyncEnv, sync_name: str) -> None:
    """send_once: each finished run's `sent` equals the ledger occurrences it acknowledged (the ledger keeps
    the run that acknowledged an occurrence, so the two are independent records of the same sends)."""
    rows = env.sql(
        "select r.run_id, r.status, r.sent, count(l.occurrence_key) from tidings.sync_runs r "
        "left join tidings.message_ledger l on l.run_id = r.run_id and l.status = 'sent' "
        "where r.sync_name = ? and not r.dry_run and r.status <> 'running' group by all",
        [sync_name],
    )
    for run_id, status, sent, acknowledged in rows:
        assert (sent or 0) == acknowledged, f"run {run_id} ({status}) reports sent={sent}, ledger holds {acknowledged}"
