"""The benchmark's own sync project under benchmarks/work/: synthetic audience tables in DuckDB files, a model
YAML declaring one sync per measurement, and a destinations.yml pointing at the loopback servers of this run.

Synthetic audiences (rather than the dbt-built segments) let every step choose its exact size and change mix.
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import duckdb

from syncs.settings import REPO_ROOT

WORK_DIR = REPO_ROOT / "benchmarks" / "work"
PROFILE = "bench"
MODEL = "audience"
WEBHOOK_BATCH = 500  # the webhook connector's maximum batch size
UNLIMITED_RPS = 1_000_000  # a client-side rate the loopback never reaches: "no rate limit"

MODEL_YAML = """
models:
  - name: audience
    config:
      meta:
        tidings:
          syncs:
            - name: plan_mirror
              destination: sandbox_hooks
              mode: mirror
              primary_key: customer_id
              target: {topic: plan}
              mapping: {email: email, first_name: first_name, last_name: last_name, score: score}
              guards: {max_removal_share: 0.5}
            - name: throughput_mirror
              destination: sandbox_hooks
              mode: mirror
              primary_key: customer_id
              target: {topic: throughput}
              mapping: {email: email, first_name: first_name, last_name: last_name, score: score}
              guards: {max_removal_share: 0.5}
            - name: engine_mirror
              destination: ack_hooks
              mode: mirror
              primary_key: customer_id
              target: {topic: engine}
              mapping: {email: email, first_name: first_name, last_name: last_name, score: score}
              guards: {max_removal_share: 0.5}
            - name: limited_upsert
              destination: limited_hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: limited}
              mapping: {email: email, first_name: first_name, last_name: last_name, score: score}
            - name: memory_upsert
              destination: ack_hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: memory}
              mapping: {email: email, first_name: first_name, last_name: last_name, score: score}
            - name: ledger_send_once
              destination: ack_hooks
              mode: send_once
              primary_key: customer_id
              target: {topic: ledger}
              mapping: {email: email, first_name: first_name, last_name: last_name, score: score}
            - name: export_csv
              destination: files
              mode: export
              primary_key: customer_id
              target: {name: audience_csv, format: csv}
              mapping: {customer_id: customer_id, email: email, first_name: first_name, last_name: last_name,
                        score: score}
            - name: export_parquet
              destination: files
              mode: export
              primary_key: customer_id
              target: {name: audience_parquet, format: parquet}
              mapping: {customer_id: customer_id, email: email, first_name: first_name, last_name: last_name,
                        score: score}
    columns:
      - name: customer_id
      - name: email
      - name: first_name
      - name: last_name
      - name: score
"""

DESTINATIONS_YAML = """
profiles:
  bench:
    sandbox_hooks:
      type: webhook
      base_url: "{sandbox_url}/webhook/events"
      secret_env: TIDINGS_WEBHOOK_SECRET
      batch_size: {batch}
      concurrency: {concurrency}
      requests_per_second: {unlimited}
    limited_hooks:
      type: webhook
      base_url: "{sandbox_url}/webhook/events"
      secret_env: TIDINGS_WEBHOOK_SECRET
      batch_size: {batch}
      concurrency: {concurrency}
      requests_per_second: {limit}
    ack_hooks:
      type: webhook
      base_url: "{ack_url}/events"
      secret_env: TIDINGS_WEBHOOK_SECRET
      batch_size: {batch}
      concurrency: {concurrency}
      requests_per_second: {unlimited}
    files:
      type: file_export
      directory: "{exports}"
"""


@dataclass(frozen=True)
class BenchProject:
    root: Path
    dbt_project_dir: Path
    destinations_file: Path
    exports_dir: Path

    def warehouse(self, name: str) -> Path:
        return self.root / f"{name}.duckdb"


def create_project(
    *, sandbox_url: str, ack_url: str, rate_limit: float, concurrency: int, root: Path = WORK_DIR / "syncs"
) -> BenchProject:
    """A fresh project directory (anything from an earlier run is removed first)."""
    shutil.rmtree(root, ignore_errors=True)
    models = root / "dbt_project" / "models"
    models.mkdir(parents=True)
    (models / "_audience.yml").write_text(textwrap.dedent(MODEL_YAML))
    exports = root / "exports"
    destinations = root / "dbt_project" / "destinations.yml"
    destinations.write_text(
        DESTINATIONS_YAML.format(
            sandbox_url=sandbox_url,
            ack_url=ack_url,
            batch=WEBHOOK_BATCH,
            concurrency=concurrency,
            unlimited=UNLIMITED_RPS,
            limit=rate_limit,
            exports=exports,
        )
    )
    return BenchProject(root, root / "dbt_project", destinations, exports)


def audience_sql(rows: int, start: int = 0) -> str:
    """`rows` customers numbered from `start`, with the identifiers an email/ads audience carries."""
    return f"""
        select printf('c%09d', i) as customer_id, printf('user%09d@example.com', i) as email,
               'First' || (i % 997)::varchar as first_name, 'Last' || (i % 991)::varchar as last_name,
               (i % 50)::integer as score
        from range({start}, {start} + {rows}) t(i)"""


def discard_warehouse(warehouse: Path) -> None:
    """Remove a scratch DuckDB file and its write-ahead log, if there."""
    for path in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        path.unlink(missing_ok=True)


def create_audience(warehouse: Path, rows: int) -> None:
    """A new warehouse file holding `analytics.audience` with `rows` customers."""
    discard_warehouse(warehouse)
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema analytics")
        con.execute(f"create table analytics.{MODEL} as {audience_sql(rows)}")


def apply_changes(warehouse: Path, rows: int, *, changed: float, added: float, removed: float) -> dict[str, int]:
    """Change the given shares of an audience of `rows` customers; returns how many rows each change touched."""
    change_every, remove_every = round(1 / changed), round(1 / removed)
    number = "cast(substr(customer_id, 2) as bigint)"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"update analytics.{MODEL} set score = score + 1000 where {number} % {change_every} = 0")
        touched = {"changed": con.fetchone()[0]}
        con.execute(f"delete from analytics.{MODEL} where {number} % {remove_every} = 1")
        touched["removed"] = con.fetchone()[0]
        con.execute(f"insert into analytics.{MODEL} {audience_sql(round(rows * added), start=rows)}")
        touched["added"] = con.fetchone()[0]
    return touched
