"""Delivery of a plan: stream its rows from the warehouse in destination-sized batches, send them with a
bounded number of batches in flight, and commit every settled batch to state before counting it done.

Only the main thread touches DuckDB; worker threads only call the destination. A batch that raises is
turned into row errors for its rows, so a destination fault never crashes a run. The runner holds the plan
entry (action, hash, fields) of the rows in flight only, so memory stays bounded by the batches in flight and
committing a batch never scans the plan; rows a destination settles later (at close) are looked up in the plan
once, together.

Test-only hooks (used by the crash tests, never set them in production): `TIDINGS_CRASH_AFTER_BATCHES=k`
makes the process `os._exit(137)` right after committing batch k; with `TIDINGS_CRASH_BEFORE_COMMIT=1` it
exits after batch k (default 1) was acknowledged by the destination but before its state was committed.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from syncs import state
from syncs.destinations.base import Destination, Mode, Operation, OutboundRow, RowOutcome, RunInfo
from syncs.logs import get_logger, log_event
from syncs.planner import Plan, stream_sql

log = get_logger("runner")

SETTLE_CHUNK_ROWS = 100_000  # rows per state commit when a destination settles many rows at once
UPSERT_ACTIONS: dict[Mode, tuple[str, ...]] = {
    Mode.MIRROR: ("add", "change"),
    Mode.UPSERT: ("add", "change"),
    Mode.SEND_ONCE: ("add",),
    Mode.EXPORT: ("add", "change", "unchanged"),
}


@dataclass
class Delivery:
    """What a run delivered. Counts are rows."""

    sent: int = 0
    removed: int = 0
    failed: int = 0
    error_summary: Counter[str] = field(default_factory=Counter)
    export_paths: list[str] = field(default_factory=list)
    batches: int = 0


@dataclass
class _Batch:
    op: Operation
    rows: list[OutboundRow]


@dataclass(frozen=True)
class _PlanEntry:
    action: str
    row_hash: str
    row_fields: str | None


class Runner:
    def __init__(
        self, con: duckdb.DuckDBPyConnection, plan: Plan, destination: Destination, run: RunInfo, concurrency: int
    ) -> None:
        self.con = con
        self.plan = plan
        self.destination = destination
        self.run = run
        self.concurrency = max(1, concurrency)
        self.delivery = Delivery()
        self._unsettled: dict[str, Operation] = {}  # rows a deferred destination has not answered yet
        self._in_flight: dict[str, _PlanEntry] = {}  # plan entries of rows sent and not yet settled
        # Whether row_errors may hold rows of this sync, which an acknowledged row must clear: asked once, then
        # only this run's own failures can make it true.
        self._errors_on_record = state.has_row_errors(con, run.sync_name)
        self._crash_after = int(os.environ.get("TIDINGS_CRASH_AFTER_BATCHES", "0") or 0)
        self._crash_before_commit = os.environ.get("TIDINGS_CRASH_BEFORE_COMMIT") == "1"

    def deliver(self) -> Delivery:
        self.destination.open(self.run)
        success = False
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"sync-{self.run.sync_name}") as pool:
                self._send_all(pool)
            success = True
        finally:
            # Rows a destination settles at close (a file, a drop) may be the whole audience: settle them in chunks.
            for chunk in _in_chunks(self.destination.close(success=success), SETTLE_CHUNK_ROWS):
                self._settle([(o, self._unsettled.pop(o.key)) for o in chunk if o.key in self._unsettled])
        self._fail_unanswered()
        if self.plan.mode is Mode.EXPORT:
            self.delivery.export_paths = [str(Path(p)) for p in getattr(self.destination, "written_files", [])]
            self._settle_export_removals()
        return self.delivery

    def _send_all(self, pool: ThreadPoolExecutor) -> None:
        in_flight: dict[Future[list[RowOutcome]], _Batch] = {}
        for batch in self._batches():
            if self.plan.mode is Mode.SEND_ONCE:
                self._mark_pending(batch.rows)
            elif self.plan.mode is Mode.MIRROR and batch.op is Operation.UPSERT:
                self._mark_members_pending(batch.rows)
            in_flight[pool.submit(self.destination.write, batch.op, batch.rows)] = batch
            if len(in_flight) >= self.concurrency:
                self._collect(in_flight, wait(in_flight, return_when=FIRST_COMPLETED).done)
        self._collect(in_flight, list(in_flight))

    def _collect(self, in_flight: dict[Future[list[RowOutcome]], _Batch], done: Sequence[Future]) -> None:
        for future in done:
            batch = in_flight.pop(future)
            try:
                outcomes = future.result()
            except Exception as error:  # a connector bug or unexpected fault: row errors, not a crashed run
                log_event(log, "batch.raised", level=40, run_id=self.run.run_id, error=type(error).__name__)
                outcomes = [
                    RowOutcome.failure(r.key, "destination_exception", f"the connector raised {type(error).__name__}")
                    for r in batch.rows
                ]
            answered = {o.key for o in outcomes}
            for row in batch.rows:
                if row.key not in answered:
                    self._unsettled[row.key] = batch.op
                    self._in_flight.pop(row.key, None)  # settled later, through the plan table
            self._settle([(o, batch.op) for o in outcomes])

    def _batches(self) -> Iterator[_Batch]:
        """Planned rows as destination batches: upserts/sends first, then (mirror only) removals."""
        size = self.destination.batch_size
        upsert_op = Operation.SEND if self.plan.mode is Mode.SEND_ONCE else Operation.UPSERT
        passes = [(UPSERT_ACTIONS[self.plan.mode], upsert_op)]
        if self.plan.mode is Mode.MIRROR:
            passes.append((("remove",), Operation.REMOVE))
        for actions, op in passes:
            reader = self.con.cursor()
            try:
                stream = reader.sql(stream_sql(self.plan, actions)).to_arrow_reader(size)
                pending: list[OutboundRow] = []
                for record_batch in stream:
                    pending.extend(self._rows(record_batch))
                    while len(pending) >= size:
                        yield _Batch(op, pending[:size])
                        pending = pending[size:]
                if pending:
                    yield _Batch(op, pending)
            finally:
                reader.close()

    def _rows(self, record_batch: pa.RecordBatch) -> list[OutboundRow]:
        """Column by column (one to_pylist per column), then one dict per row: half the cost of to_pylist()."""
        names = self.plan.field_names
        column = record_batch.column
        plan = [column(name).to_pylist() for name in ("action", "row_key", "row_hash", "idempotency_key", "row_fields")]
        field_columns = [column(f"f_{i}").to_pylist() for i in range(len(names))]
        values = zip(*field_columns, strict=True) if names else itertools.repeat((), record_batch.num_rows)
        rows = []
        for action, key, row_hash, idempotency_key, row_fields, field_values in zip(*plan, values, strict=True):
            fields = json.loads(row_fields) if action == "remove" else dict(zip(names, field_values, strict=True))
            rows.append(OutboundRow(key, fields, idempotency_key))
            self._in_flight[key] = _PlanEntry(action, row_hash, row_fields)
        return rows

    def _mark_members_pending(self, rows: list[OutboundRow]) -> None:
        members = pa.table(
            {"row_key": [r.key for r in rows], "row_fields": [self._in_flight[r.key].row_fields for r in rows]}
        )
        state.mark_members_pending(self.con, self.run.sync_name, self.run.run_id, members)

    def _mark_pending(self, rows: list[OutboundRow]) -> None:
        keys = pa.table({"occurrence_key": [r.key for r in rows], "idempotency_key": [r.idempotency_key for r in rows]})
        state.mark_pending(self.con, self.run.sync_name, self.run.run_id, keys)

    def _settle(self, settled: list[tuple[RowOutcome, Operation]]) -> None:
        if not settled:
            return
        outcomes = [outcome for outcome, _ in settled]
        self.delivery.batches += 1
        number = self.delivery.batches
        if self._crash_before_commit and number == (self._crash_after or 1):
            os._exit(137)
        state.commit_batch(
            self.con,
            self.run.sync_name,
            self.run.run_id,
            send_once=self.plan.mode is Mode.SEND_ONCE,
            keep_fields=self.plan.mode is Mode.MIRROR,
            plan_table=self.plan.table,
            outcomes=self._outcome_table(outcomes),
            clear_errors=self._errors_on_record,
        )
        self._errors_on_record = self._errors_on_record or not all(o.ok for o in outcomes)
        for outcome, op in settled:
            if not outcome.ok:
                self.delivery.failed += 1
                self.delivery.error_summary[outcome.code or "unknown"] += 1
            elif op is Operation.REMOVE:
                self.delivery.removed += 1
            else:
                self.delivery.sent += 1
        log_event(
            log,
            "batch.committed",
            run_id=self.run.run_id,
            sync=self.run.sync_name,
            batch=number,
            rows=len(outcomes),
            failed=sum(not o.ok for o in outcomes),
        )
        if number == self._crash_after and not self._crash_before_commit:
            os._exit(137)

    def _outcome_table(self, outcomes: list[RowOutcome]) -> pa.Table:
        """The outcomes with their rows' plan entries when the runner holds all of them, else bare."""
        columns = _outcome_columns(outcomes)
        entries = [self._in_flight.pop(o.key, None) for o in outcomes]
        if any(entry is None for entry in entries):
            return pa.table(columns, schema=state.OUTCOME_SCHEMA)
        columns["action"] = [e.action for e in entries]
        columns["row_hash"] = [e.row_hash for e in entries]
        columns["row_fields"] = [e.row_fields for e in entries]
        return pa.table(columns, schema=state.PLANNED_OUTCOME_SCHEMA)

    def _fail_unanswered(self) -> None:
        """Rows the destination never answered for: errors, retried next run."""
        unanswered, self._unsettled = self._unsettled, {}
        message = "the destination did not acknowledge this row"
        self._settle([(RowOutcome.failure(k, "no_acknowledgement", message), op) for k, op in unanswered.items()])

    def _settle_export_removals(self) -> None:
        """Rows gone from the model since the last export leave the export state once a new file is in place."""
        if not self.delivery.export_paths:
            return
        removed = self.con.execute(f"select row_key from {self.plan.table} where action = 'remove'").fetchall()
        self._settle([(RowOutcome.success(key), Operation.REMOVE) for (key,) in removed])


def _in_chunks(items: Iterable[RowOutcome], size: int) -> Iterator[list[RowOutcome]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _outcome_columns(outcomes: list[RowOutcome]) -> dict[str, list[Any]]:
    return {
        "row_key": [o.key for o in outcomes],
        "ok": [o.ok for o in outcomes],
        "code": [o.code for o in outcomes],
        "message": [o.message for o in outcomes],
        "permanent": [o.permanent for o in outcomes],
        "destination_ref": [o.destination_ref for o in outcomes],
        "cost": [o.cost for o in outcomes],
    }
