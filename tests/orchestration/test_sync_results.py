"""What a sync run shows in Dagster: its counts, row errors, and the destination's warnings."""

from __future__ import annotations

import dagster as dg

from orchestration.sync_results import report_sync_result, sync_metadata
from syncs.engine import SyncResult

DROP_WARNING = "winback_r1.csv was delivered without its manifest; the next run of the sync puts it in place"


def test_a_runs_warnings_are_materialization_metadata() -> None:
    result = SyncResult(
        "r1",
        "winback_mail",
        "send_once",
        "success",
        sent=5,
        message=f"5 rows delivered, 0 failed; warning: {DROP_WARNING}",
    )
    result.warnings = [DROP_WARNING]
    [materialization] = list(report_sync_result(dg.AssetKey(["sync", "winback_mail"]), result))
    assert isinstance(materialization, dg.MaterializeResult)
    assert materialization.metadata["warnings"] == dg.MetadataValue.json([DROP_WARNING])


def test_a_run_without_warnings_has_no_warnings_entry() -> None:
    assert "warnings" not in sync_metadata(SyncResult("r2", "winback_mail", "send_once", "success"))
