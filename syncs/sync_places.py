"""Where a mirror or upsert sync's state says its members are: the destination and target its runs sent them to.

The state records what one place holds. Pointed at another place under the same name (a new list id, audience or
destination), a run would send the new place only the members whose rows changed, and remove members who leave
from the place they never reached, while the old place keeps them all, opt-outs included. So a run whose sync
holds members sent to another place is blocked, with the two ways out: empty the old place first (point it back,
`--remove-all`, point it at the new one, `--add-back`), or start afresh at the new place (`--retarget`), leaving
the old one as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import duckdb

from syncs import state
from syncs.config import SyncSpec
from syncs.destinations.base import Mode
from syncs.sync_names import MEMBER_TABLES, PLACE_TABLE, count_rows, delete_member_state

S = state.S
PLACE_MODES = frozenset({Mode.MIRROR, Mode.UPSERT})  # a send_once ledger and an export's files hold no members
RETARGETED_GUARD = "retargeted"
FRESH_START = "#retarget"


def place_of(sync: SyncSpec) -> str:
    """The sync's destination and target as JSON. Target fields left at their defaults are left out, so a new
    optional field in a later version does not make every sync look moved."""
    target = sync.target.model_dump(mode="json", exclude_defaults=True)
    where = {"destination": sync.destination, "type": sync.destination_type, "target": target}
    return json.dumps(where, sort_keys=True)


def describe(place: str) -> str:
    """`hooks (webhook) {"topic": "audience"}`: for messages."""
    where = json.loads(place)
    return f"{where['destination']} ({where['type']}) {json.dumps(where['target'], sort_keys=True)}"


@dataclass(frozen=True)
class Moved:
    """A sync pointed at another place than the one its state holds members of."""

    sync_name: str
    mode: Mode
    recorded: str  # place_of, as its runs recorded it
    current: str
    members: int  # settled and written-ahead members
    unconfirmed: int  # runs whose work the old place has not confirmed yet (a Google job)

    def held(self) -> str:
        unconfirmed = f" and {self.unconfirmed} run(s) of work not confirmed yet" if self.unconfirmed else ""
        return f"{self.members} member(s){unconfirmed}"

    def blocked(self) -> str:
        name = self.sync_name
        move = (
            f"To move the audience, point it back and run `tidings run {name} --remove-all` (until it warns of no "
            f"unconfirmed run), then point it at the new place and run `tidings run {name} --add-back`; to leave"
            if self.mode is Mode.MIRROR
            else "An upsert sync never removes its members; to leave"
        )
        return (
            f"{RETARGETED_GUARD}: sync {name!r} now points at {describe(self.current)}, but its state holds "
            f"{self.held()} sent to {describe(self.recorded)}; a run would send the new place only changed members "
            f"and never remove the old place's. {move} the old place's members there and send every member to the "
            f"new one, run `tidings run {name} --retarget`"
        )

    def retargeting(self) -> str:
        """The decision of a run asked to retarget, before its guards decide whether it may."""
        return (
            f"{RETARGETED_GUARD}: the state of {self.held()} sent to {describe(self.recorded)} is dropped once the "
            f"guards pass, as asked (--retarget): they stay there; every member goes to {describe(self.current)}"
        )

    def retargeted(self) -> str:
        return (
            f"{RETARGETED_GUARD}: the state of {self.held()} sent to {describe(self.recorded)} was dropped, as "
            f"asked (--retarget): they stay there; every member is sent to {describe(self.current)}"
        )


def moved(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> Moved | None:
    """The sync's move, if its state holds members of a place other than the one it is pointed at now. None too
    when no place is on record (state from before places were recorded: taken to be where the sync points)."""
    if sync.mode not in PLACE_MODES:
        return None
    row = con.execute(f"select place from {S}.{PLACE_TABLE} where sync_name = ?", [sync.name]).fetchone()
    current = place_of(sync)
    if row is None or row[0] == current:
        return None
    members = count_rows(con, sync.name, *MEMBER_TABLES)
    unconfirmed = count_rows(con, sync.name, "unconfirmed_deliveries")
    return Moved(sync.name, sync.mode, row[0], current, members, unconfirmed) if members or unconfirmed else None


def record(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """The place the sync's runs send to from now on."""
    if sync.mode not in PLACE_MODES:
        return
    with state.transaction(con):
        _write(con, sync)


def retarget(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """Start afresh at the place the sync points at: its members, unsettled work and row errors go (the old place
    keeps its members), in one transaction with the new place's record. Run history and guard marks stay."""
    with state.transaction(con):
        delete_member_state(con, sync.name)
        _write(con, sync)


def fresh_start(sync: SyncSpec) -> SyncSpec:
    """The sync under a name that holds no state (`#` is never in a sync's name): a plan of it shows what a
    retargeted run would send."""
    return replace(sync, name=f"{sync.name}{FRESH_START}", renamed_from=())


def _write(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """`recorded_at` says since when the sync has pointed there."""
    con.execute(
        f"insert into {S}.{PLACE_TABLE} values (?, ?, ?) on conflict (sync_name) do update set "
        f"place = excluded.place, recorded_at = excluded.recorded_at where {PLACE_TABLE}.place <> excluded.place",
        [sync.name, place_of(sync), state.utcnow()],
    )
