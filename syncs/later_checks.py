"""Work earlier runs handed a destination that `confirms_later` (a Google Customer Match job, processed hours after
the run), checked before a run plans, so a failure there is sent again instead of staying acknowledged:

- done: forgotten;
- failed: its rows are planned again (`redo`): the members it sent are re-sent, the ones it removed or retired are
  removed again; the run reports it as a warning;
- pending: checked again next run, with a warning once pending for more than `PENDING_WARNING_AFTER`, or at once
  when part of it already failed; meanwhile the run tells the destination which of its members that work still
  adds or removes (`in_flight`), so it can hold an opposite operation on them;
- unknown (the destination does not report it): a warning every run; it holds opposite operations for
  `UNKNOWN_IN_FLIGHT_FOR` only, so an opt-out is not held for long behind work nobody can confirm;
- pending or unknown after `GIVE_UP_AFTER`: a warning, and no longer checked (a part that failed is planned again);
  not while the status search itself fails, so a failure it saw before is not dropped unseen.

Only mirror and upsert syncs are checked: their state says what the destination holds, so it can be planned again.
Dry runs send nothing and do not check; a retry of rows in error does not check either (it plans only those rows)
but treats every unconfirmed piece of work as in flight.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import duckdb
import pyarrow as pa

from syncs import state
from syncs.config import Project, SyncSpec
from syncs.destinations.base import LaterCheck, Mode
from syncs.identity_release import RETIRED_MARKER, IdentityField, identity_sql
from syncs.logs import get_logger, log_event
from syncs.sql_text import literal

MEMBER_MODES = frozenset({Mode.MIRROR, Mode.UPSERT})  # a failed send_once or export is not re-sent from state
PENDING_WARNING_AFTER = timedelta(days=1)  # Google: a job takes up to 24 hours
UNKNOWN_IN_FLIGHT_FOR = timedelta(days=2)  # work the destination does not report holds opposite operations this long
GIVE_UP_AFTER = timedelta(days=7)
MARKER = literal(RETIRED_MARKER)

log = get_logger("later_checks")


@dataclass
class EarlierWork:
    warnings: list[str] = field(default_factory=list)  # for the run's operator
    in_flight: list[str] = field(default_factory=list)  # refs the destination may still be processing


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
            planned = _planned_again(redo(con, project, sync, ref, earlier))
            work.warnings.append(f"{check.reason} for run {earlier} ({ref}): {planned}")
        elif age >= GIVE_UP_AFTER and not (check.state == "unknown" and check.reason):  # the search answered
            still = f"run {earlier}'s delivery ({ref}) is still {check.state} at the destination after {age.days} days"
            if check.state == "pending" and check.reason:  # part of it failed: that part must not be dropped
                planned = _planned_again(redo(con, project, sync, ref, earlier))
                work.warnings.append(f"{still}, and {check.reason}: {planned}; no longer checked")
            else:
                state.forget_delivery(con, sync.name, ref)
                work.warnings.append(f"{still}: no longer checked")
        else:
            if check.state == "pending" or age < UNKNOWN_IN_FLIGHT_FOR:
                work.in_flight.append(ref)
            work.warnings += _waiting(check, earlier, ref, age)
    return work


def _planned_again(redone: tuple[int, int]) -> str:
    resent, removals = redone
    return f"its {resent} members and {removals} removals still current are planned again"


def _waiting(check: LaterCheck, earlier: str, ref: str, age: timedelta) -> list[str]:
    """What the operator should know of work still pending, or that the destination does not report."""
    hours = int(age.total_seconds() // 3600)
    if check.state == "pending" and check.reason:
        return [f"{check.reason} for run {earlier} ({ref}); it is planned again once the rest of that work is done"]
    if check.state == "pending":
        if age < PENDING_WARNING_AFTER:
            return []
        return [f"run {earlier}'s delivery ({ref}) is still being processed after {hours} hours"]
    why = f": {check.reason}" if check.reason else ""
    holds = (
        f"its members' opposite operations wait for it up to {UNKNOWN_IN_FLIGHT_FOR.days} days"
        if age < UNKNOWN_IN_FLIGHT_FOR
        else "its members' opposite operations no longer wait for it"
    )
    return [f"run {earlier}'s delivery ({ref}) could not be checked{why}; {holds}"]


def unchecked(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> EarlierWork:
    """For a run that does not check (a retry): every unconfirmed piece of work counts as in flight, whatever a
    check would say of it now (the next full run settles it)."""
    return EarlierWork(in_flight=[ref for ref, _, _ in state.unconfirmed_deliveries(con, sync.name)])


def redo(
    con: duckdb.DuckDBPyConnection, project: Project, sync: SyncSpec, ref: str, earlier_run: str
) -> tuple[int, int]:
    """The destination failed the work `ref` of `earlier_run` (it may have applied part of it). In one transaction:
    - the members it sent whose state still comes from it get an empty row hash: re-sent, or removed once gone;
    - the identities it removed or retired are written ahead again (`pending_members`, run `redo:<earlier run>`, which
      the removal guard does not count twice), so the planner removes them again: under the member's own key when
      the sync holds nothing else for it (and adds it when back in the model), as a retirement when the member is
      held or written ahead otherwise, and not at all when the member's settled state holds that very identity
      (a later run added it back) with no newer write-ahead entry of another identity (one of the same identity is
      a run adding it back: the planner sends it again).
    Returns (members planned again, removals planned again)."""
    fields = project.mapped_identity_fields(sync)

    def same(held: str) -> str:
        """SQL: the fields `held` name the identity `r` removed."""
        if fields:
            return f"{identity_sql(held, fields)} = {identity_sql('r.row_fields', fields)}"
        return f"{held} = r.row_fields"

    removed = f"""
        select r.*, split_part(r.row_key, {MARKER}, 1) as member from {state.S}.unconfirmed_removals r
        where r.sync_name = $sync and r.destination_ref = $ref"""
    written_ahead = f"select row_key from {state.S}.pending_members where sync_name = $sync"
    with state.transaction(con):
        (resent,) = con.execute(
            f"update {state.S}.sync_state set row_hash = '' where sync_name = $sync and destination_ref = $ref",
            {"sync": sync.name, "ref": ref},
        ).fetchone()
        (redone,) = con.execute(
            f"""insert into {state.S}.pending_members
            select $sync,
                case when s.row_key is null and r.member not in ({written_ahead}) then r.row_key
                     else r.member || {MARKER} || md5(r.row_fields) end,
                r.row_fields, $run, $stamp
            from ({removed}) r
            left join {state.S}.sync_state s on s.sync_name = $sync and s.row_key = r.member
            where s.row_key is null or not ({same("s.row_fields")}) or exists (
                select 1 from {state.S}.pending_members p
                where p.sync_name = $sync and p.row_key = r.member and p.marked_at > s.synced_at
                    and not ({same("p.row_fields")}))""",
            {
                "sync": sync.name,
                "ref": ref,
                "run": f"{state.REDO_RUN_PREFIX}{earlier_run}",
                "stamp": state.write_ahead_stamp(con, sync.name),
            },
        ).fetchone()
        state.delete_delivery_records(con, sync.name, ref)
    return int(resent), int(redone)


def in_flight(
    con: duckdb.DuckDBPyConnection,
    sync_name: str,
    refs: list[str],
    plan_table: str,
    *,
    identity: Sequence[IdentityField],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fields of members that earlier work in flight adds or removes, where this plan sends the opposite to the same
    member (its key, or the key a retirement was made for): (added then and removed or retired now, removed or
    retired then and added or changed now). The destination may process the two in either order. Added members are
    read from what the work was recorded with when handed over (`state.record_handover`: what it added, even when
    the member's state has changed or gone since), from state (work recorded before adds were), and from the
    write-ahead entries of those runs for members whose commit a crash prevented. An
    entry of a row such a run failed counts too (which rows a run that died failed is not known): its removal
    waits for that run's work, a delay, where leaving it out could let the work re-add a member who left. So does
    a retirement a renamed sync's carry-over wrote for an identity such a run added (`syncs.sync_names`). A removed
    identity counts for another member too, one this plan adds or changes with that whole identity (`identity`,
    the sync's mapped identity fields): a customer who signed up again under a new key waits for that work as well."""
    if not refs:
        return [], []
    # `union`, not `union all`: a member a job added is in its record and, while its state names the job, in state.
    removing = f"select split_part(row_key, {MARKER}, 1) from {plan_table} where action in ('remove', 'retire')"
    with state.registered(con, "in_flight_refs", pa.table({"ref": pa.array(refs, pa.string())})):
        added = con.execute(
            f"""select row_fields from {state.S}.sync_state where sync_name = $sync and row_fields is not null
                and destination_ref in (select ref from in_flight_refs) and row_key in ({removing})
            union
            select row_fields from {state.S}.unconfirmed_adds where sync_name = $sync
                and destination_ref in (select ref from in_flight_refs) and row_key in ({removing})
            union
            select p.row_fields from {state.S}.pending_members p where p.sync_name = $sync and p.run_id in (
                select run_id from {state.S}.unconfirmed_deliveries
                where sync_name = $sync and destination_ref in (select ref from in_flight_refs))
                and not contains(p.row_key, {MARKER}) and p.row_key in ({removing})
            union
            select p.row_fields from {state.S}.pending_members p where p.sync_name = $sync and p.run_id in (
                select $carried || run_id from {state.S}.unconfirmed_deliveries
                where sync_name = $sync and destination_ref in (select ref from in_flight_refs))
                and split_part(p.row_key, {MARKER}, 1) in ({removing})""",
            {"sync": sync_name, "carried": state.CARRIED_RUN_PREFIX},
        ).fetchall()
        in_flight_removals = (
            f"select row_fields from {state.S}.unconfirmed_removals where sync_name = $sync "
            "and destination_ref in (select ref from in_flight_refs)"
        )
        adding = f"from {plan_table} where action in ('add', 'change')"
        removed = con.execute(
            f"""{in_flight_removals} and split_part(row_key, {MARKER}, 1) in (select row_key {adding})
                {_same_identity(in_flight_removals, adding, identity)}""",
            {"sync": sync_name},
        ).fetchall()
    return [json.loads(fields) for (fields,) in added], [json.loads(fields) for (fields,) in removed]


def _same_identity(in_flight_removals: str, adding: str, identity: Sequence[IdentityField]) -> str:
    """SQL: `union` the in-flight removals whose whole identity a row this plan adds or changes has (`row_fields`
    is each side's own column). Only a whole identity: a removal sharing one identifier with other members (a
    company's switchboard phone, a placeholder email) would hold each of their adds for as long as such removals
    keep coming; it unmatches them as before (team note on shared identities)."""
    if not identity:
        return ""
    whole = identity_sql("row_fields", list(identity))
    none = literal(json.dumps([None] * len(identity), separators=(",", ":")))
    return f"union {in_flight_removals} and {whole} <> {none} and {whole} in (select {whole} {adding})"
