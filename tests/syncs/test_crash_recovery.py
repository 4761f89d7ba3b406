"""A sync process killed mid-run (the runner's test-only crash hooks) loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from syncs.engine import SyncResult


def run_in_subprocess(env, name: str, **crash_env: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "syncs.cli",
        "--warehouse",
        str(env.warehouse),
        "--project-dir",
        str(env.dbt_project_dir),
        "--destinations",
        str(env.destinations_file),
        "run",
        name,
    ]
    return subprocess.run(command, env={**os.environ, **crash_env}, capture_output=True, text=True, timeout=60)


def deliveries(env, topic: str) -> Counter[str]:
    return Counter(d["key"] for d in env.webhook().deliveries if d["topic"] == topic)


def test_crash_after_a_committed_batch_resumes_where_acknowledgements_ended(sync_env):
    crashed = run_in_subprocess(sync_env, "audience_mirror", TIDINGS_CRASH_AFTER_BATCHES="2")

    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert sync_env.sql("select count(*) from tidings.sync_state") == [(50,)]  # 2 batches of 25
    assert sum(deliveries(sync_env, "audience").values()) == 50

    resumed: SyncResult = sync_env.run("audience_mirror")  # the dead run's lock is stale: taken over

    assert (resumed.status, resumed.planned.add, resumed.planned.unchanged, resumed.sent) == ("success", 50, 50, 50)
    assert deliveries(sync_env, "audience") == Counter({f"c{i:05d}": 1 for i in range(100)})
    assert sync_env.sql("select count(*) from tidings.sync_state") == [(100,)]


def test_send_once_crash_between_ack_and_commit_is_not_sent_twice(sync_env):
    crashed = run_in_subprocess(
        sync_env, "welcome_send", TIDINGS_CRASH_AFTER_BATCHES="1", TIDINGS_CRASH_BEFORE_COMMIT="1"
    )
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert len(sync_env.webhook().sent) == 25  # acknowledged by the destination, not yet in the ledger
    # Every planned occurrence was written ahead with its idempotency key before the first send.
    assert sync_env.sql("select status, count(*) from tidings.message_ledger group by all") == [("pending", 40)]

    resumed = sync_env.run("welcome_send")

    assert (resumed.sent, resumed.failed) == (40, 0)
    assert sync_env.webhook().stats["duplicates"] == 25  # resent under the same idempotency keys
    assert len(sync_env.webhook().sent) == 40  # every occurrence reached the receiver exactly once
    assert sync_env.sql("select status, count(*) from tidings.message_ledger group by all") == [("sent", 40)]
    assert sync_env.run("welcome_send").sent == 0
