"""The send_once message ledger has no key (it grows with every message ever sent, and DuckDB would hold a key's
index whole in memory): runs append acknowledgements and fold them into the ledger once they have delivered. An
acknowledgement counts as a send from the moment it is committed, folded or not."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from syncs import state
from syncs.engine import plan_sync

KEYED_LEDGER = """create table tidings.message_ledger (
    sync_name varchar not null, occurrence_key varchar not null, idempotency_key varchar not null,
    status varchar not null, destination_ref varchar, cost double, sent_at timestamp, run_id varchar not null,
    primary key (sync_name, occurrence_key))"""


def ledger_constraints(con) -> list[str]:
    return [
        kind
        for (kind,) in con.execute(
            "select constraint_type from duckdb_constraints() "
            "where schema_name = 'tidings' and table_name = 'message_ledger' and constraint_type <> 'NOT NULL'"
        ).fetchall()
    ]


def test_a_keyed_ledger_of_an_earlier_version_loses_its_key_and_keeps_every_row(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as old:
        old.execute("create schema tidings")
        old.execute(KEYED_LEDGER)
        old.execute(
            "insert into tidings.message_ledger values "
            "('welcome_send', 'o1', 'i1', 'sent', 'ref-1', 0.5, timestamp '2026-11-29 10:00', 'r1'), "
            "('welcome_send', 'o2', 'i2', 'pending', null, null, null, 'r2')"
        )
        before = sorted(old.execute("select * from tidings.message_ledger").fetchall())

    con = state.connect(warehouse)
    try:
        state.ensure_schema(con)
        assert ledger_constraints(con) == []
        assert sorted(con.execute("select * from tidings.message_ledger").fetchall()) == before
        state.ensure_schema(con)  # nothing left to do the second time
        assert sorted(con.execute("select * from tidings.message_ledger").fetchall()) == before
        assert con.execute(
            "select count(*) from duckdb_tables() where schema_name = 'tidings' and table_name like 'message_ledger%'"
        ).fetchall() == [(1,)]
    finally:
        con.close()


def test_a_run_folds_its_acknowledgements_into_the_ledger_once_it_has_delivered(sync_env) -> None:
    result = sync_env.run("welcome_send")

    assert (result.status, result.sent) == ("success", 40)
    assert sync_env.sql("select status, run_id, count(*) from tidings.message_ledger group by all") == [
        ("sent", result.run_id, 40)
    ]
    assert sync_env.sql("select count(*) from tidings.message_acks") == [(0,)]
    con = state.connect(sync_env.warehouse)
    try:
        assert ledger_constraints(con) == []
    finally:
        con.close()


def test_acknowledgements_a_dead_run_left_unfolded_are_sends(sync_env) -> None:
    """The run dies after committing its first batch's acknowledgements and before folding them: the ledger still
    says pending, yet neither the plan nor the next run sends those occurrences again, the dead run's history
    credits them, and the next run folds them."""
    crashed = sync_env.run_in_subprocess("welcome_send", TIDINGS_CRASH_AFTER_BATCHES="1")
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    [(dead_run,)] = sync_env.sql("select run_id from tidings.sync_runs")
    assert sync_env.sql("select status, count(*) from tidings.message_ledger group by all") == [("pending", 40)]
    acknowledged = {key for (key,) in sync_env.sql("select occurrence_key from tidings.message_acks")}
    assert len(acknowledged) == 25
    assert sync_env.sql("select distinct run_id from tidings.message_acks") == [(dead_run,)]

    preview = plan_sync("welcome_send", project=sync_env.project(), warehouse=sync_env.warehouse)
    assert (preview.counts.add, preview.counts.unchanged) == (15, 25)

    resumed = sync_env.run("welcome_send")

    assert (resumed.status, resumed.sent) == ("success", 15)
    attempts = Counter(d["key"] for d in sync_env.webhook().deliveries if d["operation"] == "send")
    assert {key: attempts[key] for key in acknowledged} == dict.fromkeys(acknowledged, 1)  # never sent again
    assert len(sync_env.webhook().sent) == 40  # the rest reached the receiver once (a resend is deduplicated)
    assert dict(sync_env.sql("select run_id, sent from tidings.sync_runs")) == {dead_run: 25, resumed.run_id: 15}
    assert dict(
        sync_env.sql("select run_id, count(*) from tidings.message_ledger where status = 'sent' group by all")
    ) == {
        dead_run: 25,
        resumed.run_id: 15,
    }
    assert sync_env.sql("select count(*) from tidings.message_acks") == [(0,)]
    assert sync_env.run("welcome_send").sent == 0
