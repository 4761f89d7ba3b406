"""Sync delivery measured in child processes (`benchmarks.probe`) while the loopback servers run here: end-to-end
throughput to the webhook sandbox, a rerun after ~7% changes against the naive full-refresh baseline, the share of
a rate-limited destination's allowed throughput, the HTTP ceiling, peak memory and file exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.report import Step
from benchmarks.workspace import WEBHOOK_BATCH, BenchProject, apply_changes, create_audience
from syncs.sandbox.server import SandboxServer
from syncs.settings import REPO_ROOT

CHANGED, ADDED, REMOVED = 0.05, 0.01, 0.01  # ~7% of rows to send on the second run


def probe(kind: str, **arguments: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON answer."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.probe", kind, json.dumps(arguments, default=str)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines()
        errors = [line for line in lines if "Error" in line]  # DuckDB ends its errors with advice lines
        raise RuntimeError(f"probe {kind} failed: {(errors or lines)[-1:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _sync_arguments(bench: BenchProject, warehouse: Path, sync: str) -> dict[str, Any]:
    return {
        "dbt_project_dir": bench.dbt_project_dir,
        "destinations_file": bench.destinations_file,
        "warehouse": warehouse,
        "sync": sync,
    }


def measure_throughput(bench: BenchProject, sandbox: SandboxServer, rows: int, concurrency: int) -> Step:
    step = Step("Sync throughput and the naive baseline")
    webhook = sandbox.app("webhook")
    webhook.set_rate_limit(None)
    warehouse = bench.warehouse("throughput")
    create_audience(warehouse, rows)
    arguments = _sync_arguments(bench, warehouse, "throughput_mirror")

    first = probe("sync", **arguments)
    webhook.reset()
    engine = probe("sync", **_sync_arguments(bench, warehouse, "engine_mirror"))
    step.figures |= {
        "rows": rows,
        "batch_size": WEBHOOK_BATCH,
        "concurrency": concurrency,
        "first_run_sent": first["sent"],
        "first_run_seconds": first["seconds"],
        "rows_per_second": round(first["sent"] / first["seconds"], 1),
        "delivery_seconds": first["delivery_seconds"],
        "delivery_rows_per_second": round(first["sent"] / first["delivery_seconds"], 1),
        "engine_run_sent": engine["sent"],
        "engine_run_seconds": engine["seconds"],
        "engine_rows_per_second": round(engine["sent"] / engine["seconds"], 1),
        "engine_delivery_seconds": engine["delivery_seconds"],
        "engine_delivery_rows_per_second": round(engine["sent"] / engine["delivery_seconds"], 1),
    }
    step.figures["changes_applied"] = apply_changes(warehouse, rows, changed=CHANGED, added=ADDED, removed=REMOVED)
    second = probe("sync", **arguments)
    webhook.reset()
    naive = probe("naive", **arguments, concurrency=concurrency)
    webhook.reset()
    step.figures |= {
        "second_run_sent_and_removed": second["sent"] + second["removed"],
        "second_run_seconds": second["seconds"],
        "naive_full_refresh_sent": naive["sent"],
        "naive_full_refresh_seconds": naive["seconds"],
        "naive_vs_tidings_second_run": round(naive["seconds"] / second["seconds"], 1),
        "naive_vs_tidings_first_run": round(naive["seconds"] / first["seconds"], 2),
    }
    step.notes += [
        "first run: a first mirror sync of every row to the webhook sandbox, which checks each request's signature "
        "and each row's fields and keeps every delivered row; the sandbox runs in the parent process and each sync "
        "in its own child process (one core each); the connector's client-side rate limit is lifted",
        "seconds cover the whole run (lock, plan, guards, delivery, state commits, checkpoint); delivery_seconds "
        "only streaming the plan, sending and committing state",
        "engine run: the same first mirror sync (same rows, its own state) to a loopback receiver that "
        "acknowledges every row and keeps nothing, so the figure is the sync's own cost rather than the sandbox's",
    ]
    return step


def measure_ceiling(bench: BenchProject, receiver_url: str, requests: int, concurrency: int) -> Step:
    step = Step("HTTP ceiling (loopback, do-nothing server)")
    across = probe("loopback", url=f"{receiver_url}/events", requests=requests, concurrency=concurrency)
    within = probe("loopback", in_process=True, requests=requests, concurrency=concurrency)
    alone = probe(
        "connector",
        **_sync_arguments(bench, bench.warehouse("unused"), "engine_mirror"),
        requests=requests,
        concurrency=concurrency,
    )
    step.figures |= {
        "requests": requests,
        "body_bytes": across["body_bytes"],
        "rows_per_second_server_in_other_process": across["rows_per_second"],
        "rows_per_second_server_in_same_process": within["rows_per_second"],
        "connector_rows_per_second": alone["rows_per_second"],
    }
    step.notes += [
        "the destinations' HttpClient posting signed 500-row webhook bodies; the server reads each body and "
        "answers a constant; 'other process' matches the topology of the sync measurements",
        "connector: the webhook connector alone (rows already rendered as JSON, as the runner hands them over) "
        "posting to the acknowledge-only receiver and checking each row's acknowledgement; no plan, no state",
    ]
    return step


def measure_rate_limited(
    bench: BenchProject, sandbox: SandboxServer, rows: int, limit: float, concurrency: int
) -> Step:
    step = Step("Rate-limited destination")
    webhook = sandbox.app("webhook")
    webhook.reset()
    webhook.set_rate_limit(limit)
    warehouse = bench.warehouse("limited")
    create_audience(warehouse, rows)
    try:
        result = probe("sync", **_sync_arguments(bench, warehouse, "limited_upsert"))
    finally:
        stats = dict(webhook.stats)
        webhook.set_rate_limit(None)
        webhook.reset()
    allowed = limit * WEBHOOK_BATCH
    achieved = result["sent"] / result["seconds"]
    step.figures |= {
        "rows": rows,
        "limit_requests_per_second": limit,
        "batch_size": WEBHOOK_BATCH,
        "allowed_rows_per_second": allowed,
        "achieved_rows_per_second": round(achieved, 1),
        "share_of_allowed": round(achieved / allowed, 3),
        "sent": result["sent"],
        "failed": result["failed"],
        "requests": stats.get("requests", 0),
        "answered_429": stats.get("rate_limited", 0),
    }
    step.notes.append(
        "the sandbox enforces the limit in fixed one-second windows; the connector is configured with the same "
        "published limit (requests_per_second) and concurrency; the run's duration includes planning and commits"
    )
    return step


def measure_memory(bench: BenchProject, sizes: list[int]) -> Step:
    step = Step("Peak memory of a sync")
    for rows in sizes:
        warehouse = bench.warehouse(f"memory_{rows}")
        create_audience(warehouse, rows)
        result = probe("sync", **_sync_arguments(bench, warehouse, "memory_upsert"))
        warehouse.unlink()
        step.figures[f"rows_{rows}"] = {
            "sent": result["sent"],
            "seconds": result["seconds"],
            "peak_rss_mib": round(result["peak_rss_bytes"] / 2**20),
            "rss_before_run_mib": round(result["baseline_rss_bytes"] / 2**20),
        }
    step.notes.append(
        "upsert of every row (empty state) to a loopback receiver that acknowledges rows and keeps nothing; "
        "peak RSS is VmHWM of the child process that ran the sync"
    )
    return step


def measure_exports(bench: BenchProject, rows: int) -> Step:
    step = Step("File export")
    warehouse = bench.warehouse("export")
    create_audience(warehouse, rows)
    for sync in ("export_csv", "export_parquet"):
        result = probe("sync", **_sync_arguments(bench, warehouse, sync))
        files = sorted((bench.exports_dir / sync.replace("export_", "audience_")).glob("2*"))
        step.figures[sync] = {
            "rows": result["sent"],
            "seconds": result["seconds"],
            "rows_per_second": round(result["sent"] / result["seconds"], 1),
            "file_mib": round(files[-1].stat().st_size / 2**20, 1) if files else 0,
            "peak_rss_mib": round(result["peak_rss_bytes"] / 2**20),
        }
    return step
