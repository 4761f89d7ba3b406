"""Meta Custom Audiences (Graph API): add (`POST`) and remove (`DELETE`) `/{audience_id}/users`.

Rows are sent with the multi-key schema: each mapped field (`EMAIL`, `PHONE`, `FN`, ...) is normalized and
SHA-256 hashed per Meta's rules (syncs.identity), `EXTERN_ID` unhashed; a missing or unusable value is sent
as "" so the row still matches on its other keys. A row with no usable identifier fails (`no_identifier`).

Uploads of one operation within a run share a session (`session_id`, `batch_seq` from 1,
`estimated_num_total` from the planner). The request that reaches the planned total, or a batch shorter
than the batch size (the runner's last), carries `last_batch_flag`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pydantic import field_validator

from syncs import identity
from syncs.destinations._support import (
    fail_all,
    fail_batch_for_error,
    fail_batch_for_response,
    http_client,
    secret_from_env,
)
from syncs.destinations.base import (
    Destination,
    DestinationSettings,
    Mode,
    Operation,
    OutboundRow,
    RowOutcome,
    RunInfo,
    SyncTarget,
    register,
)
from syncs.http import DestinationHTTPError

MAX_ROWS_PER_REQUEST = 10_000


# Multi-key schema order and each key's normalizer (given all of a row's fields, for country-aware keys).
NORMALIZERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "EXTERN_ID": lambda f: identity.meta_extern_id(f.get("EXTERN_ID")),
    "EMAIL": lambda f: identity.meta_email(f.get("EMAIL")),
    "PHONE": lambda f: identity.meta_phone(f.get("PHONE"), f.get("COUNTRY")),
    "FN": lambda f: identity.meta_name(f.get("FN")),
    "LN": lambda f: identity.meta_name(f.get("LN")),
    "ZIP": lambda f: identity.meta_zip(f.get("ZIP"), f.get("COUNTRY")),
    "CT": lambda f: identity.meta_city(f.get("CT")),
    "ST": lambda f: identity.meta_state(f.get("ST")),
    "COUNTRY": lambda f: identity.meta_country(f.get("COUNTRY")),
    "DOBY": lambda f: identity.meta_doby(f.get("DOBY")),
    "GEN": lambda f: identity.meta_gender(f.get("GEN")),
}
UNHASHED = frozenset({"EXTERN_ID"})


def hashed_row(schema: Sequence[str], fields: dict[str, Any]) -> list[str]:
    """One data row: each key normalized and hashed (EXTERN_ID as is), "" where there is no usable value."""
    values = []
    for key in schema:
        normalized = NORMALIZERS[key](fields)
        if normalized is None:
            values.append("")
        else:
            values.append(normalized if key in UNHASHED else identity.sha256_hex(normalized))
    return values


class MetaSettings(DestinationSettings):
    """`base_url` includes the Graph API version, e.g. https://graph.facebook.com/v21.0."""

    access_token_env: str

    @field_validator("concurrency")
    @classmethod
    def _one_batch_at_a_time(cls, value: int) -> int:
        # Batches sent side by side reach Meta out of order, and a session refuses a batch_seq below one it saw.
        if value != 1:
            raise ValueError(
                "must be 1: Meta takes a session's batches in batch_seq order; "
                "raise batch_size (up to 10,000 rows per request) for larger uploads"
            )
        return value


class MetaTarget(SyncTarget):
    audience_id: str


class _Session:
    def __init__(self, estimated_total: int) -> None:
        self.session_id = secrets.randbelow(2**62) + 1
        self.batch_seq = 0
        self.sent = 0
        self.estimated_total = estimated_total
        self.finished = False


@register
class MetaCustomAudiencesDestination(Destination):
    type_name = "meta_custom_audiences"
    channel = "ads"
    modes = frozenset({Mode.MIRROR, Mode.UPSERT})
    max_batch_size = MAX_ROWS_PER_REQUEST
    default_requests_per_second = 5.0
    Settings = MetaSettings
    Target = MetaTarget
    optional_fields = frozenset(NORMALIZERS)
    identity_fields = frozenset(NORMALIZERS)  # Meta matches on the whole hashed tuple
    normalized_identity_kinds = MappingProxyType({"EMAIL": "email", "PHONE": "phone"})
    accepts_extra_fields = False

    @classmethod
    def sent_identity(cls, fields: Mapping[str, Any]) -> str | None:
        schema = [key for key in NORMALIZERS if key in fields]
        values = hashed_row(schema, dict(fields))
        return json.dumps(dict(zip(schema, values, strict=True))) if any(values) else None

    def __init__(self, name: str, settings: MetaSettings, target: MetaTarget) -> None:
        super().__init__(name, settings, target)
        self.token = secret_from_env(settings.access_token_env, name)
        self.http = http_client(self, settings)
        self.run_info: RunInfo | None = None
        self._sessions: dict[Operation, _Session] = {}

    def open(self, run: RunInfo) -> None:
        self.run_info, self._sessions = run, {}

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        if op is Operation.SEND:
            return fail_all(rows, "unsupported_operation", "audiences take members, not sends", permanent=True)
        schema = [key for key in NORMALIZERS if any(key in row.fields for row in rows)]
        sendable, outcomes = [], []
        for row in rows:
            values = hashed_row(schema, row.fields)
            if any(values):
                sendable.append((row, values))
            else:
                outcomes.append(
                    RowOutcome.failure(
                        row.key, "no_identifier", "no usable identifier after normalization", permanent=True
                    )
                )
        if sendable:
            outcomes += self._upload(op, schema, sendable, last_hint=len(rows) < self.batch_size)
        return outcomes

    def _session(self, op: Operation) -> _Session:
        session = self._sessions.get(op)
        if session is None or session.finished:
            estimated = self.run_info.estimated_rows if self.run_info else 0
            session = self._sessions[op] = _Session(estimated)
        return session

    def _upload(
        self, op: Operation, schema: list[str], sendable: list[tuple[OutboundRow, list[str]]], *, last_hint: bool
    ) -> list[RowOutcome]:
        rows = [row for row, _ in sendable]
        session = self._session(op)
        session.batch_seq += 1
        session.sent += len(sendable)
        last = last_hint or (session.estimated_total > 0 and session.sent >= session.estimated_total)
        body = {
            "access_token": self.token,
            "payload": {"schema": schema, "data": [values for _, values in sendable]},
            "session": {
                "session_id": session.session_id,
                "batch_seq": session.batch_seq,
                "last_batch_flag": last,
                "estimated_num_total": max(session.estimated_total, session.sent),
            },
        }
        method = "DELETE" if op is Operation.REMOVE else "POST"
        try:
            response = self.http.request(method, f"/{self.target.audience_id}/users", json=body)
        except DestinationHTTPError as error:
            return fail_batch_for_error(rows, error)
        if not response.ok:
            return fail_batch_for_response(rows, response, f"Meta {method} users")
        session.finished = last
        invalid = set((response.json().get("invalid_entry_samples") or {}).keys())
        return [
            RowOutcome.failure(row.key, "invalid_entry", "Meta rejected this row's identifiers", permanent=True)
            if invalid.intersection(values)
            else RowOutcome.success(row.key, destination_ref=str(session.session_id))
            for row, values in sendable
        ]

    def close(self, *, success: bool) -> None:
        self.http.close()
