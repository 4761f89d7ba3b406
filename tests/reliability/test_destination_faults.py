"""Invariant 3 under destination faults (429 storms, 5xx bursts, random errors, dropped connections, slow
answers, client timeouts): every row arrives, send_once occurrences arrive once, and the run history adds up
to what the destination actually received."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.reliability.conftest import soak_iterations
from tests.reliability.harness import (
    SYNC_BY_MODE,
    assert_converged,
    assert_history_truthful,
    assert_ledger_matches_history,
    assert_sent_exactly_once,
    make_env,
    record_faults,
    recover,
)
from tests.syncs.conftest import SyncEnv

FAULTS: dict[str, dict[str, Any]] = {
    "429_storm": {"burst_429": 2, "retry_after_seconds": 1, "retry_after_http_date": True},
    "5xx_burst": {"burst_5xx": 3},
    "random_5xx": {"error_rate": 0.25, "seed": 11},
    "dropped_connections": {"drop_rate": 0.2, "seed": 5},
    "slow_answers": {"latency_seconds": 0.02},
}
WEBHOOK_MODES = ["mirror", "upsert", "send_once"]
MIXED_FAULTS = {"burst_5xx": 2, "error_rate": 0.1, "drop_rate": 0.1, "latency_seconds": 0.005, "seed": 3}
# The fast form mixes the faults per mode and runs one 429 storm (each 429 costs a real Retry-After second);
# the soak form runs every fault against every mode.
FAST_CASES = [(mode, "mixed") for mode in WEBHOOK_MODES] + [("mirror", "429_storm")]
SOAK_CASES = [(mode, fault) for fault in FAULTS for mode in WEBHOOK_MODES]


def history_totals(env: SyncEnv, sync_name: str) -> tuple[int, int]:
    sent, removed = env.sql(
        "select coalesce(sum(sent), 0), coalesce(sum(removed), 0) from tidings.sync_runs where sync_name = ?",
        [sync_name],
    )[0]
    return int(sent), int(removed)


def received(env: SyncEnv, topic: str) -> Counter[str]:
    return Counter(d["operation"] for d in env.webhook().deliveries if d["topic"] == topic)


def survive_faults(env: SyncEnv, mode: str, faults: dict[str, Any]) -> None:
    """A first clean run, a model change, then runs under `faults` until nothing is left to do."""
    sync_name, topic = SYNC_BY_MODE[mode]
    env.run(sync_name)
    env.sql("update analytics.audience set score = score + 1 where customer_id < 'c00020'")
    env.sql("delete from analytics.audience where customer_id >= 'c00090'")
    env.sql("insert into analytics.messages values ('welcome:late', 'late', 'late@example.com', 'welcome_v1')")
    env.faults(**faults)

    results = recover(env, sync_name)
    record_faults(env)

    assert results[0].status in ("success", "partial"), results[0].message
    assert_converged(env, mode)
    assert_history_truthful(env, sync_name)
    sent, removed = history_totals(env, sync_name)
    deliveries = received(env, topic)
    assert sent == deliveries["upsert"] + deliveries["send"], "runs report a different number of sends"
    assert removed == deliveries["remove"], "runs report a different number of removals"
    if mode == "send_once":
        assert_ledger_matches_history(env, sync_name)


@pytest.mark.parametrize(("mode", "fault"), FAST_CASES)
def test_faults_are_survived_and_history_adds_up(rel_env, mode, fault):
    survive_faults(rel_env, mode, MIXED_FAULTS if fault == "mixed" else FAULTS[fault])


@pytest.mark.soak
@pytest.mark.parametrize(("mode", "fault"), SOAK_CASES)
def test_soak_each_fault_against_each_mode(rel_env, mode, fault):
    survive_faults(rel_env, mode, FAULTS[fault])


def test_client_timeouts_on_send_once_never_duplicate(rel_env):
    """The sandbox answers after the client gave up, so it has delivered what the client counts as failed.
    The failed run says so; the next run re-sends under the same idempotency keys and nothing doubles."""
    rel_env.faults(latency_seconds=0.4)
    first = rel_env.run("urgent_send_impatient")
    rel_env.faults(latency_seconds=0)
    assert (first.status, first.sent, first.failed) == ("failed", 0, 40)
    assert first.error_summary == {"no_response": 40}

    recover(rel_env, "urgent_send_impatient")

    assert_sent_exactly_once(rel_env, "urgent_send_impatient", "urgent", "urgent_messages")
    assert_history_truthful(rel_env, "urgent_send_impatient")
    assert_ledger_matches_history(rel_env, "urgent_send_impatient")
    errors = rel_env.sql("select count(*) from tidings.row_errors where sync_name = 'urgent_send_impatient'")
    assert errors == [(0,)]


def test_a_destination_that_refuses_everything_fails_the_run_and_keeps_every_row(rel_env):
    rel_env.faults(burst_5xx=1_000)  # hooks_fragile does not retry: every batch fails
    failed = rel_env.run("audience_fragile")
    record_faults(rel_env)
    rel_env.faults(burst_5xx=0)

    assert (failed.status, failed.sent, failed.failed) == ("failed", 0, 100)
    run = rel_env.sql("select status, sent, failed from tidings.sync_runs where run_id = ?", [failed.run_id])
    assert run == [("failed", 0, 100)]
    reasons = rel_env.sql("select code, permanent, count(*) from tidings.row_errors group by all")
    assert reasons == [("http_503", False, 100)]

    assert recover(rel_env, "audience_fragile")[0].sent == 100
    assert set(rel_env.webhook().members["fragile"]) == {f"c{i:05d}" for i in range(100)}


@pytest.mark.soak
@pytest.mark.parametrize("mode", WEBHOOK_MODES)
def test_soak_fault_storms(tmp_path, clean_sandbox, rng, mode):
    sync_name, _ = SYNC_BY_MODE[mode]
    for iteration in range(soak_iterations()):
        env = make_env(tmp_path / f"i{iteration}", clean_sandbox, audience=300, messages=150)
        for app in clean_sandbox.apps.values():
            app.reset()
        env.faults(
            error_rate=rng.uniform(0, 0.3),
            drop_rate=rng.uniform(0, 0.15),
            burst_5xx=rng.randint(0, 4),
            latency_seconds=rng.choice([0, 0.005]),
            seed=rng.randint(0, 10**6),
        )
        recover(env, sync_name, max_runs=6)
        record_faults(env)
        env.faults(error_rate=0, drop_rate=0, burst_5xx=0, latency_seconds=0)
        assert_converged(env, mode)
        assert_history_truthful(env, sync_name)
