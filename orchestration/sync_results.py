"""Turning a sync engine `SyncResult` into what Dagster shows: metadata, an observation or a failure.

Everything here comes from the engine's counters and its already-masked preview: no raw row values, no
secrets (DESIGN invariant 5).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from syncs.engine import SyncResult

FAILED_STATUSES = frozenset({"failed", "blocked", "locked"})
# A destination that was down or a lock another run held may be gone minutes later; a guard's verdict will not.
RETRIED_STATUSES = frozenset({"failed", "locked"})
PREVIEW_ROWS = 20


def sync_metadata(result: SyncResult) -> dict[str, dg.RawMetadataValue]:
    planned = result.planned
    metadata: dict[str, dg.RawMetadataValue] = {
        "status": result.status,
        "mode": result.mode,
        "sync_run_id": result.run_id,
        "rows_planned_add": planned.add,
        "rows_planned_change": planned.change,
        "rows_planned_remove": planned.remove,
        "rows_unchanged": planned.unchanged,
        "rows_sent": result.sent,
        "rows_failed": result.failed,
        "rows_removed": result.removed,
        "rows_skipped": result.skipped,
        "duration_seconds": float(result.duration_seconds),
        "rows_per_second": float(result.rows_per_second or 0.0),
        "delivery_seconds": float(result.delivery_seconds),
        "guard_decisions": dg.MetadataValue.json(_jsonable(result.guard_decisions)),
        "row_errors_by_code": dg.MetadataValue.json(dict(result.error_summary or {})),
        "rows_in_error": result.rows_in_error,
        "rows_in_error_permanent": result.rows_in_error_permanent,
    }
    if result.export_paths:
        metadata["export_path"] = dg.MetadataValue.path(str(result.export_paths[0]))
        metadata["export_paths"] = dg.MetadataValue.json([str(path) for path in result.export_paths])
    if result.message:
        metadata["message"] = result.message
    if result.warnings:
        metadata["warnings"] = dg.MetadataValue.json(list(result.warnings))
    return metadata


def report_sync_result(
    asset_key: dg.AssetKey, result: SyncResult
) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
    """A materialization for a real run, an observation (with the masked preview) for a dry run.

    A dry run changes nothing at the destination, so it must not count as a materialization: it would mark
    the sync as up to date and satisfy schedules and automation that wait for a real delivery.
    """
    metadata = sync_metadata(result)
    if result.status in FAILED_STATUSES:
        raise dg.Failure(
            description=f"sync {result.sync_name} {result.status}: {result.message or 'see row errors'}",
            metadata=metadata,
            allow_retries=result.status in RETRIED_STATUSES,
        )
    if result.status == "dry_run":
        metadata["preview"] = dg.MetadataValue.md(preview_table(result.preview or []))
        yield dg.AssetObservation(asset_key=asset_key, metadata=metadata)
        return
    yield dg.MaterializeResult(metadata=metadata)


def preview_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of the first masked preview rows."""
    if not rows:
        return "_nothing to send_"
    shown = list(rows[:PREVIEW_ROWS])
    columns = list(dict.fromkeys(column for row in shown for column in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in shown]
    if len(rows) > PREVIEW_ROWS:
        lines.append(f"\n_{len(rows) - PREVIEW_ROWS} more rows not shown_")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda item: getattr(item, "__dict__", str(item))))
