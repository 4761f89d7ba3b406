"""The one small interface every destination implements, and the registry that finds them by type name.

A destination receives already-mapped rows (`OutboundRow.fields` use the destination's own field names,
as declared in the sync's `mapping`), normalizes and validates them per the provider's published rules,
sends them in batches of at most `max_batch_size`, and answers with exactly one `RowOutcome` per row.
The runner commits state only for rows whose outcome is `ok`; every other row is retried on a later run
unless its outcome is `permanent`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Literal, overload

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

IdentityKind = Literal["email", "phone"]


class Mode(StrEnum):
    MIRROR = "mirror"  # add, update and remove members this sync added
    UPSERT = "upsert"  # add and update, never remove
    SEND_ONCE = "send_once"  # each row is a message occurrence, delivered at most once ever
    EXPORT = "export"  # a full file each run


class Operation(StrEnum):
    UPSERT = "upsert"  # add or update a member/contact
    REMOVE = "remove"  # remove a member this sync added (mirror only)
    SEND = "send"  # deliver one message occurrence (send_once only)


@dataclass(frozen=True)
class OutboundRow:
    """One row on its way out. `fields` may hold raw PII: never log or repr it."""

    key: str
    fields: dict[str, Any] = field(repr=False)
    idempotency_key: str | None = None


class OutboundBatch(Sequence[OutboundRow]):
    """One batch as the runner streams it from the plan: its keys as columns, its rows built only when a
    connector first reads the batch as a sequence (building thousands of row objects costs more than sending
    them to a fast endpoint). `json_rows`, when the runner could render them in the warehouse, holds each row
    as the JSON text of `{"key", "idempotency_key", "fields"}` for connectors whose payload is that JSON.
    `fields` holds the rows' fields as Arrow columns named by destination field, with the warehouse's own types
    (a DECIMAL(18,2) stays one, an unsigned 64-bit integer stays unsigned) for connectors that write Arrow; it is
    None for removals, whose fields are the ones last sent."""

    __slots__ = ("_build", "_rows", "fields", "idempotency_keys", "json_rows", "keys")

    def __init__(
        self,
        keys: list[str],
        idempotency_keys: list[str | None],
        build_rows: Callable[[], list[OutboundRow]],
        json_rows: list[str] | None = None,
        fields: pa.Table | None = None,
    ) -> None:
        self.keys = keys
        self.idempotency_keys = idempotency_keys
        self.json_rows = json_rows
        self.fields = fields
        self._build: Callable[[], list[OutboundRow]] | None = build_rows
        self._rows: list[OutboundRow] | None = None

    @property
    def rows(self) -> list[OutboundRow]:
        if self._rows is None:
            assert self._build is not None
            self._rows, self._build = self._build(), None
        return self._rows

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> OutboundRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[OutboundRow]: ...

    def __getitem__(self, index: int | slice) -> OutboundRow | list[OutboundRow]:
        return self.rows[index]

    def __iter__(self) -> Iterator[OutboundRow]:
        return iter(self.rows)

    def __repr__(self) -> str:  # rows hold PII: show the size only
        return f"OutboundBatch({len(self)} rows)"


@dataclass(frozen=True)
class RowOutcome:
    """What happened to one row. `message` must never contain raw PII or secrets."""

    key: str
    ok: bool
    code: str | None = None
    message: str | None = None
    permanent: bool = False
    destination_ref: str | None = None
    cost: float | None = None

    @classmethod
    def success(cls, key: str, destination_ref: str | None = None, cost: float | None = None) -> RowOutcome:
        return cls(key=key, ok=True, destination_ref=destination_ref, cost=cost)

    @classmethod
    def failure(cls, key: str, code: str, message: str, *, permanent: bool = False) -> RowOutcome:
        return cls(key=key, ok=False, code=code, message=message, permanent=permanent)


@dataclass(frozen=True)
class DeferredOutcome:
    """What `close()` of a destination that `answers_at_close` returns: the one outcome shared by every row its
    `write` left unanswered (a file put in place, or not). The runner settles those rows from the plan in
    chunks, so neither side holds an object, or even a key, per row of the audience. `by_op` answers the rows of
    some operations otherwise (a remove job that ran when the create job could not)."""

    ok: bool
    destination_ref: str | None = None
    code: str | None = None
    message: str | None = None
    permanent: bool = False
    by_op: Mapping[Operation, DeferredOutcome] = field(default_factory=dict)

    @classmethod
    def success(cls, destination_ref: str | None = None) -> DeferredOutcome:
        return cls(ok=True, destination_ref=destination_ref)

    @classmethod
    def failure(cls, code: str, message: str, *, permanent: bool = False) -> DeferredOutcome:
        return cls(ok=False, code=code, message=message, permanent=permanent)

    def for_op(self, op: Operation) -> DeferredOutcome:
        return self.by_op.get(op, self)

    def acknowledged_refs(self) -> list[str]:
        """The refs of the work acknowledged, whichever operation's rows it answers."""
        outcomes = [self, *self.by_op.values()]
        return list(dict.fromkeys(o.destination_ref for o in outcomes if o.ok and o.destination_ref))


@dataclass(frozen=True)
class LaterCheck:
    """What a destination that `confirms_later` says, at a later run, of work an earlier run handed it (one
    `DeferredOutcome.destination_ref`): `done`, still `pending`, `failed`, or `unknown` when it could not tell (the
    destination was unreachable, or no longer reports the work). `reason`, never row values: why it failed; for
    `pending`, why part of it already failed while the rest still runs; for `unknown`, why it could not tell."""

    state: Literal["done", "pending", "failed", "unknown"]
    reason: str | None = None


class AcknowledgedRows(Sequence[RowOutcome]):
    """Every row of an `OutboundBatch` acknowledged in one answer, in the batch's order: what a connector may
    return instead of one `RowOutcome` per row, so a fully successful batch settles without per-row objects."""

    __slots__ = ("destination_refs", "keys")

    def __init__(self, keys: list[str], destination_refs: list[str | None] | None = None) -> None:
        self.keys = keys
        self.destination_refs = destination_refs

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> RowOutcome: ...

    @overload
    def __getitem__(self, index: slice) -> list[RowOutcome]: ...

    def __getitem__(self, index: int | slice) -> RowOutcome | list[RowOutcome]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        ref = self.destination_refs[index] if self.destination_refs is not None else None
        return RowOutcome.success(self.keys[index], destination_ref=ref)


class DestinationSettings(BaseModel):
    """Settings declared once per destination in destinations.yml. Secrets are env var *names* (`*_env`)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    batch_size: int | None = None
    requests_per_second: float | None = None
    concurrency: int = 1
    timeout_seconds: float = 30.0
    max_retries: int = 6


class SyncTarget(BaseModel):
    """Per-sync target inside a destination (list id, audience id, file name...)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class RunInfo:
    """What a destination may need to know about the run it serves."""

    run_id: str
    sync_name: str
    mode: Mode
    estimated_rows: int = 0
    dry_run: bool = False
    # send_once: earlier runs of this sync that died or failed while occurrences this run re-sends were pending.
    # They may have delivered those occurrences without recording it; a destination that cannot deduplicate
    # by idempotency key (a file drop) checks what these runs delivered before sending again.
    unsettled_runs: tuple[str, ...] = ()
    # The rows the run will hand over with each operation (its pass): the plan's exact counts; empty when unknown.
    estimated_rows_by_op: Mapping[Operation, int] = field(default_factory=dict)
    # The destination fields the sync's mapping declares, in mapping order: the fields every row carries (a file's
    # columns are known before its first row); empty when unknown.
    mapped_fields: tuple[str, ...] = ()
    # For a destination that `confirms_later`: members whose earlier work it is still processing, where this run
    # sends the opposite (added then and removed now, removed then and added now), with the fields sent then. It
    # may process the two in either order. Rows hold PII: kept out of the repr.
    added_in_flight: Sequence[Mapping[str, Any]] = field(default=(), repr=False)
    removed_in_flight: Sequence[Mapping[str, Any]] = field(default=(), repr=False)


class Destination(ABC):
    """Base class for a destination connector. Subclasses are registered with `@register`."""

    type_name: ClassVar[str]
    channel: ClassVar[str]  # "email" | "ads" | "direct_mail" | "file" | "webhook": groups sync assets in Dagster
    modes: ClassVar[frozenset[Mode]]
    max_batch_size: ClassVar[int]
    default_requests_per_second: ClassVar[float | None] = None
    Settings: ClassVar[type[DestinationSettings]] = DestinationSettings
    Target: ClassVar[type[SyncTarget]] = SyncTarget
    # Field names a sync's mapping must provide / may provide (destination-side names).
    required_fields: ClassVar[frozenset[str]] = frozenset()
    optional_fields: ClassVar[frozenset[str]] = frozenset()
    # True when the destination accepts arbitrary extra fields (merge fields, custom fields, properties).
    accepts_extra_fields: ClassVar[bool] = True
    # Names the connector fills itself (a file's `key` column), which a mapping may not use: a load-time error.
    reserved_fields: ClassVar[frozenset[str]] = frozenset()
    # Fields by which the destination knows a member (a list keyed by email, an audience matched on hashed
    # identifiers). When a mirror's change alters one, the planner also retires the previous identity.
    identity_fields: ClassVar[frozenset[str]] = frozenset()
    # Identity fields the connector sends with their case kept; the planner compares the others case-insensitively.
    case_sensitive_identity_fields: ClassVar[frozenset[str]] = frozenset()
    # Identity fields the connector normalizes beyond trim and case (Gmail dots, phone formats), by kind ("email"
    # or "phone"). With `sent_identity`, the planner finds members the destination holds as one although their
    # warehouse values differ, so one's removal does not take the other out
    # (`identity_release.release_shared_identities`).
    normalized_identity_kinds: ClassVar[Mapping[str, IdentityKind]] = MappingProxyType({})

    @classmethod
    def accepted_type_families(cls, target: SyncTarget) -> frozenset[str]:
        """Kinds of warehouse column types (`syncs.column_types.type_family`) the connector can send for `target`:
        scalars (text, numbers, booleans, dates, times, timestamps, UUIDs, JSON), unless it says otherwise."""
        return frozenset({"scalar"})

    @classmethod
    def sync_problems(cls, mode: Mode, settings: DestinationSettings, target: SyncTarget) -> list[tuple[str, str, str]]:
        """What a sync's declaration lacks that only its mode and its destination's settings together show, checked
        at load time: one (field, problem, fix) each, the field as the sync declares it (`target.event_name`)."""
        return []

    @classmethod
    def sent_identity(cls, fields: Mapping[str, Any]) -> str | None:
        """The identifiers the connector sends for a member with these (mapped) fields, as one comparable text;
        None when it sends none, or when the destination knows members only by the values as they are."""
        return None

    # True when the connector sends `OutboundBatch.json_rows` as they are: the runner then renders them in the
    # warehouse whenever the plan's field types allow it (`Plan.json_exact`).
    reads_json_rows: ClassVar[bool] = False
    # True when `close()` answers every row `write` left unanswered with one `DeferredOutcome` (a whole-file
    # export), instead of one `RowOutcome` per row.
    answers_at_close: ClassVar[bool] = False

    # True when a run's acknowledgement is a promise: `close()` names in `DeferredOutcome.destination_ref` work the
    # destination finishes later and may still fail (Google processes a job hours after it runs). The engine keeps
    # each such ref of a mirror or upsert run and, before later runs plan, asks `check_later`; the rows of a failed one
    # are sent again. One that also `answers_at_close` acknowledges its rows at close only, and the runner records
    # that work (with a mirror's removals in it) before `close`, from `handover_ref`.
    confirms_later: ClassVar[bool] = False

    def __init__(self, name: str, settings: DestinationSettings, target: SyncTarget) -> None:
        self.name = name
        self.settings = settings
        self.target = target

    @property
    def batch_size(self) -> int:
        return min(self.settings.batch_size or self.max_batch_size, self.max_batch_size)

    def open(self, run: RunInfo) -> None:  # noqa: B027 - optional hook
        """Called once before the first batch (start an upload session, open a spool file...)."""

    @abstractmethod
    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> Sequence[RowOutcome]:
        """Send one batch (len(rows) <= batch_size). Return outcomes for the rows that are settled now.

        Immediate destinations return one outcome per row (or `AcknowledgedRows` when every row of an
        `OutboundBatch` succeeded). A destination that `answers_at_close` (a file, a drop) may return fewer: the
        rows it leaves unanswered share the one answer of `close`. The runner passes an `OutboundBatch`; any
        sequence of rows must work.
        """

    def close(self, *, success: bool) -> DeferredOutcome | None:
        """Called once after the last batch. A destination that `answers_at_close` returns one `DeferredOutcome`
        for every row its `write` left unanswered; others return None."""
        return None

    def handover_ref(self) -> str | None:
        """For a destination that `confirms_later`: the ref `close(success=True)` is about to hand over, or None when
        it hands over nothing. The runner records it before `close`, so a process that dies while handing the work
        over (between two Google jobs' `:run`) leaves it on record, for later runs to hold against and check."""
        return None

    def uncertain_keys(self) -> Sequence[str]:
        """For a destination that `confirms_later` and `answers_at_close`: keys of rows `write` failed whose
        operation may be in the work handed over all the same (the answer to the request carrying it was lost). They
        are recorded with that work, so an opposite operation on the member waits for it; failed, they are sent
        again."""
        return ()

    def check_later(self, refs: Sequence[str]) -> Mapping[str, LaterCheck]:
        """For a destination that `confirms_later`: where the work behind each ref of earlier runs stands. Called
        on an instance of its own, never opened or closed: it releases what it uses before it returns."""
        return {}

    def run_warnings(self) -> list[str]:
        """What the operator of the run just closed should know beyond its row outcomes (a drop left without its
        manifest, a manifest check that failed): names and counts only, never row values. The run's message, its
        history row and its Dagster materialization carry them."""
        return []


_REGISTRY: dict[str, type[Destination]] = {}


def register(cls: type[Destination]) -> type[Destination]:
    if cls.type_name in _REGISTRY and _REGISTRY[cls.type_name] is not cls:
        raise ValueError(f"destination type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def destination_class(type_name: str) -> type[Destination]:
    from syncs.destinations import load_all

    load_all()
    try:
        return _REGISTRY[type_name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown destination type {type_name!r}; known types: {known}") from None


def registered_types() -> dict[str, type[Destination]]:
    from syncs.destinations import load_all

    load_all()
    return dict(_REGISTRY)
