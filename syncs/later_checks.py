"""Work earlier runs handed a destination that `confirms_later` (a Google Customer Match job, processed hours after
the run), checked before a run plans, so a failure there is sent again instead of staying acknowledged:

- done: forgotten;
- failed: its rows are planned again (`state.redo_delivery`): the members it sent are re-sent, the ones it removed
  are removed again (or added, when back in the model); the run reports it as a warning;
- pending: checked again next run, with a warning once it has taken more than `PENDING_WARNING_AFTER`; meanwhile
  the run tells the destination which of its members that work still adds or removes (`in_flight`);
- pending or unknown after `GIVE_UP_AFTER`: a warning, and no longer checked.

Only mirror and upsert syncs are checked: their state says what the destination holds, so it can be planned again.
Dry runs and retries of rows in error do not check: they change no state beyond their own rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import duckdb
import pyarrow as pa

from syncs import state
from syncs.config import Project, SyncSpec
from syncs.destinations.base import LaterCheck, Mode
from syncs.identity_release import RETIRED_MARKER
from syncs.logs import get_logger, log_event
from syncs.sql_text import literal

MEMBER_MODES = frozenset({Mode.MIRROR, Mode.UPSERT})  # a failed send_once or export is not re-sent from state
PENDING_WARNING_AFTER = timedelta(days=1)  # Google: a job takes up to 24 hours
GIVE_UP_AFTER = timedelta(days=7)

log = get_logger("later_checks")


@dataclass
class EarlierWork:
    warnings: list[str] = field(default_factory=list)  # for the run's operator
    pending: list[str] = field(default_factory=list)  # refs the destination is still processing


def check_earlier_deliveries(
    con: duckdb.DuckDBPyConnection, project: Project, sync: SyncSpec, run_id: str
) -> EarlierWork:
    """Settle what the destination now says of the sync's unconfirmed work."""
    records = state.unconfirmed_deliveries(con, sync.name)
    work = EarlierWork()
    if not records:
        return work
    checks = project.destination_for(sync).check_later([ref for ref, _, _ in records])
    now = state.utcnow()
    for ref, earlier, recorded_at in records:
        check = checks.get(ref) or LaterCheck("unknown")
        age = now - recorded_at
        log_event(log, "later_check", sync=sync.name, run_id=run_id, earlier_run=earlier, ref=ref, state=check.state)
        if check.state == "done":
            state.forget_delivery(con, sync.name, ref)
        elif check.state == "failed":
            resent, removals = state.redo_delivery(con, sync.name, ref, run_id)
            work.warnings.append(
                f"{check.reason} for run {earlier} ({ref}): its {resent} members and {removals} removals "
                "still current are sent again"
            )
        elif age >= GIVE_UP_AFTER:
            state.forget_delivery(con, sync.name, ref)
            work.warnings.append(
                f"run {earlier}'s delivery ({ref}) is still {check.state} at the destination after {age.days} "
                "days: no longer checked"
            )
        elif check.state == "pending":
            work.pending.append(ref)
            if age >= PENDING_WARNING_AFTER:
                hours = int(age.total_seconds() // 3600)
                work.warnings.append(f"run {earlier}'s delivery ({ref}) is still being processed after {hours} hours")
    return work


def in_flight(
    con: duckdb.DuckDBPyConnection, sync_name: str, pending: list[str], plan_table: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fields of members that pending earlier work still adds or removes, where this plan sends the opposite to the
    same member (its key, or the key a retirement was made for): (added then and removed or retired now, removed or
    retired then and added or changed now). The destination may process the two in either order."""
    if not pending:
        return [], []
    marker = literal(RETIRED_MARKER)
    with state.registered(con, "pending_refs", pa.table({"ref": pa.array(pending, pa.string())})):
        added = con.execute(
            f"select s.row_fields from {state.S}.sync_state s where s.sync_name = ? and s.row_fields is not null "
            "and s.destination_ref in (select ref from pending_refs) and s.row_key in "
            f"(select split_part(row_key, {marker}, 1) from {plan_table} where action in ('remove', 'retire'))",
            [sync_name],
        ).fetchall()
        removed = con.execute(
            f"select r.row_fields from {state.S}.unconfirmed_removals r where r.sync_name = ? "
            f"and r.destination_ref in (select ref from pending_refs) and split_part(r.row_key, {marker}, 1) in "
            f"(select row_key from {plan_table} where action in ('add', 'change'))",
            [sync_name],
        ).fetchall()
    return [json.loads(fields) for (fields,) in added], [json.loads(fields) for (fields,) in removed]
