"""Invariants 2 and 3 under real process death: a sync run in a child process is killed (the runner's crash
hooks, or SIGKILL at a random moment while a slowed sandbox is serving), then recovered; the destination
must end up holding exactly the model's rows, each send_once occurrence delivered exactly once."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.reliability.conftest import soak_iterations
from tests.reliability.harness import (
    SYNC_BY_MODE,
    ChildRun,
    assert_converged,
    assert_history_truthful,
    assert_ledger_matches_history,
    make_env,
    record_faults,
    recover,
    run_and_sigkill,
    run_with_crash_hook,
)
from tests.syncs.conftest import SyncEnv

MODES = list(SYNC_BY_MODE)
AUDIENCE_ROWS = 200
MESSAGE_ROWS = 120
SANDBOX_LATENCY_SECONDS = 0.03
KILL_WINDOW_SECONDS = {"mirror": 0.4, "upsert": 0.4, "send_once": 0.3, "export": 2.0}

Killer = Callable[[SyncEnv, str, random.Random], ChildRun]


def hook_crash(env: SyncEnv, sync_name: str, rng: random.Random) -> ChildRun:
    return run_with_crash_hook(env, sync_name, after_batches=rng.randint(1, 6), before_commit=rng.random() < 0.5)


def sigkill(env: SyncEnv, sync_name: str, rng: random.Random) -> ChildRun:
    mode = next(m for m, (name, _) in SYNC_BY_MODE.items() if name == sync_name)
    env.faults(latency_seconds=SANDBOX_LATENCY_SECONDS)
    try:
        return run_and_sigkill(env, sync_name, rng, window_seconds=KILL_WINDOW_SECONDS[mode])
    finally:
        env.faults(latency_seconds=0)


def change_the_model(env: SyncEnv, mode: str, rng: random.Random) -> None:
    """Between runs the audience moves: members leave, join and change; new message occurrences appear."""
    if mode == "send_once":
        start = 10_000 + rng.randint(0, 10**6)
        env.sql(
            f"insert into analytics.messages select 'welcome:x' || i, 'x' || i, 'x' || i || '@example.com', "
            f"'welcome_v1' from range({start}, {start + rng.randint(5, 40)}) t(i)"
        )
        return
    leaving = rng.randint(0, AUDIENCE_ROWS // 5)
    env.sql(
        f"delete from analytics.audience where customer_id in (select customer_id from analytics.audience "
        f"order by hash(customer_id, {rng.randint(0, 10**6)}) limit {leaving})"
    )
    env.sql(f"update analytics.audience set score = score + 1 where hash(customer_id, {rng.randint(0, 10**6)}) % 7 = 0")
    start = 50_000 + rng.randint(0, 10**6)
    env.sql(
        f"insert into analytics.audience select printf('n%07d', i), printf('n%07d@example.com', i), 'New' || i, "
        f"(i % 50)::integer from range({start}, {start + rng.randint(0, 30)}) t(i)"
    )


def crash_and_recover(env: SyncEnv, mode: str, rng: random.Random, killers: list[Killer], crashes: int) -> None:
    sync_name = SYNC_BY_MODE[mode][0]
    if rng.random() < 0.5:
        env.run(sync_name)
        change_the_model(env, mode, rng)
    for _ in range(crashes):
        rng.choice(killers)(env, sync_name, rng)
        if rng.random() < 0.3:
            change_the_model(env, mode, rng)
    recover(env, sync_name)
    assert_converged(env, mode)
    if mode == "send_once":
        assert_ledger_matches_history(env, sync_name)
    record_faults(env)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("killer", [hook_crash, sigkill], ids=["crash_hook", "sigkill"])
def test_a_killed_run_loses_nothing_and_sends_nothing_twice(tmp_path, clean_sandbox, rng, mode, killer):
    env = make_env(tmp_path, clean_sandbox, audience=AUDIENCE_ROWS, messages=MESSAGE_ROWS)
    crash_and_recover(env, mode, rng, [killer], crashes=1)


@pytest.mark.parametrize("before_commit", [False, True], ids=["after_commit", "before_commit"])
def test_send_once_crash_around_the_commit_never_duplicates(tmp_path, clean_sandbox, before_commit):
    """The riskiest moment: the destination acknowledged a batch and the process dies before (or just after)
    the ledger records it. The re-send carries the same idempotency key, so the destination delivers once."""
    env = make_env(tmp_path, clean_sandbox, messages=MESSAGE_ROWS)
    child = run_with_crash_hook(env, "welcome_send", after_batches=2, before_commit=before_commit)
    assert child.killed, child.stderr[-2000:]
    acknowledged_before = len(env.webhook().sent)
    assert acknowledged_before == 50  # two batches of 25 reached the destination before the crash

    recover(env, "welcome_send")

    assert_converged(env, "send_once")
    assert env.webhook().stats["duplicates"] == (25 if before_commit else 0)


def test_a_mirror_removes_members_it_delivered_just_before_a_crash(tmp_path, clean_sandbox):
    """The destination added the first batch, the process died before state recorded it, and the members then
    left the model. The mirror put them there, so it must take them out; untracked, they would stay forever."""
    env = make_env(tmp_path, clean_sandbox)
    child = run_with_crash_hook(env, "audience_mirror", after_batches=1, before_commit=True)
    assert child.killed, child.stderr[-2000:]
    assert len(env.webhook().members["audience"]) == 25
    env.sql("delete from analytics.audience where customer_id < 'c00005'")

    recover(env, "audience_mirror")

    assert_converged(env, "mirror")


def test_killed_runs_are_recorded_as_failed_not_left_running(tmp_path, clean_sandbox):
    """Run history tells the truth: once a later run has taken over a dead run's lock, the dead run must not
    still claim to be running (nor pass for a success)."""
    env = make_env(tmp_path, clean_sandbox, audience=AUDIENCE_ROWS)
    child = run_with_crash_hook(env, "audience_mirror", after_batches=2, before_commit=False)
    assert child.killed, child.stderr[-2000:]

    recover(env, "audience_mirror")

    assert_converged(env, "mirror")
    assert_history_truthful(env, "audience_mirror")


@pytest.mark.soak
@pytest.mark.parametrize("mode", MODES)
def test_soak_repeated_kills_with_faults_converge(tmp_path, clean_sandbox, rng, mode):
    for iteration in range(soak_iterations()):
        env = make_env(tmp_path / f"i{iteration}", clean_sandbox, audience=AUDIENCE_ROWS, messages=MESSAGE_ROWS)
        for app in clean_sandbox.apps.values():
            app.reset()
        env.faults(error_rate=rng.choice([0, 0.05, 0.15]), drop_rate=rng.choice([0, 0.05]), seed=rng.randint(0, 99))
        crash_and_recover(env, mode, rng, [hook_crash, sigkill], crashes=rng.randint(1, 3))
        env.faults(error_rate=0, drop_rate=0)
