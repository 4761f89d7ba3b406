"""Child-process measurements, so each gets its own interpreter, its own peak RSS and its own CPU core
(the loopback server stays in the parent): `python -m benchmarks.probe <kind> '<json arguments>'`.

Kinds: `sync` (one `run_sync` of the engine), `naive` (the full-refresh baseline: read the whole audience into
pandas and send every row), `loopback` (the HTTP client posting fixed webhook bodies to a receiver: the
ceiling), `connector` (the webhook connector alone posting rendered batches to an acknowledging receiver).
Each prints one JSON object on its last stdout line.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from benchmarks.receivers import LoopbackReceiver
from benchmarks.workspace import MODEL, PROFILE, WEBHOOK_BATCH
from syncs.destinations.base import Destination, Operation, OutboundBatch, OutboundRow, RowOutcome
from syncs.destinations.webhook import sign
from syncs.engine import load_project, run_sync
from syncs.http import HttpClient
from syncs.sandbox.apps import use_sandbox_credentials


def memory_status() -> dict[str, int]:
    """Resident set size now and at its peak (VmHWM), in bytes, from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return {"rss_bytes": values["VmRSS"], "peak_rss_bytes": values["VmHWM"]}


def sync(args: dict[str, Any]) -> dict[str, Any]:
    project = load_project(Path(args["dbt_project_dir"]), Path(args["destinations_file"]), profile=PROFILE)
    # pyarrow imports pandas on its first use (about 0.3 s here): a one-time cost of the process, which a
    # long-lived Dagster or CLI process pays once, not a cost of the sync being measured.
    pa.array([True])
    before = memory_status()
    result = run_sync(args["sync"], project=project, warehouse=Path(args["warehouse"]))
    planned = result.planned
    return {
        "status": result.status,
        "planned": {"add": planned.add, "change": planned.change, "remove": planned.remove},
        "sent": result.sent,
        "removed": result.removed,
        "failed": result.failed,
        "seconds": result.duration_seconds,
        "delivery_seconds": result.delivery_seconds,
        "rows_per_second": result.rows_per_second,
        "baseline_rss_bytes": before["rss_bytes"],
        **memory_status(),
    }


def naive(args: dict[str, Any]) -> dict[str, Any]:
    """Full refresh: the whole audience into pandas, every row sent, every run."""
    project = load_project(Path(args["dbt_project_dir"]), Path(args["destinations_file"]), profile=PROFILE)
    destination = project.destination_for(project.sync(args["sync"]))
    started = time.perf_counter()
    with duckdb.connect(args["warehouse"], read_only=True) as con:
        frame = con.execute(f"select * from analytics.{MODEL}").df()
    rows = [OutboundRow(record.pop("customer_id"), record) for record in frame.to_dict("records")]
    outcomes = _send_all(destination, rows, args["concurrency"])
    seconds = time.perf_counter() - started
    sent = sum(outcome.ok for outcome in outcomes)
    return {"sent": sent, "failed": len(rows) - sent, "seconds": round(seconds, 3), **memory_status()}


def _send_all(destination: Destination, rows: Sequence[OutboundRow], concurrency: int) -> list[RowOutcome]:
    batches = [rows[i : i + destination.batch_size] for i in range(0, len(rows), destination.batch_size)]
    with ThreadPoolExecutor(concurrency) as pool:
        answered = pool.map(lambda batch: destination.write(Operation.UPSERT, batch), batches)
        return [outcome for outcomes in answered for outcome in outcomes]


def loopback(args: dict[str, Any]) -> dict[str, Any]:
    """Requests per second of the destinations' HTTP client posting signed 500-row webhook bodies."""
    if args.get("in_process"):
        with LoopbackReceiver(acknowledge_rows=False) as receiver:
            return _post_repeatedly(receiver.url, args)
    return _post_repeatedly(args["url"], args)


def _post_repeatedly(url: str, args: dict[str, Any]) -> dict[str, Any]:
    client = HttpClient(url, requests_per_second=None, pool_size=args["concurrency"])
    body = _webhook_body(WEBHOOK_BATCH)
    secret = "loopback"

    def post(_: int) -> int:
        timestamp = str(int(time.time()))
        headers = {"X-Tidings-Timestamp": timestamp, "X-Tidings-Signature": sign(secret, timestamp, body)}
        return client.request("POST", url, data=body, headers=headers).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(args["concurrency"]) as pool:
        statuses = list(pool.map(post, range(args["requests"])))
    seconds = time.perf_counter() - started
    client.close()
    ok = sum(status == 200 for status in statuses)
    return {
        "requests": len(statuses),
        "ok": ok,
        "seconds": round(seconds, 3),
        "requests_per_second": round(ok / seconds, 1),
        "rows_per_second": round(ok * WEBHOOK_BATCH / seconds, 1),
        "body_bytes": len(body),
    }


def connector(args: dict[str, Any]) -> dict[str, Any]:
    """Rows per second of the webhook connector alone: batches already rendered as JSON rows (as the runner hands
    them over) signed, posted and their per-row acknowledgements checked, with no plan, no state and no warehouse."""
    project = load_project(Path(args["dbt_project_dir"]), Path(args["destinations_file"]), profile=PROFILE)
    destination = project.destination_for(project.sync(args["sync"]))
    batches = [_rendered_batch(n * WEBHOOK_BATCH) for n in range(args["requests"])]
    started = time.perf_counter()
    with ThreadPoolExecutor(args["concurrency"]) as pool:
        answered = list(pool.map(lambda batch: destination.write(Operation.UPSERT, batch), batches))
    seconds = time.perf_counter() - started
    acknowledged = sum(outcome.ok for outcomes in answered for outcome in outcomes)
    return {"rows": acknowledged, "seconds": round(seconds, 3), "rows_per_second": round(acknowledged / seconds, 1)}


def _rendered_batch(start: int) -> OutboundBatch:
    rows = _webhook_rows(start, WEBHOOK_BATCH)
    rendered = [json.dumps(row, separators=(",", ":")) for row in rows]

    def build() -> list[OutboundRow]:
        return [OutboundRow(row["key"], row["fields"], row["idempotency_key"]) for row in rows]

    return OutboundBatch([row["key"] for row in rows], [row["idempotency_key"] for row in rows], build, rendered)


def _webhook_rows(start: int, rows: int) -> list[dict[str, Any]]:
    """Rows shaped like the benchmark audience's."""
    return [
        {
            "key": f"c{i:09d}",
            "idempotency_key": f"{i:032x}",
            "fields": {
                "email": f"user{i:09d}@example.com",
                "first_name": f"First{i % 997}",
                "last_name": f"Last{i % 991}",
                "score": i % 50,
            },
        }
        for i in range(start, start + rows)
    ]


def _webhook_body(rows: int) -> bytes:
    """A webhook body shaped like the benchmark audience's batches."""
    payload = {"topic": "loopback", "operation": "upsert", "rows": _webhook_rows(0, rows)}
    return json.dumps(payload, separators=(",", ":")).encode()


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sync": sync,
    "naive": naive,
    "loopback": loopback,
    "connector": connector,
}


def main(argv: list[str]) -> None:
    kind, arguments = argv
    use_sandbox_credentials()
    print(json.dumps(KINDS[kind](json.loads(arguments))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
