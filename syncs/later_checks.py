"""Work earlier runs handed a destination that `confirms_later` (a Google Customer Match job, processed hours after
the run), checked before a run plans, so a failure there is sent again instead of staying acknowledged:

- done: forgotten;
- failed: its rows are planned again (`state.redo_delivery`): the members it sent are re-sent, the ones it removed
  are removed again (or added, when back in the model); the run reports it as a warning;
- still pending after `PENDING_WARNING_AFTER`: a warning, checked again next run;
- pending or unknown after `GIVE_UP_AFTER`: a warning, and no longer checked.

Dry runs and retries of rows in error do not check: they change no state beyond their own rows.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb

from syncs import state
from syncs.config import Project, SyncSpec
from syncs.destinations.base import LaterCheck
from syncs.logs import get_logger, log_event

PENDING_WARNING_AFTER = timedelta(days=1)  # Google: a job takes up to 24 hours
GIVE_UP_AFTER = timedelta(days=7)

log = get_logger("later_checks")


def check_earlier_deliveries(
    con: duckdb.DuckDBPyConnection, project: Project, sync: SyncSpec, run_id: str
) -> list[str]:
    """Settle what the destination now says of the sync's unconfirmed work; the warnings for the run's operator."""
    records = state.unconfirmed_deliveries(con, sync.name)
    if not records:
        return []
    checks = project.destination_for(sync).check_later([ref for ref, _, _ in records])
    now, warnings = state.utcnow(), []
    for ref, earlier_run, recorded_at in records:
        check = checks.get(ref) or LaterCheck("unknown")
        age = now - recorded_at
        log_event(
            log, "later_check", sync=sync.name, run_id=run_id, earlier_run=earlier_run, ref=ref, state=check.state
        )
        if check.state == "done":
            state.forget_delivery(con, sync.name, ref)
        elif check.state == "failed":
            resent, removals = state.redo_delivery(con, sync.name, ref, run_id)
            warnings.append(
                f"{check.reason} for run {earlier_run} ({ref}): its {resent} members and {removals} removals "
                "still current are sent again"
            )
        elif age >= GIVE_UP_AFTER:
            state.forget_delivery(con, sync.name, ref)
            warnings.append(
                f"run {earlier_run}'s delivery ({ref}) is still {check.state} at the destination after {age.days} "
                "days: no longer checked"
            )
        elif check.state == "pending" and age >= PENDING_WARNING_AFTER:
            hours = int(age.total_seconds() // 3600)
            warnings.append(f"run {earlier_run}'s delivery ({ref}) is still being processed after {hours} hours")
    return warnings
