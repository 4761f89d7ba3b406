"""Values whose Arrow form differs from what a destination should get: DuckDB's infinite dates and timestamps
leave the warehouse as `infinity` / `-infinity` (in the rows connectors read, in CSV cells and in JSON) instead of
an OverflowError for the whole batch or `<value out of range>`; a HUGEINT stays a number."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from syncs.arrow_values import csv_ready, python_values
from syncs.engine import plan_sync

DATED_YAML = """
models:
  - name: dated
    config:
      meta:
        tidings:
          syncs:
            - name: dated_webhook
              destination: hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: dated}
              mapping: {email: email, ends_on: ends_on, ends_at: ends_at}
            - name: end_dates_webhook
              destination: hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: end_dates}
              mapping: {email: email, ends_on: ends_on}
            - name: totals_webhook
              destination: hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: totals}
              mapping: {email: email, orders: orders}
            - name: totals_and_dates_webhook
              destination: hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: totals_and_dates}
              mapping: {email: email, orders: orders, ends_at: ends_at}
            - name: dated_export
              destination: files
              mode: export
              primary_key: customer_id
              target: {name: dated, format: both}
              mapping: {customer_id: customer_id, ends_on: ends_on, ends_at: ends_at}
"""
DATED_ROWS = """
create table analytics.dated as select * from (values
    ('c1', 'c1@example.com', 'infinity'::date, '-infinity'::timestamp),
    ('c2', 'c2@example.com', '2027-03-01'::date, '2027-03-01 09:30:00'::timestamp),
    ('c3', 'c3@example.com', null, 'infinity'::timestamp)
) rows(customer_id, email, ends_on, ends_at);
create table analytics.dated_orders as select 'c1' as customer_id, 5 as quantity from range(3);
create or replace table analytics.dated as
select d.*, (select sum(quantity) from analytics.dated_orders o where o.customer_id = d.customer_id) as orders
from analytics.dated d
"""


def arrow(sql: str) -> pa.Table:
    result = duckdb.sql(sql).arrow()
    return result.read_all() if isinstance(result, pa.RecordBatchReader) else result


def test_python_values_name_infinities_and_keep_the_rest() -> None:
    table = arrow(
        "select * from (values ('infinity'::date, '2024-01-01 10:00'::timestamptz), ('2024-01-02'::date, "
        "'-infinity'::timestamptz), (null, null)) v(d, ts)"
    )
    assert python_values(table.column("d")) == ["infinity", date(2024, 1, 2), None]
    stamps = python_values(table.column("ts"))
    assert stamps[1:] == ["-infinity", None]
    assert isinstance(stamps[0], datetime) and stamps[0].replace(tzinfo=None) == datetime(2024, 1, 1, 10)


def test_csv_ready_writes_dates_as_the_csv_writer_would() -> None:
    table = arrow("select '2024-01-02'::date d, '2024-01-01 10:00:00.5'::timestamp ts, 7 n")
    ready = csv_ready(table)
    assert ready.column("d").to_pylist() == ["2024-01-02"]
    assert ready.column("ts").to_pylist() == ["2024-01-01 10:00:00.500000"]
    assert ready.column("n").type == table.column("n").type


def test_infinite_dates_reach_json_destinations_and_both_export_formats(sync_env) -> None:
    (sync_env.dbt_project_dir / "models" / "_dated.yml").write_text(DATED_YAML)
    sync_env.sql(DATED_ROWS)

    sent = sync_env.run("dated_webhook")
    exported = sync_env.run("dated_export")

    assert (sent.status, sent.sent, exported.status, exported.sent) == ("success", 3, "success", 3)
    fields = {d["key"]: d["fields"] for d in sync_env.webhook().deliveries}
    assert (fields["c1"]["ends_on"], fields["c1"]["ends_at"]) == ("infinity", "-infinity")
    assert (fields["c2"]["ends_on"], fields["c2"]["ends_at"]) == ("2027-03-01", "2027-03-01T09:30:00")
    assert (fields["c3"]["ends_on"], fields["c3"]["ends_at"]) == (None, "infinity")
    csv_path, parquet_path = sorted(exported.export_paths)
    with Path(csv_path).open() as handle:
        cells = [(row["ends_on"], row["ends_at"]) for row in csv.DictReader(handle)]
    assert cells == [("infinity", "-infinity"), ("2027-03-01", "2027-03-01 09:30:00.000000"), ("", "infinity")]
    # Parquet keeps the stored value, as DuckDB's own writer does: DuckDB reads it back as infinity.
    assert duckdb.sql(f"select ends_on, ends_at::varchar from '{parquet_path}' order by customer_id").fetchall() == [
        (date.max, "-infinity"),
        (date(2027, 3, 1), "2027-03-01 09:30:00"),
        (None, "infinity"),
    ]
    assert pq.read_schema(parquet_path).field("ends_on").type == pa.date32()


def test_a_hugeint_goes_out_as_the_same_number_on_both_rendering_paths(sync_env) -> None:
    """`sum()` of integers is a HUGEINT: a JSON number whether the warehouse renders the row (only exact types
    mapped) or Python does (a timestamp mapped too)."""
    (sync_env.dbt_project_dir / "models" / "_dated.yml").write_text(DATED_YAML)
    sync_env.sql(DATED_ROWS)
    assert sync_env.sql("select typeof(orders) from analytics.dated limit 1") == [("HUGEINT",)]

    assert sync_env.run("totals_webhook").sent == 3
    assert sync_env.run("totals_and_dates_webhook").sent == 3

    by_topic = {(d["topic"], d["key"]): d["fields"]["orders"] for d in sync_env.webhook().deliveries}
    for topic in ("totals", "totals_and_dates"):
        assert (by_topic[(topic, "c1")], by_topic[(topic, "c2")]) == (15, None)
    # Rows built in Python hand their fields over in the mapping's order (the plan keeps them sorted by name).
    built = [d for d in sync_env.webhook().deliveries if d["topic"] == "totals_and_dates"]
    assert all(list(d["fields"]) == ["email", "orders", "ends_at"] for d in built)


def test_an_infinite_date_reads_the_same_when_the_warehouse_renders_the_row(sync_env) -> None:
    """Only JSON-exact types mapped: DuckDB renders the rows, and writes the same text for infinity."""
    (sync_env.dbt_project_dir / "models" / "_dated.yml").write_text(DATED_YAML)
    sync_env.sql(DATED_ROWS)

    assert sync_env.run("end_dates_webhook").sent == 3

    fields = {d["key"]: d["fields"]["ends_on"] for d in sync_env.webhook().deliveries}
    assert fields == {"c1": "infinity", "c2": "2027-03-01", "c3": None}


def test_the_preview_shows_the_values_the_run_sends(sync_env) -> None:
    """The dry-run preview reads the plan through Arrow like the run: infinity, not DuckDB's 9999-12-31."""
    (sync_env.dbt_project_dir / "models" / "_dated.yml").write_text(DATED_YAML)
    sync_env.sql(DATED_ROWS)

    plan = plan_sync("totals_and_dates_webhook", project=sync_env.project(), warehouse=sync_env.warehouse)

    preview = {row["key"]: row["fields"] for row in plan.preview}
    assert (preview["c1"]["ends_at"], preview["c1"]["orders"]) == ("-infinity", 15)
    assert preview["c3"]["ends_at"] == "infinity" and preview["c1"]["email"] == "c***@e***.com"
