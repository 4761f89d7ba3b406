"""What a sync run shows in Dagster: its counts, row errors, and the destination's warnings."""

from __future__ import annotations

import dagster as dg
import pytest

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


@pytest.mark.parametrize(("status", "retried"), [("failed", True), ("locked", True), ("blocked", False)])
def test_a_failed_or_locked_run_may_be_retried_but_a_blocked_one_not(status: str, retried: bool) -> None:
    """A destination that was down or a lock another run held may be gone at the retry; a guard's verdict not."""
    result = SyncResult("r3", "winback_mail", "send_once", status, message="why")
    with pytest.raises(dg.Failure) as failure:
        list(report_sync_result(dg.AssetKey(["syncs", "winback_mail"]), result))
    assert failure.value.allow_retries is retried


def test_rows_still_in_error_are_shown_on_a_run_that_sent_nothing() -> None:
    """A retried run whose rows failed for good before plans nothing and succeeds: the rows it leaves in error are
    on its materialization all the same."""
    result = SyncResult("r4", "winback_mail", "mirror", "success", rows_in_error=3, rows_in_error_permanent=2)
    [materialization] = list(report_sync_result(dg.AssetKey(["syncs", "winback_mail"]), result))
    assert isinstance(materialization, dg.MaterializeResult)
    assert (materialization.metadata["rows_in_error"], materialization.metadata["rows_in_error_permanent"]) == (3, 2)
