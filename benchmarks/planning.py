"""Plan (diff) time on a synthetic audience: an unchanged rerun, then a rerun after ~5% changed, 1% added and 1%
removed rows, against the machine's ceiling (the smallest SQL that computes the same classification).

The sync state is seeded from the planner's own first plan, exactly as if a previous run had synced every row.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.report import Step
from benchmarks.workspace import MODEL, PROFILE, BenchProject, apply_changes, create_audience
from syncs import state
from syncs.engine import Project, load_project, new_run_id, plan_sync
from syncs.planner import build_plan, drop_plan
from syncs.settings import STATE_SCHEMA

SYNC = "plan_mirror"
CHANGED, ADDED, REMOVED = 0.05, 0.01, 0.01


def measure_planning(bench: BenchProject, rows: int) -> Step:
    step = Step("Plan (diff)")
    project = load_project(bench.dbt_project_dir, bench.destinations_file, profile=PROFILE)
    warehouse = bench.warehouse("plan")
    create_audience(warehouse, rows)
    step.figures["audience_rows"] = rows
    step.figures["seed_state_seconds"] = _seed_state(project, warehouse)

    unchanged, seconds = _timed_plan(project, warehouse)
    step.figures["unchanged_rerun_seconds"] = seconds
    step.figures["unchanged_rerun_rows_to_send"] = unchanged["add"] + unchanged["change"] + unchanged["remove"]

    step.figures["changes_applied"] = apply_changes(warehouse, rows, changed=CHANGED, added=ADDED, removed=REMOVED)
    changed, seconds = _timed_plan(project, warehouse)
    step.figures["diff_seconds"] = seconds
    step.figures["diff_counts"] = changed

    ceiling, seconds = _ceiling(warehouse)
    step.figures["ceiling_diff_sql_seconds"] = seconds
    step.figures["ceiling_counts_agree"] = all(ceiling.get(k, 0) == v for k, v in changed.items())
    step.figures["diff_vs_ceiling"] = round(step.figures["diff_seconds"] / seconds, 1)
    step.figures["diff_statement_seconds"] = statement_split(project, warehouse)
    step.notes.append(
        "diff_seconds and unchanged_rerun_seconds time syncs.engine.plan_sync (plan + guards, nothing sent); "
        "the ceiling is one aggregate query over the same row hashes and the same full outer join"
    )
    return step


def _seed_state(project: Project, warehouse: Path) -> float:
    started = time.perf_counter()
    con = state.connect(warehouse)
    try:
        state.ensure_schema(con)
        plan = build_plan(con, project.sync(SYNC), new_run_id())
        con.execute(
            f"insert into {STATE_SCHEMA}.sync_state select ?, row_key, row_hash, row_fields, null, now() "
            f"from {plan.table} where action = 'add'",
            [SYNC],
        )
        drop_plan(con, plan)
    finally:
        con.close()
    return round(time.perf_counter() - started, 3)


def _timed_plan(project: Project, warehouse: Path) -> tuple[dict[str, int], float]:
    started = time.perf_counter()
    plan = plan_sync(SYNC, project=project, warehouse=warehouse)
    seconds = round(time.perf_counter() - started, 3)
    counts = plan.counts
    return {"add": counts.add, "change": counts.change, "remove": counts.remove, "unchanged": counts.unchanged}, seconds


def _ceiling(warehouse: Path) -> tuple[dict[str, int], float]:
    """The same classification as one aggregate: key + md5 of the same JSON object, full outer join, count."""
    sql = f"""
        with current_rows as (
            select cast(customer_id as varchar) as row_key,
                   md5(json_object('email', email, 'first_name', first_name, 'last_name', last_name,
                                   'score', score)::varchar) as row_hash
            from analytics.{MODEL}
        ),
        synced as (select row_key, row_hash from {STATE_SCHEMA}.sync_state where sync_name = '{SYNC}')
        select case when c.row_key is null then 'remove' when s.row_key is null then 'add'
                    when c.row_hash <> s.row_hash then 'change' else 'unchanged' end as action, count(*)
        from current_rows c full outer join synced s on c.row_key = s.row_key
        group by all"""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        started = time.perf_counter()
        counts = dict(con.execute(sql).fetchall())
        return counts, round(time.perf_counter() - started, 3)


class _TimedConnection:
    """Passes everything to a DuckDB connection and adds up the time of each `execute` by statement kind."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.seconds: dict[str, float] = defaultdict(float)

    def execute(self, sql: str, *args: Any) -> duckdb.DuckDBPyConnection:
        started = time.perf_counter()
        result = self._con.execute(sql, *args)
        self.seconds[_statement_kind(sql)] += time.perf_counter() - started
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _statement_kind(sql: str) -> str:
    words = " ".join(sql.split()).lower()
    if words.startswith("create or replace table"):
        return "materialize plan table"
    if "count(distinct row_key)" in words:
        return "count current rows and key problems"
    if "group by action" in words:
        return "count plan actions"
    if " limit " in words:
        return "preview"
    return "metadata lookups"


def statement_split(project: Project, warehouse: Path) -> dict[str, float]:
    """Where the planner's time goes, statement by statement (one more plan of the current data)."""
    con = state.connect(warehouse)
    try:
        timed = _TimedConnection(con)
        plan = build_plan(timed, project.sync(SYNC), new_run_id())  # type: ignore[arg-type]
        drop_plan(con, plan)
    finally:
        con.close()
    return {kind: round(seconds, 3) for kind, seconds in sorted(timed.seconds.items(), key=lambda kv: -kv[1])}
