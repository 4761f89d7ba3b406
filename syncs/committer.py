"""Group commit of settled batches on a thread of its own, so sending never waits for the warehouse.

The runner hands every settled batch to `StateCommitter.submit` the moment the destination answers. The
committer thread gathers the batches settled within one commit interval (`TIDINGS_COMMIT_INTERVAL_SECONDS`,
0.25 s by default, or until a group holds 50k rows) and commits them in one transaction, as databases do for
their own logs: each DuckDB commit costs milliseconds whatever its size, so a commit per 500-row batch would cap
a sync near 70k rows/s while a few commits a second cost almost nothing. Nothing enters state before the
destination acknowledged it, and state trails the acknowledgements by at most one interval: a crash loses only
what was acknowledged within it, which the next run sends again (under the same idempotency keys for
`send_once`). With an interval of 0 each batch is committed as soon as the committer is free, and only batches
acknowledged while it was committing share a transaction.

The committer writes through its own cursor: DuckDB connections are not shared between threads. The queue is
bounded, so a warehouse slower than the destination slows the sender down instead of growing memory.

Test-only hook (the crash tests): with `crash_after=k` the process exits (`os._exit(137)`) right after the
transaction holding batch k commits; a group never reaches past batch k, so state then holds batches 1..k exactly.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from syncs import state
from syncs.config import ConfigError, ConfigProblem
from syncs.logs import get_logger, log_event
from syncs.settings import commit_interval_seconds

log = get_logger("committer")

QUEUE_BATCHES = 128  # settled batches waiting for the committer before the sender blocks
MAX_GROUP_ROWS = 50_000  # rows per transaction, so one commit's Arrow tables stay small


@dataclass(frozen=True)
class CommitScope:
    """What every commit of one run needs to know."""

    sync_name: str
    run_id: str
    send_once: bool
    keep_fields: bool
    plan_table: str
    # The run's write-ahead stamp: commits are stamped no earlier, so they void its entries even if the clock
    # went back during the run.
    not_before: datetime | None = None
    # A mirror to a destination that `confirms_later`: acknowledged removals are kept until it confirms them.
    keep_removals: bool = False


@dataclass(frozen=True)
class _Settled:
    number: int  # the batch's position in the run, from 1
    outcomes: pa.Table  # PLANNED_OUTCOME_SCHEMA, or OUTCOME_SCHEMA for rows looked up in the plan table


_STOP = object()
_FLUSH = object()  # ends the group being gathered: the sender is waiting for everything it submitted


class StateCommitter:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        scope: CommitScope,
        *,
        errors_on_record: bool,
        crash_after: int = 0,
        interval_seconds: float | None = None,
    ) -> None:
        self._interval = _interval_from_environment() if interval_seconds is None else interval_seconds
        self._cursor = con.cursor()
        self._scope = scope
        # Whether row_errors may hold rows of this sync that an acknowledged row must clear: asked once by the
        # caller, then only this run's own failures can make it true.
        self._errors_on_record = errors_on_record
        self._crash_after = crash_after
        self._queue: queue.Queue[_Settled | object] = queue.Queue(QUEUE_BATCHES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"commit-{scope.sync_name}", daemon=True)
        self._thread.start()
        self.transactions = 0

    def submit(self, number: int, outcomes: pa.Table) -> None:
        """Queue one settled batch; raises the committer's own failure, if it had one."""
        self._raise_if_failed()
        self._queue.put(_Settled(number, outcomes))

    def flush(self) -> None:
        """Wait until everything submitted so far is committed, without waiting out the commit interval."""
        self._queue.put(_FLUSH)
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Commit what is queued, stop the thread and close the cursor."""
        try:
            self._queue.put(_STOP)
            self._thread.join()
        finally:
            self._cursor.close()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError("committing sync state failed; the run stops and the next run resumes") from (
                self._error
            )

    def _work(self) -> None:
        stopping = False
        while not stopping:
            group, markers, stopping = self._next_group()
            try:
                if group and self._error is None:
                    self._commit(group)
            except BaseException as error:  # kept for the sender to raise: a thread cannot raise to it
                self._error = error
                log_event(log, "commit.failed", level=40, sync=self._scope.sync_name, error=type(error).__name__)
            finally:
                for _ in range(len(group) + markers):
                    self._queue.task_done()

    def _next_group(self) -> tuple[list[_Settled], int, bool]:
        """Block for one settled batch, then gather those settled within the commit interval after it; a flush or
        stop marker ends the group at once. Returns the group, the markers taken and whether to stop."""
        first = self._queue.get()
        if first is _STOP or first is _FLUSH:
            return [], 1, first is _STOP
        group, rows = [first], first.outcomes.num_rows
        deadline = time.monotonic() + self._interval
        while not self._ends_group(group[-1]) and rows < MAX_GROUP_ROWS:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP or item is _FLUSH:
                return group, 1, item is _STOP
            group.append(item)
            rows += item.outcomes.num_rows
        return group, 0, False

    def _ends_group(self, settled: _Settled) -> bool:
        return settled.number == self._crash_after

    def _commit(self, group: list[_Settled]) -> None:
        # Rows the runner held and rows it looked up have different schemas: one statement set each.
        for schema in {item.outcomes.schema for item in group}:
            outcomes = pa.concat_tables(item.outcomes for item in group if item.outcomes.schema == schema)
            self._commit_outcomes(outcomes)
        first, last = group[0].number, group[-1].number
        log_event(
            log,
            "batch.committed",
            run_id=self._scope.run_id,
            sync=self._scope.sync_name,
            batches=f"{first}-{last}",
            rows=sum(item.outcomes.num_rows for item in group),
        )
        if self._crash_after and first <= self._crash_after <= last:
            os._exit(137)

    def _commit_outcomes(self, outcomes: pa.Table) -> None:
        scope = self._scope
        state.commit_batch(
            self._cursor,
            scope.sync_name,
            scope.run_id,
            send_once=scope.send_once,
            keep_fields=scope.keep_fields,
            plan_table=scope.plan_table,
            outcomes=outcomes,
            clear_errors=self._errors_on_record,
            not_before=scope.not_before,
            keep_removals=scope.keep_removals,
        )
        self.transactions += 1
        self._errors_on_record = self._errors_on_record or not pc.all(outcomes["ok"]).as_py()


def _interval_from_environment() -> float:
    try:
        return commit_interval_seconds()
    except ValueError as error:
        fix = "unset it (0.25 s) or give seconds from 0 to 60; 0 commits each batch as soon as the committer is free"
        problem = ConfigProblem(Path("environment"), "sync engine", "TIDINGS_COMMIT_INTERVAL_SECONDS", str(error), fix)
        raise ConfigError([problem]) from None
