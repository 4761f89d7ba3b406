"""A sync process killed mid-run (the runner's test-only crash hooks) loses nothing and duplicates nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from syncs import state
from syncs.engine import SyncResult
from syncs.planner import drop_orphan_plans
from syncs.sandbox.sftp import SftpSandbox
from tests.reliability.harness import MAIL_MODEL_YAML


def deliveries(env, topic: str) -> Counter[str]:
    return Counter(d["key"] for d in env.webhook().deliveries if d["topic"] == topic)


def test_crash_after_a_committed_batch_resumes_where_acknowledgements_ended(sync_env):
    crashed = sync_env.run_in_subprocess("audience_mirror", TIDINGS_CRASH_AFTER_BATCHES="2")

    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert sync_env.sql("select count(*) from tidings.sync_state") == [(50,)]  # 2 batches of 25
    assert sum(deliveries(sync_env, "audience").values()) == 50

    resumed: SyncResult = sync_env.run("audience_mirror")  # the dead run's lock is stale: taken over

    assert (resumed.status, resumed.planned.add, resumed.planned.unchanged, resumed.sent) == ("success", 50, 50, 50)
    assert deliveries(sync_env, "audience") == Counter({f"c{i:05d}": 1 for i in range(100)})
    assert sync_env.sql("select count(*) from tidings.sync_state") == [(100,)]


def test_a_removal_applied_before_a_crash_is_sent_again_when_the_member_comes_back(sync_env):
    """The destination applied the removals, the process died before committing them, and the members are back in
    the model by the next run: their state must not count them as unchanged."""
    assert sync_env.run("audience_mirror").sent == 100
    sync_env.fill_audience(90)  # c00090..c00099 leave
    crashed = sync_env.run_in_subprocess(
        "audience_mirror", TIDINGS_CRASH_AFTER_BATCHES="1", TIDINGS_CRASH_BEFORE_COMMIT="1"
    )
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert len(sync_env.webhook().members["audience"]) == 90  # removed there, not in the state
    sync_env.fill_audience(100)

    resumed = sync_env.run("audience_mirror")

    assert (resumed.status, resumed.planned.change, resumed.sent) == ("success", 10, 10)
    assert len(sync_env.webhook().members["audience"]) == 100
    assert sync_env.run("audience_mirror").planned.change == 0


def test_send_once_crash_between_ack_and_commit_is_not_sent_twice(sync_env):
    crashed = sync_env.run_in_subprocess(
        "welcome_send", TIDINGS_CRASH_AFTER_BATCHES="1", TIDINGS_CRASH_BEFORE_COMMIT="1"
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


def add_mail_sync(env, sftp: SftpSandbox) -> None:
    (env.dbt_project_dir / "models" / "_mail.yml").write_text(MAIL_MODEL_YAML)
    with env.destinations_file.open("a") as destinations:
        destinations.write(
            "    mailhouse:\n      type: sftp_mailhouse\n      host: 127.0.0.1\n"
            f"      port: {sftp.port}\n      username: tidings\n"
            "      password_env: TIDINGS_MAILHOUSE_SFTP_PASSWORD\n      remote_dir: /drops\n"
            "      known_host_key: any\n"
        )
    fill_mail_pieces(env, 30)


def fill_mail_pieces(env, rows: int) -> None:
    env.sql(
        f"""create or replace table analytics.mail_pieces as
        select 'winback:' || printf('c%05d', i) as occurrence_key, 'Ann Example ' || i as full_name,
               i || ' Main Street' as street, 'Saint Paul' as city, 'MN' as state, '55101' as zip
        from range({rows}) t(i)"""
    )


def dropped_keys(folder: Path) -> dict[str, list[str]]:
    return {p.name: [line.split(",")[0] for line in p.read_text().splitlines()[1:]] for p in folder.glob("*.csv")}


def test_a_mail_drop_put_in_place_just_before_a_crash_is_never_printed_again(sync_env, tmp_path):
    with SftpSandbox(tmp_path / "mailhouse") as sftp:
        add_mail_sync(sync_env, sftp)
        crashed = sync_env.run_in_subprocess("winback_mail", TIDINGS_CRASH_BEFORE_COMMIT="1")

        assert crashed.returncode == 137, crashed.stderr[-2000:]
        [(crashed_run,)] = sync_env.sql("select run_id from tidings.sync_runs where sync_name = 'winback_mail'")
        first_drop = f"winback_{crashed_run}.csv"
        assert dropped_keys(sftp.root / "drops") == {first_drop: [f"winback:c{i:05d}" for i in range(30)]}
        assert sync_env.sql("select status, count(*) from tidings.message_ledger group by all") == [("pending", 30)]
        fill_mail_pieces(sync_env, 40)  # ten new pieces arrive before the next run

        resumed = sync_env.run("winback_mail")

        assert (resumed.status, resumed.sent, resumed.failed) == ("success", 40, 0)
        drops = dropped_keys(sftp.root / "drops")
        assert drops.pop(first_drop) == [f"winback:c{i:05d}" for i in range(30)]
        assert list(drops.values()) == [[f"winback:c{i:05d}" for i in range(30, 40)]]  # only the new pieces
        ledger = sync_env.sql(
            "select destination_ref, count(*) from tidings.message_ledger where status = 'sent' group by all"
        )
        assert dict(ledger) == {first_drop: 30, f"winback_{resumed.run_id}.csv": 10}
        assert sync_env.run("winback_mail").sent == 0


def test_only_runs_that_may_hold_unrecorded_sends_are_checked(sync_env):
    runs = [  # run id, sync, status, dry run; started a minute apart in this order
        ("r1", "winback_mail", "failed", False),  # before the oldest pending occurrence was written ahead
        ("r2", "winback_mail", "failed", False),  # wrote occurrence A ahead, then died
        ("r3", "winback_mail", "success", False),
        ("r4", "winback_mail", "partial", False),  # a failed row may have been delivered unheard
        ("r5", "winback_mail", "dry_run", True),
        ("r6", "other_sync", "failed", False),
        ("r7", "winback_mail", "failed", False),
        ("r8", "winback_mail", "running", False),  # died; its lock not taken over yet
        ("r9", "winback_mail", "running", False),  # this run
    ]
    con = state.connect(sync_env.warehouse)
    state.ensure_schema(con)
    for minute, (run_id, sync, status, dry_run) in enumerate(runs):
        con.execute(
            "insert into tidings.sync_runs (run_id, sync_name, mode, dry_run, status, started_at) "
            "values (?, ?, 'send_once', ?, ?, timestamp '2026-11-30 08:00' + to_minutes(?::bigint))",
            [run_id, sync, dry_run, status, minute],
        )
    con.execute(
        "insert into tidings.message_ledger (sync_name, occurrence_key, idempotency_key, status, run_id) values "
        "('winback_mail', 'A', 'ia', 'pending', 'r2'), ('winback_mail', 'B', 'ib', 'sent', 'r1')"
    )
    con.execute("create table plan_a as select * from (values ('A', 'add'), ('D', 'add')) t(row_key, action)")
    con.execute("create table plan_new as select 'C' as row_key, 'add' as action")

    assert state.unsettled_runs(con, "winback_mail", "r9", "plan_a") == ("r2", "r4", "r7", "r8")
    assert state.unsettled_runs(con, "winback_mail", "r9", "plan_new") == ()  # nothing it sends was pending
    con.close()


def test_orphan_plans_of_a_sync_leave_another_syncs_plans_alone(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    state.ensure_schema(con)
    names = ["plan__meta__20261201T101500_0a1b2c3d", "plan__meta__lapsed__20261201T101500_0a1b2c3d"]
    for name in names:
        con.execute(f'create table tidings."{name}" (row_key varchar)')

    drop_orphan_plans(con, "meta")

    left = con.execute("select table_name from information_schema.tables where starts_with(table_name, 'plan__')")
    assert left.fetchall() == [(names[1],)]
