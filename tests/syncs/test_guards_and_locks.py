"""Guards stop dangerous runs before anything is sent; locks keep runs of one sync from overlapping."""

from __future__ import annotations

import socket
import subprocess
import sys

import duckdb
import pytest

from syncs import state
from syncs.config import ConfigError
from tests.syncs.test_cli import cli
from tests.syncs.test_mode_changes import AUDIENCE_MIRROR, set_mode


def test_an_emptied_model_never_triggers_mass_removal(sync_env):
    sync_env.run("audience_mirror")
    sync_env.sql("delete from analytics.audience")

    blocked = sync_env.run("audience_mirror", allow_large_removal=True)

    assert (blocked.status, blocked.planned.remove, blocked.removed) == ("blocked", 100, 0)
    assert any(d.startswith("blocked: empty_source") for d in blocked.guard_decisions)
    assert "`tidings run audience_mirror --remove-all`" in blocked.message  # the deliberate way
    assert len(sync_env.webhook().members["audience"]) == 100
    history = sync_env.sql("select status, guard_decisions from tidings.sync_runs order by started_at desc limit 1")
    assert history[0][0] == "blocked" and "empty_source" in history[0][1]


def test_remove_all_empties_a_mirror_audience_without_reading_the_model(sync_env, capsys):
    """Retiring an audience: every member is removed on request, even once the model is gone; the guards step
    aside for it, and the run warns that the next ordinary run would add the members back."""
    sync_env.sql("update analytics.audience set email = upper(email) where customer_id = 'c00007'")
    sync_env.run("audience_mirror")
    sync_env.sql("drop table analytics.audience")

    preview = sync_env.run("audience_mirror", remove_all=True, dry_run=True)
    assert (preview.status, preview.planned.remove, sync_env.webhook().stats["delivered"]) == ("dry_run", 100, 100)
    emptied = sync_env.run("audience_mirror", remove_all=True)

    assert (emptied.status, emptied.removed, emptied.sent) == ("success", 100, 0)
    assert sync_env.webhook().members["audience"] == {}
    removed = [d for d in sync_env.webhook().deliveries if d["operation"] == "remove"]
    assert {d["fields"]["email"] for d in removed if d["key"] == "c00007"} == {"USER00007@EXAMPLE.COM"}  # as sent
    assert emptied.guard_decisions == ["passed: remove_all: removing all 100 members, as asked; the model is not read"]
    assert any("delete the sync's declaration" in warning for warning in emptied.warnings)
    assert sync_env.sql("select count(*) from tidings.sync_state where sync_name = 'audience_mirror'") == [(0,)]

    assert cli(sync_env, "run", "audience_upsert", "--remove-all") == 2  # an upsert sync never removes
    assert "removing every member applies to a mirror sync" in capsys.readouterr().err
    assert sync_env.sql("select count(*) from tidings.sync_runs where sync_name = 'audience_upsert'") == [(0,)]


def test_an_emptied_mirror_sends_no_member_back_until_asked(sync_env, capsys):
    """Between `--remove-all` and deleting the sync's declaration, a scheduled run would fill the audience again.
    Runs are blocked from sending members until one is run with `--add-back`; a blocked run, or one that sends
    nothing, leaves the audience emptied."""
    sync_env.run("audience_mirror")
    emptied = sync_env.run("audience_mirror", remove_all=True)
    assert (emptied.status, emptied.removed) == ("success", 100)
    assert any("--add-back" in warning for warning in emptied.warnings)

    scheduled = sync_env.run("audience_mirror")
    assert (scheduled.status, scheduled.planned.add, scheduled.sent) == ("blocked", 100, 0)
    assert f"run {emptied.run_id} of" in scheduled.message and "--add-back" in scheduled.message
    assert sync_env.webhook().members["audience"] == {}
    assert cli(sync_env, "plan", "audience_mirror") == 0
    assert "blocked: emptied:" in capsys.readouterr().out
    sync_env.sql("delete from analytics.audience")
    quiet = sync_env.run("audience_mirror")  # nothing to send: passes, and the audience stays emptied
    assert quiet.status == "success" and quiet.guard_decisions[-1].startswith("passed: emptied:")
    sync_env.fill_audience(100)
    assert sync_env.run("audience_mirror").status == "blocked"

    assert cli(sync_env, "run", "welcome_send", "--add-back") == 2  # a send_once sync has no members
    assert "adding members back applies to a mirror or upsert sync" in capsys.readouterr().err
    assert cli(sync_env, "run", "audience_mirror", "--remove-all", "--add-back") == 2
    assert cli(sync_env, "run", "audience_mirror", "--add-back") == 0
    assert len(sync_env.webhook().members["audience"]) == 100
    after = sync_env.run("audience_mirror")
    assert (after.status, after.planned.unchanged) == ("success", 100) and not after.guard_decisions
    sync_env.fill_audience(101)
    assert sync_env.run("audience_mirror").sent == 1  # synced as usual again


def test_a_remove_all_run_that_died_halfway_still_leaves_the_audience_emptied(sync_env):
    """The guards' verdict is on record before the first send: a scheduled run between a `--remove-all` that died
    and its rerun must not fill the audience again, nor may a change of the sync's mode to upsert."""
    sync_env.run("audience_mirror")
    died = sync_env.run_in_subprocess("audience_mirror", TIDINGS_CRASH_AFTER_BATCHES="1", extra_args=("--remove-all",))
    assert died.returncode == 137, died.stderr[-2000:]
    assert 0 < len(sync_env.webhook().members["audience"]) < 100

    scheduled = sync_env.run("audience_mirror")
    assert (scheduled.status, scheduled.sent) == ("blocked", 0)
    set_mode(sync_env, AUDIENCE_MIRROR, "mirror", "upsert")
    as_upsert = sync_env.run("audience_mirror")
    assert (as_upsert.status, as_upsert.sent) == ("blocked", 0)
    assert any(d.startswith("blocked: emptied:") for d in as_upsert.guard_decisions)


def test_removal_guard_blocks_a_large_removal_unless_allowed(sync_env):
    sync_env.run("audience_mirror")
    sync_env.sql("delete from analytics.audience where customer_id >= 'c00040'")  # 60% > the 50% limit

    blocked = sync_env.run("audience_mirror")
    assert (blocked.status, blocked.removed) == ("blocked", 0)
    assert "would remove 60 of 100 members" in blocked.message

    allowed = sync_env.run("audience_mirror", allow_large_removal=True)
    assert (allowed.status, allowed.removed) == ("success", 60)
    assert any("allowed by --allow-large-removal" in d for d in allowed.guard_decisions)


def test_minimum_audience_guard(sync_env):
    sync_env.dbt_project_dir.joinpath("models", "_audiences.yml").write_text(
        sync_env.dbt_project_dir.joinpath("models", "_audiences.yml")
        .read_text()
        .replace("guards: {max_removal_share: 0.5}", "guards: {max_removal_share: 0.5, min_rows: 500}")
    )
    result = sync_env.run("audience_mirror")
    assert (result.status, result.sent) == ("blocked", 0)
    assert result.guard_decisions == ["blocked: min_rows: the model has 100 rows, fewer than the minimum of 500"]


def test_a_live_lock_stops_a_second_run(sync_env):
    with state.connect(sync_env.warehouse) as con:
        state.ensure_schema(con)
        assert state.acquire_lock(con, "audience_mirror", "other-run")  # held by this (live) process
        assert not state.acquire_lock(con, "audience_mirror", "third-run")

    locked = sync_env.run("audience_mirror")

    assert (locked.status, locked.sent) == ("locked", 0)
    assert sync_env.webhook().stats["requests"] == 0
    with state.connect(sync_env.warehouse) as con:
        state.release_lock(con, "audience_mirror", "other-run")
    assert sync_env.run("audience_mirror").status == "success"


def test_a_lock_left_by_a_dead_process_is_recovered(sync_env):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with state.connect(sync_env.warehouse) as con:
        state.ensure_schema(con)
        con.execute(
            "insert into tidings.sync_locks values ('audience_mirror', 'crashed', ?, ?, now())",
            [int(dead.stdout), socket.gethostname()],
        )
    assert sync_env.run("audience_mirror").status == "success"
    assert sync_env.sql("select count(*) from tidings.sync_locks") == [(0,)]


def test_the_engine_connection_cannot_read_files(sync_env):
    with state.connect(sync_env.warehouse) as con, pytest.raises(duckdb.PermissionException):
        con.execute("select * from read_csv('/etc/hostname')")


def test_a_warehouse_named_like_the_state_schema_is_refused_with_the_fix(tmp_path):
    warehouse = tmp_path / "tidings.duckdb"
    duckdb.connect(str(warehouse)).close()
    with pytest.raises(ConfigError) as refused:
        state.connect(warehouse)
    message = str(refused.value)
    assert "tidings.duckdb" in message and "TIDINGS_WAREHOUSE" in message and "rename the file" in message
