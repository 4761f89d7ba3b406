"""`python -m benchmarks.run [--customers N] [--quick]`: measure Tidings end to end and write
benchmarks/results/results.json and results.md (`--quick` writes to benchmarks/work/quick-results/ instead, so a
harness check never replaces the reference figures the README quotes).

Steps: sample-data generation, dbt build (full and incremental), planning, sync throughput against the naive
full-refresh baseline, the HTTP ceiling, a rate-limited destination, peak memory and file exports. Sizes are
chosen so the whole run stays within 20 minutes on a 2-core machine; the results say which size each step used.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from benchmarks import delivery, planning, warehouse
from benchmarks.machine import machine_facts
from benchmarks.receivers import LoopbackReceiver
from benchmarks.report import Results, Step
from benchmarks.targets import evaluate_targets
from benchmarks.workspace import WORK_DIR, BenchProject, create_project
from syncs.sandbox.apps import all_apps, use_sandbox_credentials
from syncs.sandbox.server import SandboxServer
from syncs.settings import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
QUICK_RESULTS_DIR = REPO_ROOT / "benchmarks" / "work" / "quick-results"
AS_OF = date(2026, 11, 1)
CONCURRENCY = 2  # batches in flight per sync: one per core


@dataclass(frozen=True)
class Sizes:
    customers: int
    sync_rows: int
    rate_limited_rows: int
    rate_limit: float
    memory_rows: list[int]
    ceiling_requests: int

    @classmethod
    def choose(cls, args: argparse.Namespace) -> Sizes:
        quick = args.quick
        customers = args.customers or (10_000 if quick else 1_000_000)
        return cls(
            customers=customers,
            sync_rows=args.sync_rows or (10_000 if quick else 100_000),
            rate_limited_rows=10_000 if quick else 50_000,
            rate_limit=10.0,
            memory_rows=args.memory_rows or ([10_000, 50_000] if quick else [100_000, 5_000_000]),
            ceiling_requests=100 if quick else 400,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, help="customers to generate and rows to plan/export (1,000,000)")
    parser.add_argument("--quick", action="store_true", help="small sizes (10,000 customers) to check the harness")
    parser.add_argument("--sync-rows", type=int, help="rows for the throughput and baseline runs (100,000)")
    parser.add_argument(
        "--memory-rows",
        type=lambda text: [int(n) for n in text.split(",")],
        help="comma-separated audience sizes for the peak-memory syncs (100000,5000000)",
    )
    parser.add_argument("--results-dir", type=Path, help=f"default {RESULTS_DIR} (with --quick: {QUICK_RESULTS_DIR})")
    args = parser.parse_args(argv)
    args.results_dir = args.results_dir or (QUICK_RESULTS_DIR if args.quick else RESULTS_DIR)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = Sizes.choose(args)
    use_sandbox_credentials()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = Results(machine=machine_facts(), parameters={"quick": args.quick, **vars(sizes), "as_of": AS_OF})
    with (
        SandboxServer(all_apps()) as sandbox,
        LoopbackReceiver(acknowledge_rows=True) as ack,
        LoopbackReceiver(acknowledge_rows=False) as null,
    ):
        bench = create_project(
            sandbox_url=sandbox.url, ack_url=ack.url, rate_limit=sizes.rate_limit, concurrency=CONCURRENCY
        )
        for name, measure in _steps(sizes, bench, sandbox, null.url):
            results.steps.append(_run_step(name, measure))
            results.total_seconds = round(time.perf_counter() - started, 1)
            results.targets = evaluate_targets(results)
            results.write(args.results_dir)  # after every step: a long run never loses what it measured
    json_path, markdown_path = results.write(args.results_dir)
    print(f"wrote {json_path} and {markdown_path} in {results.total_seconds:.0f} s", file=sys.stderr)


def _steps(
    sizes: Sizes, bench: BenchProject, sandbox: SandboxServer, null_url: str
) -> list[tuple[str, Callable[[], Step]]]:
    """Every step, in order: later steps reuse nothing from earlier ones but the loopback servers."""
    sample = WORK_DIR / "sample.duckdb"
    return [
        ("Sample-data generation", lambda: warehouse.measure_generation(sample, sizes.customers, AS_OF)),
        ("dbt build", lambda: warehouse.measure_dbt(sample, WORK_DIR / "dbt_target", AS_OF)),
        ("Plan (diff)", lambda: planning.measure_planning(bench, sizes.customers)),
        (
            "Sync throughput and the naive baseline",
            lambda: delivery.measure_throughput(bench, sandbox, sizes.sync_rows, CONCURRENCY),
        ),
        (
            "HTTP ceiling (loopback, do-nothing server)",
            lambda: delivery.measure_ceiling(bench, null_url, sizes.ceiling_requests, CONCURRENCY),
        ),
        (
            "Rate-limited destination",
            lambda: delivery.measure_rate_limited(
                bench, sandbox, sizes.rate_limited_rows, sizes.rate_limit, CONCURRENCY
            ),
        ),
        ("Peak memory of a sync", lambda: delivery.measure_memory(bench, sizes.memory_rows)),
        ("File export", lambda: delivery.measure_exports(bench, sizes.customers)),
    ]


def _run_step(name: str, measure: Callable[[], Step]) -> Step:
    """A step that fails is recorded with its error; the remaining steps still run."""
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        step = measure()
    except Exception as error:
        traceback.print_exc()
        step = Step(name, error=f"{type(error).__name__}: {error}"[:2000])
    step.figures["step_seconds"] = round(time.perf_counter() - started, 1)
    print(f"[bench] {name}: {step.figures}", file=sys.stderr, flush=True)
    return step


if __name__ == "__main__":
    main()
