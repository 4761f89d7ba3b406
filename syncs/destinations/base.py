"""The one small interface every destination implements, and the registry that finds them by type name.

A destination receives already-mapped rows (`OutboundRow.fields` use the destination's own field names,
as declared in the sync's `mapping`), normalizes and validates them per the provider's published rules,
sends them in batches of at most `max_batch_size`, and answers with exactly one `RowOutcome` per row.
The runner commits state only for rows whose outcome is `ok`; every other row is retried on a later run
unless its outcome is `permanent`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


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
    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        """Send one batch (len(rows) <= batch_size). Return outcomes for the rows that are settled now.

        Immediate destinations return one outcome per row. Deferred destinations (file drops) may return
        fewer and settle the rest in `close`.
        """

    def close(self, *, success: bool) -> Iterable[RowOutcome]:
        """Called once after the last batch. Returns outcomes for rows still unsettled (deferred writes); the runner
        consumes them in chunks, so a destination settling a whole audience may yield them lazily."""
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
