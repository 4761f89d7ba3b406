"""Sample-data generation and dbt builds on a benchmark warehouse under benchmarks/work/.

dbt runs as a subprocess (as `make` and Dagster run it) with TIDINGS_WAREHOUSE pointing at the benchmark
warehouse and its own --target-path, so the repo's own warehouse and manifest are never touched.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb

from benchmarks.report import Step
from benchmarks.workspace import discard_warehouse
from syncs.sample_data import generate
from syncs.settings import RAW_SCHEMA, dbt_project_dir

SEED = 7


def measure_generation(warehouse: Path, customers: int, as_of: date) -> Step:
    step = Step("Sample-data generation")
    discard_warehouse(warehouse)
    started = time.perf_counter()
    counts = generate(warehouse, customers=customers, seed=SEED, as_of=as_of)
    step.figures["seconds"] = round(time.perf_counter() - started, 1)
    step.figures["customers"] = counts["crm_customers"]
    step.figures["events"] = counts["product_events"]
    step.figures["orders"] = counts["shop_orders"]
    step.figures["all_raw_rows"] = sum(counts.values())
    step.figures["warehouse_mib"] = round(warehouse.stat().st_size / 2**20)
    return step


def measure_dbt(warehouse: Path, target_path: Path, as_of: date) -> Step:
    """A full `dbt build`, then one new day of events appended and the incremental model rebuilt."""
    step = Step("dbt build")
    full = run_dbt(["build"], warehouse, target_path, as_of)
    step.figures["full_build_seconds"] = full.seconds
    step.figures["full_build_peak_rss_mib"] = full.peak_rss_mib
    step.figures["full_build_slowest_nodes"] = full.slowest
    next_day = as_of + timedelta(days=1)
    step.figures["events_appended"] = append_next_day_of_events(warehouse, as_of)
    incremental = run_dbt(["build", "--select", "fct_events"], warehouse, target_path, next_day)
    step.figures["incremental_fct_events_seconds"] = incremental.seconds
    step.notes.append(
        "incremental rebuild = `dbt build --select fct_events` (the incremental events model and its tests) with "
        f"as_of_date {next_day}; the other models are tables, so a whole daily `dbt build` costs about a full build"
    )
    return step


@dataclass(frozen=True)
class DbtRun:
    seconds: float
    peak_rss_mib: int
    slowest: dict[str, float]


def run_dbt(args: list[str], warehouse: Path, target_path: Path, as_of: date) -> DbtRun:
    project = dbt_project_dir()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "TIDINGS_WAREHOUSE": str(warehouse), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = [
        "dbt", *args, "--project-dir", str(project), "--profiles-dir", str(project),
        "--target-path", str(target_path), "--vars", f"{{as_of_date: '{as_of.isoformat()}'}}",
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = child.communicate()
    seconds = round(time.perf_counter() - started, 1)
    if child.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed: {output[-1500:]}")
    # The largest peak RSS among reaped children: dbt runs before any other child of the benchmark.
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return DbtRun(seconds, round(peak_kib / 1024), _slowest_nodes(target_path))


def _slowest_nodes(target_path: Path, top: int = 5) -> dict[str, float]:
    results = json.loads((target_path / "run_results.json").read_text())["results"]
    timed = sorted(results, key=lambda r: -r["execution_time"])[:top]
    return {r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 1) for r in timed}


def append_next_day_of_events(warehouse: Path, as_of: date) -> int:
    """Copy the last day of product events one day forward, with new ids: a new day of traffic arriving."""
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            f"""insert into {RAW_SCHEMA}.product_events
            select * replace (event_id || '_next_day' as event_id, "timestamp" + interval 1 day as "timestamp",
                              received_at + interval 1 day as received_at, _loaded_at + interval 1 day as _loaded_at)
            from {RAW_SCHEMA}.product_events
            where "timestamp" >= ?::timestamp - interval 1 day and "timestamp" < ?::timestamp""",
            [as_of.isoformat(), as_of.isoformat()],
        )
        return con.fetchone()[0]
