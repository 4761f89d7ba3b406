"""Delivery of a plan: stream its rows from the warehouse in destination-sized batches, send them with a
bounded number of batches in flight, and hand every settled batch to the state committer before counting it.

Passes (a mirror's removals and retirements, then its upserts) run one after another, each acknowledged before
the next starts. The main thread reads the plan and sends; worker threads only call the destination; the
committer thread (`syncs.committer`) writes state, grouping the batches settled while it was busy into one
transaction. A batch that raises is turned into row errors for its rows, so a destination fault never
crashes a run. Each batch carries its rows' plan entries (action, hash, fields) as an Arrow slice of the plan
stream, so settling it builds no per-row objects and never scans the plan; rows a destination settles later
(at close) are looked up in the plan once, together.

Write-ahead before the first send, once per run: a mirror records every member it is about to add or change
and every previous identity it retires (`state.mark_members_pending`); `send_once` records every occurrence
it is about to send as `pending` in the ledger, with its idempotency key (`state.mark_pending`). During
delivery only the committer writes state; a send_once run's acknowledgements are folded into the ledger once it
has delivered (`state.fold_acknowledged_sends`).

Test-only hooks (used by the crash tests, never set them in production): `TIDINGS_CRASH_AFTER_BATCHES=k`
makes the process `os._exit(137)` right after the state of batch k is committed; with
`TIDINGS_CRASH_BEFORE_COMMIT=1` it exits once batch k (default 1) was acknowledged by the destination and
every earlier batch committed, but before batch k's state is.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from syncs import state
from syncs.arrow_values import python_values
from syncs.committer import CommitScope, StateCommitter
from syncs.destinations.base import (
    AcknowledgedRows,
    DeferredOutcome,
    Destination,
    Mode,
    Operation,
    OutboundBatch,
    OutboundRow,
    RowOutcome,
    RunInfo,
)
from syncs.later_checks import MEMBER_MODES
from syncs.logs import get_logger, log_event
from syncs.planner import REMOVAL_ACTIONS, Plan, stream_sql
from syncs.sql_text import literal

log = get_logger("runner")

SETTLE_CHUNK_ROWS = 100_000  # rows per state commit when a destination settles many rows at once
UPSERT_ACTIONS: dict[Mode, tuple[str, ...]] = {
    Mode.MIRROR: ("add", "change"),
    Mode.UPSERT: ("add", "change"),
    Mode.SEND_ONCE: ("add",),
    Mode.EXPORT: ("add", "change", "unchanged"),
}
PLAN_ENTRY_COLUMNS = ["row_key", "action", "row_hash", "row_fields"]


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
class _DeferredPass:
    """Rows of one pass a destination that `answers_at_close` left unanswered: the pass's plan rows other than
    those its batches answered (usually none), so no key per deferred row is held."""

    actions: tuple[str, ...]
    op: Operation
    answered: list[str] = field(default_factory=list)
    deferred: int = 0


@dataclass
class _Batch:
    op: Operation
    rows: OutboundBatch
    entries: pa.Table  # PLAN_ENTRY_COLUMNS of `rows`, in the same order


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
        self._unsettled: dict[str, Operation] = {}  # rows of batches their destination answered only in part
        self._deferred_passes: list[_DeferredPass] = []  # the same, for destinations that answer at close
        self._crash_after = int(os.environ.get("TIDINGS_CRASH_AFTER_BATCHES", "0") or 0)
        self._crash_before_commit = os.environ.get("TIDINGS_CRASH_BEFORE_COMMIT") == "1"
        self._committer: StateCommitter | None = None
        self._members = plan.mode in MEMBER_MODES  # the syncs whose later-confirmed work is checked
        # The rows' fields in mapping order, as destination names and plan columns, for every batch.
        declared = plan.declared_fields
        self._field_names = [name for name, _ in declared]
        self._field_columns = [column for _, column in declared]

    def deliver(self) -> Delivery:
        written_ahead_at = None
        if self.plan.mode is Mode.MIRROR:
            written_ahead_at = state.mark_members_pending(
                self.con, self.run.sync_name, self.run.run_id, self.plan.table
            )
            if self.plan.skipped.get("shared_identity") or self.plan.skipped.get("unrecorded_identity"):
                state.release_members(self.con, self.run.sync_name, self.plan.table)
            state.record_member_fields(self.con, self.run.sync_name, self.plan.table)
        elif self.plan.mode is Mode.SEND_ONCE:
            state.mark_pending(self.con, self.run.sync_name, self.run.run_id, self.plan.table)
        self._committer = StateCommitter(
            self.con,
            CommitScope(
                sync_name=self.run.sync_name,
                run_id=self.run.run_id,
                send_once=self.plan.mode is Mode.SEND_ONCE,
                keep_fields=self.plan.mode is Mode.MIRROR,
                plan_table=self.plan.table,
                not_before=written_ahead_at,
                # Removals a destination acknowledges at close are recorded with its work (`_record_handover`).
                keep_removals=self.plan.mode is Mode.MIRROR
                and self.destination.confirms_later
                and not self.destination.answers_at_close,
            ),
            errors_on_record=state.has_row_errors(self.con, self.run.sync_name),
            crash_after=0 if self._crash_before_commit else self._crash_after,
        )
        try:
            self._deliver()
        finally:
            self._committer.close()
        if self.plan.mode is Mode.MIRROR:
            state.clear_pending_members(self.con, self.run.sync_name)
        elif self.plan.mode is Mode.SEND_ONCE:
            state.fold_acknowledged_sends(self.con, self.run.sync_name)
        return self.delivery

    def _deliver(self) -> None:
        self.destination.open(self.run)
        success = False
        try:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"sync-{self.run.sync_name}") as pool:
                self._send_all(pool)
            success = True
        finally:
            handed_over = self._record_handover_or_close(success)
            # Rows a destination answers at close (a file, a drop) may be the whole audience: settled in chunks.
            closing = self.destination.close(success=success)
            if closing is not None:
                if self.destination.confirms_later and self._members:
                    self._settle_handover(handed_over, closing)
                self._settle_deferred_passes(closing)
        self._fail_unanswered()
        if self.plan.mode is Mode.EXPORT:
            self.delivery.export_paths = [str(Path(p)) for p in getattr(self.destination, "written_files", [])]
            self._settle_export_removals()

    def _record_handover_or_close(self, success: bool) -> str | None:
        """Before `close` hands over work a destination confirms later: record it (`_record_handover`). Nothing is
        handed over when that fails: the destination is closed as after a failed run."""
        if not (success and self.destination.confirms_later and self._members):
            return None
        try:
            ref = self.destination.handover_ref()
            return None if ref is None else self._record_handover(ref)
        except BaseException:
            self.destination.close(success=False)
            raise

    def _settle_handover(self, handed_over: str | None, closing: DeferredOutcome) -> None:
        """The work `close` acknowledged takes the place of the work recorded before it (`state.settle_handover`);
        recorded now if the destination could not name it before."""
        acknowledged = closing.acknowledged_refs()
        if handed_over is None and acknowledged:
            handed_over = self._record_handover(acknowledged[0])
        refs = {
            table: outcome.destination_ref if outcome.ok else None
            for table, outcome in (
                ("unconfirmed_removals", closing.for_op(Operation.REMOVE)),
                ("unconfirmed_adds", closing.for_op(Operation.UPSERT)),
            )
        }
        state.settle_handover(self.con, self.run.sync_name, self.run.run_id, handed_over, acknowledged, refs)

    def _record_handover(self, ref: str) -> str:
        """Record the work `ref` a destination that `confirms_later` hands over at close, with the rows of a mirror's
        passes it carries, or may carry (`state.record_handover`)."""
        uncertain = set(self.destination.uncertain_keys())
        carried = self.plan.mode is Mode.MIRROR and any(p.deferred for p in self._deferred_passes)
        state.record_handover(
            self.con,
            self.run.sync_name,
            self.run.run_id,
            ref,
            plan_table=self.plan.table if carried else None,
            answered=[key for deferred in self._deferred_passes for key in deferred.answered if key not in uncertain],
        )
        return ref

    def _send_all(self, pool: ThreadPoolExecutor) -> None:
        """Each pass is acknowledged before the next starts: a mirror's retirements and removals reach the
        destination before its upserts."""
        for actions, op in self._passes():
            if self.destination.answers_at_close:
                self._deferred_passes.append(_DeferredPass(actions, op))
            in_flight: dict[Future[Sequence[RowOutcome]], _Batch] = {}
            for batch in self._batches(actions, op):
                in_flight[pool.submit(self.destination.write, batch.op, batch.rows)] = batch
                if len(in_flight) >= self.concurrency:
                    self._collect(in_flight, wait(in_flight, return_when=FIRST_COMPLETED).done)
            self._collect(in_flight, list(in_flight))

    def _collect(self, in_flight: dict[Future[Sequence[RowOutcome]], _Batch], done: Iterable[Future]) -> None:
        for future in done:
            batch = in_flight.pop(future)
            try:
                outcomes = future.result()
            except Exception as error:  # a connector bug or unexpected fault: row errors, not a crashed run
                log_event(log, "batch.raised", level=40, run_id=self.run.run_id, error=type(error).__name__)
                message = f"the connector raised {type(error).__name__}"
                outcomes = [RowOutcome.failure(key, "destination_exception", message) for key in batch.rows.keys]
            self._settle_batch(batch, outcomes)

    def _passes(self) -> list[tuple[tuple[str, ...], Operation]]:
        """Plan actions and the operation that sends them, in order: upserts/sends, and for a mirror,
        retirements and removals before them. An identity-keyed destination may normalize a removed or retired
        identity to the one a member is given in the same run (a moved customer's new email, a household's email
        passed to another customer): removed first and added after, it ends up in the destination."""
        upsert_op = Operation.SEND if self.plan.mode is Mode.SEND_ONCE else Operation.UPSERT
        upserts = (UPSERT_ACTIONS[self.plan.mode], upsert_op)
        if self.plan.mode is Mode.MIRROR:
            return [(("retire", "remove"), Operation.REMOVE), upserts]
        return [upserts]

    def _batches(self, actions: tuple[str, ...], op: Operation) -> Iterator[_Batch]:
        """The plan rows with these actions as destination-sized batches."""
        size = self.destination.batch_size
        json_rows = self.destination.reads_json_rows and self.plan.json_exact
        reader = self.con.cursor()
        try:
            stream = reader.sql(stream_sql(self.plan, actions, json_rows=json_rows)).to_arrow_reader(size)
            held: list[pa.RecordBatch] = []
            count = 0
            for record_batch in stream:
                held.append(record_batch)
                count += record_batch.num_rows
                while count >= size:
                    table = pa.Table.from_batches(held)
                    yield self._batch(op, table.slice(0, size))
                    held, count = table.slice(size).to_batches(), count - size
            if count:
                yield self._batch(op, pa.Table.from_batches(held))
        finally:
            reader.close()

    def _batch(self, op: Operation, table: pa.Table) -> _Batch:
        """The rows of `table` (plan stream columns) as a destination batch; its row objects are built only when
        the connector reads them, on the connector's thread."""
        keys = table.column("row_key").to_pylist()
        idempotency_keys = table.column("idempotency_key").to_pylist()
        json_rows = table.column("json_row").to_pylist() if "json_row" in table.column_names else None
        fields = None
        if op is not Operation.REMOVE:
            fields = table.select(self._field_columns).rename_columns(self._field_names)
        build = partial(self._rows, table, keys, idempotency_keys)
        rows = OutboundBatch(keys, idempotency_keys, build, json_rows, fields)
        return _Batch(op, rows, table.select(PLAN_ENTRY_COLUMNS))

    def _rows(self, table: pa.Table, keys: list[str], idempotency_keys: list[str | None]) -> list[OutboundRow]:
        """Column by column (one to_pylist per column), then one dict per row: half the cost of to_pylist()."""
        names = self._field_names
        actions, sent_fields = table.column("action").to_pylist(), table.column("row_fields").to_pylist()
        field_columns = [python_values(table.column(column)) for column in self._field_columns]
        values = zip(*field_columns, strict=True) if names else itertools.repeat((), table.num_rows)
        return [
            OutboundRow(
                key, json.loads(sent) if action in REMOVAL_ACTIONS else dict(zip(names, row, strict=True)), idem
            )
            for action, key, idem, sent, row in zip(actions, keys, idempotency_keys, sent_fields, values, strict=True)
        ]

    def _settle_batch(self, batch: _Batch, outcomes: Sequence[RowOutcome]) -> None:
        """Hand a batch's answered rows, with their plan entries, to the committer; rows the destination did not
        answer yet are settled later (at close) through the plan table."""
        keys = batch.rows.keys
        if isinstance(outcomes, AcknowledgedRows) and outcomes.keys == keys:
            self._note_answered(keys, len(keys))
            self._submit(_acknowledged_table(batch.entries, outcomes), batch.op)
            return
        if len(outcomes) == len(keys) and all(o.key == key for o, key in zip(outcomes, keys, strict=True)):
            entries = batch.entries
        else:
            position = {key: i for i, key in enumerate(keys)}
            outcomes = [o for o in outcomes if o.key in position]
            if not self.destination.answers_at_close:
                answered = {o.key for o in outcomes}
                self._unsettled.update((key, batch.op) for key in keys if key not in answered)
            if not outcomes:
                self._note_answered([], len(keys))
                return
            entries = batch.entries.take(pa.array([position[o.key] for o in outcomes], pa.int64()))
        self._note_answered([o.key for o in outcomes], len(keys))
        table = pa.table(
            {**_outcome_columns(outcomes), **{c: entries[c] for c in PLAN_ENTRY_COLUMNS[1:]}},
            schema=state.PLANNED_OUTCOME_SCHEMA,
        )
        self._submit(table, batch.op)

    def _note_answered(self, answered: list[str], rows: int) -> None:
        """For a destination that answers at close: the batch's answered keys, and how many rows it deferred."""
        if self.destination.answers_at_close:
            current = self._deferred_passes[-1]
            current.answered += answered
            current.deferred += rows - len(answered)

    def _settle_looked_up(self, settled: list[tuple[RowOutcome, Operation]]) -> None:
        """Outcomes of rows the runner no longer holds: the committer joins them with the plan table."""
        for op in {op for _, op in settled}:
            outcomes = [outcome for outcome, operation in settled if operation is op]
            self._submit(pa.table(_outcome_columns(outcomes), schema=state.OUTCOME_SCHEMA), op)

    def _settle_deferred_passes(self, outcome: DeferredOutcome) -> None:
        """Give every row the passes deferred the destination's one answer, streamed from the plan in chunks."""
        passes, self._deferred_passes = [p for p in self._deferred_passes if p.deferred], []
        for deferred in passes:
            self._settle_from_plan(
                deferred.actions, deferred.op, outcome.for_op(deferred.op), exclude=deferred.answered
            )

    def _settle_from_plan(
        self, actions: tuple[str, ...], op: Operation, outcome: DeferredOutcome, exclude: list[str]
    ) -> None:
        """Settle the plan rows with these actions, except the keys in `exclude`, with one outcome. Each chunk
        waits for the previous one's commit, so at most two are held whatever the audience's size."""
        wanted = ", ".join(literal(a) for a in actions)
        # Only a mirror's state keeps the fields sent.
        fields = "row_fields" if self.plan.mode is Mode.MIRROR else "null::varchar as row_fields"
        reader = self.con.cursor()
        try:
            skip = ""
            if exclude:
                reader.register("answered_rows", pa.table({"row_key": pa.array(exclude, pa.string())}))
                skip = " and row_key not in (select row_key from answered_rows)"
            sql = f"select row_key, action, row_hash, {fields} from {self.plan.table} where action in ({wanted}){skip}"
            for entries in reader.sql(sql).to_arrow_reader(SETTLE_CHUNK_ROWS):
                assert self._committer is not None
                self._committer.flush()
                self._submit(_uniform_outcomes(pa.Table.from_batches([entries]), outcome), op)
        finally:
            reader.close()

    def _submit(self, table: pa.Table, op: Operation) -> None:
        """Hand settled rows to the committer and count them (`ok` and `code` columns of the outcome table)."""
        assert self._committer is not None
        self.delivery.batches += 1
        number = self.delivery.batches
        if self._crash_before_commit and number == (self._crash_after or 1):
            self._committer.flush()
            os._exit(137)
        self._committer.submit(number, table)
        failed_mask = pc.invert(table["ok"])
        failed = pc.sum(failed_mask).as_py() or 0
        if failed:
            codes = pc.fill_null(pc.filter(table["code"], failed_mask), "unknown")
            self.delivery.error_summary.update({c["values"]: c["counts"] for c in pc.value_counts(codes).to_pylist()})
        self.delivery.failed += failed
        if op is Operation.REMOVE:
            self.delivery.removed += table.num_rows - failed
        else:
            self.delivery.sent += table.num_rows - failed

    def _fail_unanswered(self) -> None:
        """Rows the destination never answered for: errors, retried next run."""
        message = "the destination did not acknowledge this row"
        self._settle_deferred_passes(DeferredOutcome.failure("no_acknowledgement", message))
        unanswered, self._unsettled = self._unsettled, {}
        failures = [(RowOutcome.failure(k, "no_acknowledgement", message), op) for k, op in unanswered.items()]
        self._settle_looked_up(failures)

    def _settle_export_removals(self) -> None:
        """Rows gone from the model since the last export leave the export state once a new file is in place."""
        if not self.delivery.export_paths:
            return
        self._settle_from_plan(("remove",), Operation.REMOVE, DeferredOutcome.success(), exclude=[])


def _acknowledged_table(entries: pa.Table, acknowledged: AcknowledgedRows) -> pa.Table:
    """The outcome table of a batch whose every row succeeded, built from its plan entries without row objects."""
    return _uniform_outcomes(entries, DeferredOutcome.success(), acknowledged.destination_refs)


def _uniform_outcomes(
    entries: pa.Table, outcome: DeferredOutcome, destination_refs: list[str | None] | None = None
) -> pa.Table:
    """One outcome for every row of `entries` (PLAN_ENTRY_COLUMNS), as a planned outcome table; `destination_refs`
    gives each row its own reference."""
    n = entries.num_rows

    def repeated(value: Any, kind: pa.DataType) -> pa.Array:
        return pa.nulls(n, kind) if value is None else pa.array([value] * n, kind)

    columns = {
        "row_key": entries["row_key"],
        "ok": repeated(outcome.ok, pa.bool_()),
        "code": repeated(outcome.code, pa.string()),
        "message": repeated(outcome.message, pa.string()),
        "permanent": repeated(outcome.permanent, pa.bool_()),
        "destination_ref": destination_refs or repeated(outcome.destination_ref, pa.string()),
        "cost": pa.nulls(n, pa.float64()),
        **{c: entries[c] for c in PLAN_ENTRY_COLUMNS[1:]},
    }
    return pa.table(columns, schema=state.PLANNED_OUTCOME_SCHEMA)


def _outcome_columns(outcomes: Sequence[RowOutcome]) -> dict[str, list[Any]]:
    return {
        "row_key": [o.key for o in outcomes],
        "ok": [o.ok for o in outcomes],
        "code": [o.code for o in outcomes],
        "message": [o.message for o in outcomes],
        "permanent": [o.permanent for o in outcomes],
        "destination_ref": [o.destination_ref for o in outcomes],
        "cost": [o.cost for o in outcomes],
    }
