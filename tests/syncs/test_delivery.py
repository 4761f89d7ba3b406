"""End-to-end runs against a real DuckDB file and the webhook / file-export sandboxes."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from syncs.destinations.file_export import FileExportDestination
from syncs.engine import plan_sync
from syncs.runner import Runner


def delivered_keys(env, topic: str, operation: str = "upsert") -> Counter[str]:
    return Counter(d["key"] for d in env.webhook().deliveries if d["topic"] == topic and d["operation"] == operation)


def test_first_run_sends_every_row_and_a_second_run_sends_nothing(sync_env):
    first = sync_env.run("audience_mirror")
    assert (first.status, first.planned.add, first.sent, first.failed) == ("success", 100, 100, 0)
    assert set(sync_env.webhook().members["audience"]) == {f"c{i:05d}" for i in range(100)}

    second = sync_env.run("audience_mirror")
    assert (second.planned.add, second.planned.change, second.planned.remove) == (0, 0, 0)
    assert (second.planned.unchanged, second.sent) == (100, 0)
    assert sum(delivered_keys(sync_env, "audience").values()) == 100


def test_only_changed_rows_are_sent(sync_env):
    sync_env.run("audience_mirror")
    sync_env.sql("update analytics.audience set score = score + 1 where customer_id in ('c00003', 'c00007')")
    sync_env.sql("insert into analytics.audience values ('c90000', 'new@example.com', 'New', 5)")

    result = sync_env.run("audience_mirror")

    assert (result.planned.add, result.planned.change, result.sent) == (1, 2, 3)
    sent_twice = {key for key, n in delivered_keys(sync_env, "audience").items() if n == 2}
    assert sent_twice == {"c00003", "c00007"}
    assert sync_env.webhook().members["audience"]["c00003"]["score"] == 4


def test_column_order_does_not_change_the_row_hash(sync_env):
    sync_env.run("audience_mirror")
    sync_env.sql(
        "create or replace table analytics.audience as select score, first_name, email, customer_id "
        "from analytics.audience"
    )
    assert sync_env.run("audience_mirror").planned.unchanged == 100


def test_mirror_removes_only_members_it_added_and_upsert_never_removes(sync_env):
    sync_env.run("audience_mirror")
    sync_env.run("audience_upsert")
    upserted = set(sync_env.webhook().members["contacts"])
    sync_env.webhook().members["audience"]["someone_else"] = {"email": "other@example.com"}
    sync_env.sql("delete from analytics.audience where customer_id >= 'c00070'")

    mirror = sync_env.run("audience_mirror")
    upsert = sync_env.run("audience_upsert")

    assert (mirror.planned.remove, mirror.removed, mirror.status) == (30, 30, "success")
    assert set(sync_env.webhook().members["audience"]) == {f"c{i:05d}" for i in range(70)} | {"someone_else"}
    assert (upsert.planned.remove, upsert.removed) == (0, 0)
    assert set(sync_env.webhook().members["contacts"]) == upserted


def test_dry_run_shows_the_removals_the_real_run_performs(sync_env):
    sync_env.run("audience_mirror")
    sync_env.sql("delete from analytics.audience where customer_id >= 'c00090'")
    requests_before = sync_env.webhook().stats["requests"]

    plan = plan_sync("audience_mirror", project=sync_env.project(), warehouse=sync_env.warehouse)
    dry = sync_env.run("audience_mirror", dry_run=True)
    assert sync_env.webhook().stats["requests"] == requests_before

    real = sync_env.run("audience_mirror")
    assert plan.counts == dry.planned == real.planned
    assert (dry.status, dry.planned.remove, real.removed) == ("dry_run", 10, 10)
    assert {row["action"] for row in dry.preview} == {"remove"}
    assert all(row["fields"]["email"] == "u***@e***.com" for row in dry.preview)


def test_where_filter_selects_the_audience(sync_env):
    result = sync_env.run("audience_upsert")
    assert result.sent == 80  # score = i % 50 >= 10
    assert all(fields["score"] >= 10 for fields in sync_env.webhook().members["contacts"].values())


def test_parallel_batches_deliver_every_row_once(sync_env):
    sync_env.fill_audience(300, score="20")
    result = sync_env.run("audience_upsert")
    assert (result.sent, result.failed) == (300, 0)
    assert set(delivered_keys(sync_env, "contacts").values()) == {1}


def test_send_once_never_sends_an_occurrence_twice(sync_env):
    first = sync_env.run("welcome_send")
    sync_env.sql("update analytics.messages set template = 'welcome_v2'")
    second = sync_env.run("welcome_send")

    assert (first.sent, second.planned.add, second.planned.unchanged, second.sent) == (40, 0, 40, 0)
    assert len(sync_env.webhook().sent) == 40
    ledger = sync_env.sql("select status, count(*) from tidings.message_ledger group by all")
    assert ledger == [("sent", 40)]


def test_malformed_rows_are_reported_and_the_rest_delivered(sync_env):
    sync_env.sql("update analytics.audience set email = 'not-an-email' where customer_id in ('c00001', 'c00002')")

    result = sync_env.run("audience_mirror")

    assert (result.status, result.sent, result.failed) == ("partial", 98, 2)
    assert result.error_summary == {"invalid_email": 2}
    errors = sync_env.sql("select row_key, code, permanent from tidings.row_errors order by row_key")
    assert errors == [("c00001", "invalid_email", True), ("c00002", "invalid_email", True)]
    assert (result.rows_in_error, result.rows_in_error_permanent) == (2, 2)
    # Permanently rejected rows are not retried until they change; then they go out and the error clears. A run
    # that sends nothing still says they are there.
    again = sync_env.run("audience_mirror")
    assert (again.status, again.sent, again.skipped) == ("success", 0, 2)
    assert (again.rows_in_error, again.rows_in_error_permanent) == (2, 2)
    sync_env.sql("update analytics.audience set email = 'fixed1@example.com' where customer_id = 'c00001'")
    fixed = sync_env.run("audience_mirror")
    assert (fixed.sent, fixed.skipped, fixed.rows_in_error) == (1, 1, 1)
    assert sync_env.sql("select row_key from tidings.row_errors") == [("c00002",)]


def test_rate_limits_and_server_errors_are_survived(sync_env):
    sync_env.faults(burst_429=1, retry_after_seconds=1, burst_5xx=2, error_rate=0.1, seed=3)

    result = sync_env.run("audience_mirror")

    assert (result.status, result.sent, result.failed) == ("success", 100, 0)
    stats = sync_env.webhook().stats
    assert stats["rate_limited"] >= 1 and stats["faults_5xx"] >= 2
    assert set(sync_env.webhook().members["audience"]) == {f"c{i:05d}" for i in range(100)}


def test_a_batch_that_still_fails_becomes_row_errors_retried_next_run(sync_env):
    sync_env.faults(burst_5xx=1)  # hooks_fragile does not retry: the first batch of 50 fails

    first = sync_env.run("audience_fragile")
    assert (first.status, first.sent, first.failed, first.error_summary) == ("partial", 50, 50, {"http_503": 50})
    assert sync_env.sql("select count(*) from tidings.row_errors where not permanent") == [(50,)]
    assert (first.rows_in_error, first.rows_in_error_permanent) == (50, 0)

    second = sync_env.run("audience_fragile")
    assert (second.planned.add, second.sent, second.failed, second.rows_in_error) == (50, 50, 0, 0)
    assert sync_env.sql("select count(*) from tidings.row_errors") == [(0,)]


def test_retry_resends_only_rows_in_error(sync_env):
    sync_env.sql("update analytics.audience set email = 'broken' where customer_id = 'c00005'")
    sync_env.run("audience_mirror")
    sync_env.sql("update analytics.audience set score = 99 where customer_id = 'c00006'")
    from syncs.engine import retry_sync

    retried = retry_sync("audience_mirror", project=sync_env.project(), warehouse=sync_env.warehouse)

    assert (retried.planned.add, retried.planned.change, retried.failed) == (1, 0, 1)  # still broken; c00006 waits
    assert sync_env.run("audience_mirror").planned.change == 1


def test_export_writes_a_full_file_each_run(sync_env, monkeypatch):
    """Each file holds the whole audience in row-key order, whether a row was added, changed or unchanged; the
    run tells the exporter it will hand over exactly those rows (removed rows are not among them)."""
    told: list[int] = []
    open_export = FileExportDestination.open
    monkeypatch.setattr(
        FileExportDestination, "open", lambda dest, run: (told.append(run.estimated_rows), open_export(dest, run))[1]
    )
    first = sync_env.run("audience_export")
    sync_env.sql("delete from analytics.audience where customer_id >= 'c00095'")
    sync_env.sql("update analytics.audience set score = score + 1 where customer_id in ('c00003', 'c00060')")
    sync_env.sql("insert into analytics.audience values ('b00001', 'b1@example.com', 'B', 7)")
    second = sync_env.run("audience_export")

    assert (first.sent, second.sent, second.planned.remove, second.removed) == (100, 96, 5, 5)
    assert told == [100, 96]
    assert (second.planned.add, second.planned.change) == (1, 2)
    assert len(second.export_paths) == 1 and second.export_paths != first.export_paths
    with Path(second.export_paths[0]).open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 96 and rows[0].keys() == {"customer_id", "score"}
    assert [row["customer_id"] for row in rows] == ["b00001"] + [f"c{i:05d}" for i in range(95)]


def test_rows_settled_at_close_are_committed_in_chunks(sync_env, monkeypatch):
    monkeypatch.setattr("syncs.runner.SETTLE_CHUNK_ROWS", 30)
    first = sync_env.run("audience_export")
    assert (first.status, first.sent) == ("success", 100)
    assert sync_env.sql("select count(*) from tidings.sync_state where sync_name = 'audience_export'") == [(100,)]
    sync_env.sql("update analytics.audience set score = score + 1 where customer_id < 'c00040'")
    second = sync_env.run("audience_export")
    assert (second.planned.change, second.planned.unchanged, second.sent) == (40, 60, 100)
    changed = "select count(*) from tidings.sync_state where sync_name = 'audience_export' and synced_at > ?"
    assert sync_env.sql(changed, [first_finished(sync_env, first.run_id)]) == [(40,)]


def test_an_export_answers_its_rows_at_close_except_those_refused_on_the_way(sync_env, monkeypatch):
    """The exporter answers every row it wrote with one outcome; rows it refused in `write` keep their own."""
    monkeypatch.setattr("syncs.runner.SETTLE_CHUNK_ROWS", 25)
    monkeypatch.setattr(FileExportDestination, "max_batch_size", 30)
    typed = FileExportDestination._warehouse_typed

    def refuse_the_last_batch(self, fields):
        if fields.column("customer_id")[0].as_py() == "c00090":
            raise pa.ArrowInvalid("the file cannot hold this batch")
        return typed(self, fields)

    monkeypatch.setattr(FileExportDestination, "_warehouse_typed", refuse_the_last_batch)

    result = sync_env.run("audience_export")

    assert (result.status, result.sent, result.failed, result.error_summary) == (
        "partial",
        90,
        10,
        {"schema_mismatch": 10},
    )
    with Path(result.export_paths[0]).open() as handle:
        assert len(list(csv.DictReader(handle))) == 90
    state_rows = "select count(*) from tidings.sync_state where sync_name = 'audience_export'"
    assert sync_env.sql(state_rows) == [(90,)]
    assert sync_env.sql("select count(*), min(code) from tidings.row_errors") == [(10, "schema_mismatch")]


WIDE_YAML = """
models:
  - name: wide
    config:
      meta:
        tidings:
          syncs:
            - name: wide_export
              destination: files
              mode: export
              primary_key: customer_id
              target: {name: wide, format: both}
              mapping: {customer_id: customer_id, clv: clv, visits: visits, first_order: first_order}
"""


def test_an_export_file_keeps_the_warehouse_column_types(sync_env, monkeypatch):
    """Types come from the model, not from the first batch's values: decimals wider than the first batch's,
    an unsigned integer past int64 and a date column null in the whole first batch land as the model types them."""
    monkeypatch.setattr(FileExportDestination, "max_batch_size", 30)
    (sync_env.dbt_project_dir / "models" / "_wide.yml").write_text(WIDE_YAML)
    sync_env.sql(
        """create table analytics.wide as
        select printf('c%05d', i) as customer_id, (i * i * i * 1.25)::decimal(18, 2) as clv,
               case when i < 99 then i::ubigint else 18446744073709551615 end as visits,
               case when i >= 50 then date '2024-01-01' + i::integer end as first_order
        from range(100) t(i)"""
    )

    result = sync_env.run("wide_export")

    assert (result.status, result.sent, result.failed) == ("success", 100, 0)
    csv_path, parquet_path = sorted(result.export_paths)
    exported = pq.read_table(parquet_path)
    assert exported.column_names == ["customer_id", "clv", "visits", "first_order"]  # the mapping's order
    types = {name: exported.schema.field(name).type for name in ("clv", "visits", "first_order")}
    assert types == {"clv": pa.decimal128(18, 2), "visits": pa.uint64(), "first_order": pa.date32()}
    by_id = {row["customer_id"]: row for row in exported.to_pylist()}
    assert by_id["c00099"]["clv"] == Decimal("1212873.75") and by_id["c00099"]["visits"] == 2**64 - 1
    assert (by_id["c00001"]["first_order"], by_id["c00050"]["first_order"]) == (None, date(2024, 2, 20))
    with Path(csv_path).open() as handle:
        reader = csv.DictReader(handle)
        last = list(reader)[-1]
    assert reader.fieldnames == ["customer_id", "clv", "visits", "first_order"]
    assert (last["customer_id"], last["clv"], last["visits"]) == ("c00099", "1212873.75", str(2**64 - 1))


def test_an_aborted_export_fails_its_rows_and_publishes_nothing(sync_env, monkeypatch):
    def batches_then_break(self, actions, op):
        yield from original(self, actions, op)
        raise RuntimeError("the plan stream broke")

    original = Runner._batches
    monkeypatch.setattr(Runner, "_batches", batches_then_break)

    with pytest.raises(RuntimeError, match="plan stream broke"):
        sync_env.run("audience_export")

    assert sync_env.sql("select count(*) from tidings.sync_state") == [(0,)]
    assert sync_env.sql("select count(*), min(code), bool_or(permanent) from tidings.row_errors") == [
        (100, "export_aborted", False)
    ]
    assert not list((sync_env.root / "exports" / "audience").glob("*.csv"))


def first_finished(env, run_id: str):
    return env.sql("select finished_at from tidings.sync_runs where run_id = ?", [run_id])[0][0]


def test_run_history_is_recorded_without_pii(sync_env):
    sync_env.sql("update analytics.audience set email = 'bad-address' where customer_id = 'c00001'")
    result = sync_env.run("audience_mirror")
    sync_env.run("audience_mirror", dry_run=True)

    runs = sync_env.sql(
        "select run_id, status, dry_run, planned_add, sent, failed, error_summary from tidings.sync_runs "
        "order by started_at"
    )
    assert runs[0] == (result.run_id, "partial", False, 100, 99, 1, json.dumps({"invalid_email": 1}))
    assert runs[1][1:3] == ("dry_run", True)
    dumped = json.dumps(sync_env.sql("select * from tidings.sync_runs"), default=str)
    dumped += json.dumps(sync_env.sql("select * from tidings.row_errors"), default=str)
    assert "@example.com" not in dumped and "bad-address" not in dumped


def test_conflicting_duplicate_keys_are_row_errors_until_the_model_is_fixed(sync_env):
    sync_env.sql("insert into analytics.audience values ('c00001', 'other@example.com', 'Other', 1)")  # conflicts
    sync_env.sql("insert into analytics.audience select * from analytics.audience where customer_id = 'c00002'")

    dry = plan_sync("audience_mirror", project=sync_env.project(), warehouse=sync_env.warehouse)
    assert dry.skipped == {"duplicate_key": 2, "duplicate_row": 1}
    assert sync_env.sql("select count(*) from tidings.row_errors")[0][0] == 0  # a dry run records nothing

    first = sync_env.run("audience_mirror")
    assert (first.planned.add, first.sent, first.skipped) == (99, 99, 3)
    assert "c00001" not in sync_env.webhook().members["audience"]  # neither version of the conflicting key
    assert delivered_keys(sync_env, "audience")["c00002"] == 1  # identical copies are one member, sent once
    errors = sync_env.sql("select row_key, code, permanent from tidings.row_errors")
    assert errors == [("c00001", "duplicate_key", True)]

    sync_env.sql("delete from analytics.audience where customer_id = 'c00001' and email = 'other@example.com'")
    fixed = sync_env.run("audience_mirror")
    assert (fixed.planned.add, fixed.sent) == (1, 1)
    assert sync_env.sql("select count(*) from tidings.row_errors")[0][0] == 0


def test_a_duplicate_key_error_clears_when_the_key_leaves_the_model(sync_env):
    sync_env.sql("insert into analytics.audience values ('c00001', 'other@example.com', 'Other', 1)")
    sync_env.run("audience_mirror")
    sync_env.sql("delete from analytics.audience where customer_id = 'c00001'")
    sync_env.run("audience_mirror")
    assert sync_env.sql("select count(*) from tidings.row_errors")[0][0] == 0


def test_rows_are_rendered_in_the_warehouse_only_when_their_json_is_exact(sync_env):
    sync_env.sql("update analytics.audience set first_name = 'Zoë \"Z\" O''Brien' where customer_id = 'c00001'")
    assert plan_sync("audience_mirror", project=sync_env.project(), warehouse=sync_env.warehouse).json_exact

    sync_env.run("audience_mirror")
    members = sync_env.webhook().members["audience"]
    assert members["c00001"] == {"email": "user00001@example.com", "first_name": 'Zoë "Z" O\'Brien', "score": 1}

    # A decimal renders as a number in DuckDB's JSON but as an exact string in the connector: the runner hands
    # such rows to the connector to render.
    sync_env.sql("alter table analytics.audience alter score type decimal(6, 2)")
    assert not plan_sync("audience_mirror", project=sync_env.project(), warehouse=sync_env.warehouse).json_exact
    sync_env.sql("update analytics.audience set score = 12.5 where customer_id = 'c00002'")

    sync_env.run("audience_mirror")
    assert (members["c00002"]["score"], members["c00003"]["score"]) == ("12.50", "3.00")


def test_send_once_over_many_batches_ends_with_every_occurrence_sent_once(sync_env):
    """Every occurrence is written ahead as `pending`, then marked `sent` by the committer's grouped commits."""
    sync_env.fill_messages(2_000)

    result = sync_env.run("welcome_send")

    assert (result.status, result.sent, result.failed) == ("success", 2_000, 0)
    assert sync_env.sql("select status, count(*) from tidings.message_ledger group by all") == [("sent", 2_000)]
    assert len(sync_env.webhook().sent) == 2_000
    assert sync_env.run("welcome_send").sent == 0
