"""State kept under a sync's name when the name goes away: carried over to the sync's new name (`renamed_from` in
its declaration), or found and forgotten once the sync is removed (`tidings forget`).

A sync's state is keyed by its name, so without this a renamed mirror would start empty: it adds every current
member again (harmless) but never removes the members who left between the old name's last run and the new
name's first, opt-outs included, and a renamed send_once sync would send every message of its model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import duckdb

from syncs import state
from syncs.config import ConfigError, ConfigProblem, SyncSpec
from syncs.destinations.base import Mode
from syncs.identity_release import RETIRED_MARKER, IdentityField, identity_sql
from syncs.logs import get_logger, log_event
from syncs.planner import drop_orphan_plans, member_state_sql
from syncs.sql_text import literal

S = state.S
log = get_logger("sync_names")

# What the destination holds or what a run still owes it, with the identifiers sent: carried over, and deleted
# when a removed sync is forgotten. One row per key in the first two; the sync's own row wins when both names have
# one (it is the newer).
KEYED_TABLES = ("sync_state", "row_errors")
OWED_TABLES = ("pending_members", "unconfirmed_deliveries", "unconfirmed_removals", "unconfirmed_adds")
# The record of messages sent (occurrence keys and refs, no contact data) and run history: carried over, and kept
# when a sync is forgotten, as the message models read every sync's ledger to never send an occurrence twice and to
# count frequency caps.
KEPT_TABLES = ("message_ledger", "message_acks", "sync_runs")
# Where the members were sent (`syncs.sync_places`): carried over, deleted on forget.
PLACE_TABLE = "sync_places"
# What a name holds at that place: members settled or written ahead, and work the destination has not confirmed.
MEMBER_TABLES = ("sync_state", "pending_members")
HOLDING_TABLES = (*MEMBER_TABLES, "unconfirmed_deliveries")
STATE_TABLES = (*KEYED_TABLES, *OWED_TABLES, *KEPT_TABLES)


class NameInUse(Exception):
    """A run of the sync under that name holds its lock: its state cannot move or go now."""


@dataclass(frozen=True)
class LeftoverState:
    """What a name no declared sync has holds (counts only: the rows carry customer data)."""

    sync_name: str
    members: int  # sync_state rows: members the destination holds (mirror, upsert) or rows last exported
    messages: int  # occurrences a send_once sync sent or wrote ahead (ledger and acknowledgements)
    unsettled: int  # write-ahead entries and work the destination has not confirmed (Google jobs)
    errors: int  # rows in error
    last_mode: str | None
    last_run_at: str | None
    carried_over_by: str | None  # the declared sync whose `renamed_from` lists it: its next run takes the state
    # Emptied with `--remove-all`: a sync declared under the name again sends no member until `--add-back` or
    # `tidings forget` (`state.emptied_syncs_sql`).
    emptied: bool = False

    def describe(self) -> str:
        held = (
            f"{self.members} member(s), {self.messages} message(s), {self.unsettled} unsettled, "
            f"{self.errors} row error(s)"
        )
        last = f"last run {self.last_run_at} ({self.last_mode})" if self.last_run_at else "no run on record"
        emptied = "; emptied by --remove-all" if self.emptied else ""
        return f"{self.sync_name}: {held}; {last}{emptied}"

    def advice(self) -> str:
        """What the state is and the ways out (`tidings validate`, the Dagster leftover-state sensor)."""
        if self.carried_over_by:
            return f"state of {self.describe()}; sync {self.carried_over_by}'s next run carries it over"
        name = self.sync_name
        removed = f"Removed? `tidings forget {name}` deletes its members' state (its message history stays)"
        if self.members and self.last_mode == "mirror":
            removed += (
                f", and the destination keeps its members: to take them out first, declare it again and run "
                f"`tidings run {name} --remove-all`"
            )
        return (
            f"state of {self.describe()}; no declared sync has that name. Renamed? add `renamed_from: {name}` to the "
            "sync's declaration, and its next run carries the state over (members who left since are removed, "
            f"messages sent are not sent again). {removed}."
        )


def has_state(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Rows under the name, a lock on it (a run that has written nothing yet), or the mark of an audience emptied
    with `--remove-all` (which the run history carries)."""
    return (
        any(
            con.execute(f"select 1 from {S}.{table} where sync_name = ? limit 1", [name]).fetchall()
            for table in (*KEYED_TABLES, *OWED_TABLES, "message_ledger", "message_acks", "sync_locks")
        )
        or state.emptied_by(con, name) is not None
    )


def carry_over(
    con: duckdb.DuckDBPyConnection, sync: SyncSpec, run_id: str, *, retiring: list[IdentityField]
) -> list[str]:
    """Move the state of the sync's earlier names to its name, under each earlier name's lock (the caller holds the
    sync's own), one transaction per name. `retiring`: the identity fields a mirror maps on a destination that knows
    members by them (`identity_release.identity_fields_mapped`), whose earlier values the destination may still
    hold. Returns a line per name carried over, for the run's warnings."""
    carried: list[str] = []
    for earlier in sync.renamed_from:
        if not has_state(con, earlier):
            continue
        _check_same_mode(con, sync, earlier)
        if not state.acquire_lock(con, earlier, run_id):
            raise NameInUse(
                f"a run of {earlier!r}, the earlier name of sync {sync.name!r}, holds that name's lock: its state is "
                "carried over once that run ends"
            )
        try:
            held = _counts(con, earlier)
            drop_orphan_plans(con, earlier)
            with state.transaction(con):
                if retiring:
                    _retire_replaced_identities(con, sync, earlier, retiring)
                _move_place(con, earlier, sync.name)
                _move(con, earlier, sync)
        finally:
            state.release_lock(con, earlier, run_id)
        log_event(log, "state.carried_over", sync=sync.name, earlier_name=earlier, **held)
        carried.append(
            f"carried over the state of {earlier!r}, this sync's earlier name ({held['members']} member(s), "
            f"{held['messages']} message(s)): they are this sync's now"
        )
    return carried


def _check_same_mode(con: duckdb.DuckDBPyConnection, sync: SyncSpec, earlier: str) -> None:
    """State of one mode means nothing to another (a mirror's members are no send_once ledger)."""
    last = con.execute(
        f"select mode from {S}.sync_runs where sync_name = ? and not dry_run and status <> 'locked' "
        "and mode <> 'unknown' order by started_at desc limit 1",
        [earlier],
    ).fetchone()
    if last is not None and last[0] != sync.mode.value:
        problem = (
            f"{earlier!r} last ran in mode {last[0]}, and this sync's mode is {sync.mode.value}: its state cannot "
            "carry over"
        )
        fix = f"remove {earlier!r} from `renamed_from` (then `tidings forget {earlier}`), or declare the same mode"
        raise ConfigError(
            [ConfigProblem(sync.source_file, f"model {sync.model}, sync {sync.name}", "renamed_from", problem, fix)]
        )


def _retire_replaced_identities(
    con: duckdb.DuckDBPyConnection, sync: SyncSpec, earlier: str, retiring: list[IdentityField]
) -> None:
    """Where both names hold a member (the sync ran under its new name before `renamed_from` was declared), the
    destination may hold identities of the earlier name's that the new name's state does not name: its settled
    fields, and those of its write-ahead entries. Each whose identity differs from the new name's (settled, or
    written ahead later) is written ahead as a retirement, which the next plan removes before it sends the member
    again (`planner`: a member with a retirement waiting is a change), and the earlier name's write-ahead entries of
    such members are dropped: their fields are retirements now.

    The entries' run is `carried:<earlier name>` (the removal guard names them, not counts them), or, for an
    identity the earlier name's work still in flight adds (a Google job not processed yet), `carried:<that run>`.
    Such an identity is retired even when the new name holds the same one: `later_checks.in_flight` counts it as
    added by that run, so the destination holds the removal, and the member's change, until that work is done, and
    the member's opt-out is not overtaken by it."""
    unconfirmed = f"select run_id from {S}.unconfirmed_deliveries where sync_name = $earlier"
    carried = literal(state.CARRIED_RUN_PREFIX)
    earlier_fields = f"""
        select s.row_key, s.row_fields, {carried} || coalesce(u.run_id, $earlier) as run_id,
               u.run_id is not null as flying
        from {S}.sync_state s left join {S}.unconfirmed_deliveries u
          on u.sync_name = s.sync_name and u.destination_ref = s.destination_ref
        where s.sync_name = $earlier
        union all
        select row_key, row_fields, {carried} || run_id, run_id in ({unconfirmed}) from {S}.pending_members
        where sync_name = $earlier and not contains(row_key, $marker)"""
    held = f"select row_key, row_fields from ({member_state_sql(sync)}) where not contains(row_key, $marker)"
    differs = f"{identity_sql('o.row_fields', retiring)} is distinct from {identity_sql('n.row_fields', retiring)}"
    con.execute(
        f"""insert into {S}.pending_members
        select distinct $name, o.row_key || $marker || md5(o.row_fields), o.row_fields, o.run_id, $stamp
        from ({earlier_fields}) o join ({held}) n using (row_key)
        where o.row_fields is not null and n.row_fields is not null and (o.flying or {differs})""",
        {
            "name": sync.name,
            "earlier": earlier,
            "marker": RETIRED_MARKER,
            "stamp": state.write_ahead_stamp(con, sync.name),
        },
    )
    con.execute(
        f"delete from {S}.pending_members where sync_name = $earlier and not contains(row_key, $marker) "
        f"and row_key in (select row_key from ({held}))",
        {"earlier": earlier, "marker": RETIRED_MARKER},
    )


def _move(con: duckdb.DuckDBPyConnection, earlier: str, sync: SyncSpec) -> None:
    """The earlier name's rows become the sync's; where both hold a member (or a row error), the sync's own wins. A
    mirror holds a member it has only written ahead too."""
    name = sync.name
    for table in KEYED_TABLES:
        own = f"select row_key from {S}.{table} where sync_name = $name"
        if table == "sync_state" and sync.mode is Mode.MIRROR:
            own += f" union select row_key from {S}.pending_members where sync_name = $name"
        con.execute(
            f"insert into {S}.{table} select * replace ($name as sync_name) from {S}.{table} "
            f"where sync_name = $earlier and row_key not in ({own})",
            {"name": name, "earlier": earlier},
        )
        con.execute(f"delete from {S}.{table} where sync_name = ?", [earlier])
    if sync.mode is Mode.SEND_ONCE:
        _keep_one_ledger_entry(con, name, earlier)
    for table in (*OWED_TABLES, *KEPT_TABLES):
        con.execute(f"update {S}.{table} set sync_name = ? where sync_name = ?", [name, earlier])


def _move_place(con: duckdb.DuckDBPyConnection, earlier: str, name: str) -> None:
    """Where the earlier name's members were sent (`syncs.sync_places`) becomes the sync's when the earlier name
    holds members or unconfirmed work: if the sync, run under its new name first, points elsewhere, its runs are
    then blocked until those members are moved, instead of removing them from a place they never reached.
    Otherwise the sync keeps its own."""
    owes = " union all ".join(f"select 1 from {S}.{table} where sync_name = $earlier" for table in HOLDING_TABLES)
    con.execute(
        f"insert or replace into {S}.{PLACE_TABLE} select $name, place, recorded_at from {S}.{PLACE_TABLE} "
        f"where sync_name = $earlier and exists ({owes})",
        {"name": name, "earlier": earlier},
    )
    con.execute(f"delete from {S}.{PLACE_TABLE} where sync_name = ?", [earlier])


def _keep_one_ledger_entry(con: duckdb.DuckDBPyConnection, name: str, earlier: str) -> None:
    """An occurrence both names wrote ahead (the sync ran under its new name before `renamed_from` was declared)
    keeps one `pending` row, the first run's, whose key is sent again; none once either name has it `sent`. Two
    would both turn `sent` when the re-send is acknowledged, and the ledger would count the message twice. Only
    occurrences with a pending row are ranked: the ledger holds every message ever sent."""
    pending = (
        f"select occurrence_key from {S}.message_ledger where sync_name in ($name, $earlier) and status = 'pending'"
    )
    con.execute(
        f"""delete from {S}.message_ledger where rowid in (
            select entry from (
                select l.rowid as entry, l.status, row_number() over (
                    partition by l.occurrence_key
                    order by l.status = 'pending', r.started_at nulls last, l.idempotency_key) as rank
                from {S}.message_ledger l left join {S}.sync_runs r on r.run_id = l.run_id
                where l.sync_name in ($name, $earlier) and l.occurrence_key in ({pending}))
            where status = 'pending' and rank > 1)""",
        {"name": name, "earlier": earlier},
    )


def leftovers(con: duckdb.DuckDBPyConnection, declared: dict[str, SyncSpec]) -> list[LeftoverState]:
    """State under names no declared sync has, by name: rows to carry over or forget, messages sent since the
    name was last forgotten, if ever (a send_once sync renamed without `renamed_from`), or the mark of an audience
    emptied with `--remove-all`."""
    owed = " union ".join(f"select sync_name from {S}.{table}" for table in (*KEYED_TABLES, *OWED_TABLES))
    sent_by_run = (
        f"select distinct sync_name, run_id from (select sync_name, run_id from {S}.message_ledger "
        f"union all select sync_name, run_id from {S}.message_acks)"
    )
    forgotten = (
        f"select sync_name, max(started_at) as forgotten_at from {S}.sync_runs where status = '{state.FORGOTTEN}' "
        "group by sync_name"
    )
    history = f"""
        select m.sync_name from ({sent_by_run}) m left join ({forgotten}) f using (sync_name)
        left join {S}.sync_runs r on r.run_id = m.run_id
        where f.forgotten_at is null or r.started_at > f.forgotten_at"""
    emptied = {name for (name, *_) in con.execute(state.emptied_syncs_sql()).fetchall()}
    names = {name for (name,) in con.execute(f"{owed} union {history}").fetchall()} | emptied
    found = sorted(name for name in names if name not in declared)
    carriers = {earlier: spec.name for spec in declared.values() for earlier in spec.renamed_from}
    return [
        LeftoverState(
            name,
            **_counts(con, name),
            **_last_run(con, name),
            carried_over_by=carriers.get(name),
            emptied=name in emptied,
        )
        for name in found
    ]


def count_rows(con: duckdb.DuckDBPyConnection, name: str, *tables: str) -> int:
    """The name's rows in `tables`, together."""
    return sum(
        int(con.execute(f"select count(*) from {S}.{table} where sync_name = ?", [name]).fetchone()[0])
        for table in tables
    )


def _counts(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, int]:
    return {
        "members": count_rows(con, name, "sync_state"),
        "messages": count_rows(con, name, "message_ledger", "message_acks"),
        "unsettled": count_rows(con, name, *OWED_TABLES),
        "errors": count_rows(con, name, "row_errors"),
    }


def _last_run(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str | None]:
    last = con.execute(
        f"select mode, started_at from {S}.sync_runs where sync_name = ? and status <> '{state.FORGOTTEN}' "
        "order by started_at desc limit 1",
        [name],
    ).fetchone()
    return (
        {"last_mode": last[0], "last_run_at": f"{last[1]:%Y-%m-%d %H:%M}"}
        if last
        else {"last_mode": None, "last_run_at": None}
    )


def delete_member_state(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """The name's members, unsettled work and row errors, inside the caller's transaction (`forget`, and a sync
    retargeted to another place, `syncs.sync_places`)."""
    for table in (*KEYED_TABLES, *OWED_TABLES):
        con.execute(f"delete from {S}.{table} where sync_name = ?", [name])


def forget(con: duckdb.DuckDBPyConnection, name: str, run_id: str) -> dict[str, int]:
    """Delete what a name holds of its members and unsettled work, under the name's lock; its message history and
    run history stay, with a `forgotten` run recording what went. Returns the counts deleted."""
    if not state.acquire_lock(con, name, run_id):
        raise NameInUse(f"a run of {name!r} holds its lock: try again once it ends")
    try:
        held = _counts(con, name)
        mode = _last_run(con, name)["last_mode"] or "unknown"
        gone = {"members": held["members"], "unsettled": held["unsettled"], "errors": held["errors"]}
        drop_orphan_plans(con, name)
        with state.transaction(con):
            delete_member_state(con, name)
            con.execute(f"delete from {S}.{PLACE_TABLE} where sync_name = ?", [name])
            (latest,) = con.execute(f"select max(started_at) from {S}.sync_runs where sync_name = ?", [name]).fetchone()
            now = state.utcnow() if latest is None else max(state.utcnow(), latest + timedelta(microseconds=1))
            message = ", ".join(f"{count} {what}" for what, count in gone.items()) + " forgotten; messages kept"
            con.execute(
                f"insert into {S}.sync_runs (run_id, sync_name, mode, dry_run, status, started_at, finished_at, "
                "message) values (?, ?, ?, false, ?, ?, ?, ?)",
                [run_id, name, mode, state.FORGOTTEN, now, now, message],
            )
    finally:
        state.release_lock(con, name, run_id)
    log_event(log, "state.forgotten", sync=name, **gone)
    return gone
