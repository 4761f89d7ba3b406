"""`python -m benchmarks.state_replay [--rows N] [--group G ...]`: the sync state work of a first sync, without HTTP.

Replays what a sync does to the warehouse for a first sync (every row an `add`): for a mirror, the write-ahead of
every planned member (`state.mark_members_pending`, once per run), then the commits (`state.commit_batch`) of
500-row batches, one transaction per batch and then one per group of G batches, as the committer groups them. It
measures the ceiling the state writes put on sync throughput (see PROFILING.md, section 2). Uses a scratch
DuckDB file under benchmarks/work/.
"""

from __future__ import annotations

import argparse
import json
import time

import duckdb
import pyarrow as pa

from benchmarks.workspace import WORK_DIR, discard_warehouse
from syncs import state

BATCH = 500  # the webhook connector's batch size


def _batch(start: int, rows: int) -> pa.Table:
    keys = [f"c{i:09d}" for i in range(start, start + rows)]
    return pa.table(
        {
            "row_key": keys,
            "ok": [True] * rows,
            "code": pa.nulls(rows, pa.string()),
            "message": pa.nulls(rows, pa.string()),
            "permanent": pa.nulls(rows, pa.bool_()),
            "destination_ref": pa.nulls(rows, pa.string()),
            "cost": pa.nulls(rows, pa.float64()),
            "action": ["add"] * rows,
            "row_hash": [f"{i:032x}" for i in range(start, start + rows)],
            "row_fields": [json.dumps({"email": f"{key}@example.com", "score": len(key)}) for key in keys],
        },
        schema=state.PLANNED_OUTCOME_SCHEMA,
    )


def replay(rows: int, group: int, *, write_ahead: bool) -> float:
    """Seconds of state work for `rows` rows committed `group` batches at a time."""
    warehouse = WORK_DIR / "state_replay.duckdb"
    discard_warehouse(warehouse)
    duckdb.connect(str(warehouse)).close()  # state.connect opens existing warehouses only
    con = state.connect(warehouse)
    try:
        state.ensure_schema(con)
        started = time.perf_counter()
        if write_ahead:
            with state.registered(con, "replay_plan", _batch(0, rows)):
                state.mark_members_pending(con, "replay", "run", "replay_plan")
        for start in range(0, rows, BATCH * group):
            outcomes = _batch(start, min(BATCH * group, rows - start))
            state.commit_batch(
                con, "replay", "run", send_once=False, keep_fields=write_ahead, plan_table="unused", outcomes=outcomes
            )
        return time.perf_counter() - started
    finally:
        con.close()
        discard_warehouse(warehouse)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state_replay", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--group", type=int, nargs="+", default=[1, 20], help="batches per commit (1 = a transaction per batch)"
    )
    args = parser.parse_args(argv)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    for write_ahead in (True, False):
        for group in args.group:
            seconds = replay(args.rows, group, write_ahead=write_ahead)
            mode = "mirror (write-ahead)" if write_ahead else "upsert (no write-ahead)"
            label = f"{mode:24} {group:>3} x {BATCH} rows"
            print(f"{label}: {seconds:6.2f} s, {args.rows / seconds:>9,.0f} rows/s")


if __name__ == "__main__":
    main()
