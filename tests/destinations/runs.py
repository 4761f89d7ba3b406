"""Driving a connector through one run as the runner does, for destination tests."""

from __future__ import annotations

import pytest

from syncs.destinations.base import Destination, Mode, Operation, OutboundRow, RowOutcome, RunInfo


def send_once_run(
    dest: Destination, sync_name: str, rows: list[OutboundRow], run_id: str, unsettled: tuple[str, ...] = ()
) -> list[RowOutcome]:
    """One send_once run: open, write every row, close; `unsettled` are earlier runs that may have delivered
    without recording it."""
    dest.open(RunInfo(run_id, sync_name, Mode.SEND_ONCE, estimated_rows=len(rows), unsettled_runs=unsettled))
    try:
        return dest.write(Operation.SEND, rows)
    finally:
        dest.close(success=True)


def opened_runs(monkeypatch: pytest.MonkeyPatch, destination_class: type[Destination]) -> list[RunInfo]:
    """The `RunInfo` of each run that opens a `destination_class` connector from now on, in order (the connector
    opens as before)."""
    runs: list[RunInfo] = []
    open_run = destination_class.open

    def open_and_record(destination: Destination, run: RunInfo) -> None:
        runs.append(run)
        open_run(destination, run)

    monkeypatch.setattr(destination_class, "open", open_and_record)
    return runs
