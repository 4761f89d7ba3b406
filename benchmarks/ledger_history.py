"""`python -m benchmarks.ledger_history [--history N ...] [--occurrences N]`: a send_once run against a message
ledger that already holds N messages sent earlier.

The ledger keeps a row for every message ever sent, so a send_once run must not slow down or grow with it beyond
a scan (PROFILING.md, section 6). For each history size this builds a warehouse whose ledger holds that many sent
occurrences of the sync, then runs the sync in a child process (`benchmarks.probe sync`) for `--occurrences` new
ones to the acknowledge-only receiver, under the engine's default memory limit, and reports its seconds and peak
RSS. Results go to `benchmarks/results/ledger_history.json`. Uses scratch files under benchmarks/work/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import duckdb

from benchmarks.delivery import probe
from benchmarks.receivers import LoopbackReceiver
from benchmarks.workspace import WORK_DIR, BenchProject, create_audience, create_project, discard_warehouse
from syncs import state

SYNC = "ledger_send_once"
RESULTS = Path(__file__).parent / "results" / "ledger_history.json"


def build_warehouse(warehouse: Path, history: int, occurrences: int) -> None:
    """`occurrences` new rows in the audience model, and `history` sent occurrences of SYNC in the ledger."""
    create_audience(warehouse, occurrences)
    with duckdb.connect(str(warehouse)) as con:  # no memory limit: this is set-up, not the measured run
        state.ensure_schema(con)
        con.execute(
            f"""insert into {state.S}.message_ledger
            select '{SYNC}', md5('old/' || i), md5('{SYNC}/' || md5('old/' || i)), 'sent', 'ref-' || i, null,
                   timestamp '2026-01-01' + to_seconds(i // 1000), 'history'
            from range({history}) t(i)"""
        )


def measure(bench: BenchProject, history: int, occurrences: int) -> dict[str, Any]:
    warehouse = bench.warehouse("ledger_history")
    build_warehouse(warehouse, history, occurrences)
    measured: dict[str, Any] = {"history_rows": history, "occurrences": occurrences}
    try:
        result = probe(
            "sync",
            dbt_project_dir=bench.dbt_project_dir,
            destinations_file=bench.destinations_file,
            warehouse=warehouse,
            sync=SYNC,
        )
    except RuntimeError as error:  # the run died (DuckDB's OutOfMemory, before the ledger lost its key)
        return {**measured, "status": f"died: {error}", "sent": 0, "seconds": None, "peak_rss_mib": None}
    finally:
        discard_warehouse(warehouse)
    return {
        **measured,
        "status": result["status"],
        "sent": result["sent"],
        "seconds": result["seconds"],
        "peak_rss_mib": round(result["peak_rss_bytes"] / 2**20),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger_history", description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, nargs="+", default=[0, 5_000_000, 20_000_000])
    parser.add_argument("--occurrences", type=int, default=100_000)
    args = parser.parse_args(argv)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    measurements = []
    with LoopbackReceiver(acknowledge_rows=True) as receiver:
        url = receiver.url  # only the acknowledge-only destination is used
        bench = create_project(
            sandbox_url=url, ack_url=url, rate_limit=10.0, concurrency=2, root=WORK_DIR / "ledger_history"
        )
        for history in args.history:
            measured = measure(bench, history, args.occurrences)
            measurements.append(measured)
            print(
                f"history {history:>11,} rows: {measured['status']}, {measured['sent']:,} sent in "
                f"{measured['seconds']} s, peak {measured['peak_rss_mib']} MiB"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(measurements, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
