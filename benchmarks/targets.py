"""The targets of the benchmark issue, checked against one run's figures."""

from __future__ import annotations

from benchmarks.report import Results, Target

PEAK_MEMORY_LIMIT_MIB = 1024
BENCH_BUDGET_SECONDS = 20 * 60


def evaluate_targets(results: Results) -> list[Target]:
    return [
        _diff(results),
        _unchanged(results),
        _throughput(results),
        _rate_limited(results),
        _memory(results),
        _dbt(results),
        _duration(results),
    ]


def _diff(results: Results) -> Target:
    seconds, rows = results.figure("Plan (diff)", "diff_seconds"), results.figure("Plan (diff)", "audience_rows")
    goal = "diff of 1M rows < 3 s"
    if seconds is None:
        return Target("plan diff", goal, "not measured", None)
    return Target("plan diff", goal, f"{seconds:.2f} s for {rows:,} rows", rows >= 1_000_000 and seconds < 3)


def _unchanged(results: Results) -> Target:
    seconds = results.figure("Plan (diff)", "unchanged_rerun_seconds")
    to_send = results.figure("Plan (diff)", "unchanged_rerun_rows_to_send")
    rows = results.figure("Plan (diff)", "audience_rows")
    goal = "unchanged rerun plans 0 rows < 2 s"
    if seconds is None:
        return Target("unchanged rerun", goal, "not measured", None)
    measured = f"{to_send} rows in {seconds:.2f} s for {rows:,} rows"
    return Target("unchanged rerun", goal, measured, rows >= 1_000_000 and to_send == 0 and seconds < 2)


def _throughput(results: Results) -> Target:
    step = "Sync throughput and the naive baseline"
    achieved = results.figure(step, "rows_per_second")
    ceiling = results.figure("HTTP ceiling (loopback, do-nothing server)", "rows_per_second_server_in_other_process")
    goal = "sync throughput within 2x of the loopback ceiling"
    if achieved is None or ceiling is None:
        return Target("sync throughput", goal, "not measured", None)
    measured = (
        f"{achieved:,.0f} rows/s end to end to the sandbox vs ceiling {ceiling:,.0f} rows/s ({ceiling / achieved:.1f}x)"
    )
    delivery = results.figure(step, "delivery_rows_per_second")
    engine = results.figure(step, "engine_delivery_rows_per_second")
    if delivery and engine:
        measured += (
            f"; delivery phase {delivery:,.0f} rows/s ({ceiling / delivery:.1f}x), "
            f"to an acknowledge-only receiver {engine:,.0f} rows/s ({ceiling / engine:.1f}x)"
        )
    return Target("sync throughput", goal, measured, achieved * 2 >= ceiling)


def _rate_limited(results: Results) -> Target:
    share = results.figure("Rate-limited destination", "share_of_allowed")
    goal = ">= 90% of a rate-limited destination's allowed throughput"
    if share is None:
        return Target("rate-limited share", goal, "not measured", None)
    return Target("rate-limited share", goal, f"{share:.0%}", share >= 0.9)


def _memory(results: Results) -> Target:
    step = results.step("Peak memory of a sync")
    goal = "peak memory of a 5M-row sync < 1 GB"
    runs = {} if step is None else {k: v for k, v in step.figures.items() if k.startswith("rows_")}
    if not runs:
        return Target("peak memory", goal, "not measured", None)
    largest = max(runs, key=lambda k: int(k.removeprefix("rows_")))
    rows, peak = int(largest.removeprefix("rows_")), runs[largest]["peak_rss_mib"]
    measured = f"{peak:,} MiB at {rows:,} rows"
    met = peak < PEAK_MEMORY_LIMIT_MIB and (True if rows >= 5_000_000 else None)
    return Target("peak memory", goal, measured, False if peak >= PEAK_MEMORY_LIMIT_MIB else met)


def _dbt(results: Results) -> Target:
    seconds = results.figure("dbt build", "full_build_seconds")
    customers = results.figure("Sample-data generation", "customers")
    goal = "full dbt build at 1M customers < 5 min"
    if seconds is None or customers is None:
        return Target("dbt full build", goal, "not measured", None)
    return Target(
        "dbt full build", goal, f"{seconds:.0f} s at {customers:,} customers", customers >= 1_000_000 and seconds < 300
    )


def _duration(results: Results) -> Target:
    goal = "the whole benchmark (make bench) < 20 min"
    measured = f"{results.total_seconds:.0f} s"
    return Target("benchmark duration", goal, measured, results.total_seconds < BENCH_BUDGET_SECONDS)
