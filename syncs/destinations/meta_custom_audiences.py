"""Meta Custom Audiences (Graph API): add (`POST`) and remove (`DELETE`) `/{audience_id}/users`.

Rows are sent with the multi-key schema: each mapped field (`EMAIL`, `PHONE`, `FN`, ...) is normalized and
SHA-256 hashed per Meta's rules (syncs.identity), `EXTERN_ID` unhashed; a missing or unusable value is sent
as "" so the row still matches on its other keys. A row with no usable identifier fails (`no_identifier`). `ZIP`
keeps its first 5 digits in the US, or with no `COUNTRY` when it is US-shaped (a ZIP+4 with or without its hyphen);
`ST` is kept as Meta's SDK keeps it, so a state name is not mapped to its code.

Uploads of one operation within a run share a session (`session_id`, `batch_seq` from 1). Its
`estimated_num_total` is what the operation has yet to hand over when the session opens (the planner's count for
the operation, `RunInfo.estimated_rows_by_op`; without it, the run's total less the rows already handed over: exact
for a run's last operation, an upper bound for a mirror's removals), and the exact count on the request that ends
it. A session ends with `last_batch_flag` on the batch that hands over the operation's last planned row or on one
shorter than the batch size (the runner's last of a pass). One still open when the next operation starts, or at a
successful close (rows an exact multiple of the batch size, an unknown total, re-sends), is ended by sending the
last row Meta accepted in it again with the flag: Meta takes no empty batch, and adding or removing a member twice
changes nothing.

A request Meta may have processed is never sent again by the HTTP retries (only connect errors, 429 and 503 are):
sent again, its `batch_seq` would no longer increase, Meta would refuse it, and members it did add or remove would
be recorded as refused. Its rows fail retryably instead, and its session, whose content is unknown from then on,
takes no more batches: the next request opens a new one, and the old one is left for Meta to expire. A 400 that
refuses the session itself (a `batch_seq` that does not increase, a session already ended) fails its rows
retryably too (`session_refused`), and the next request also opens a new session.

Meta answers with `num_invalid_entries` and a sample of at most about 10 `invalid_entry_samples` (invalid value ->
reason). Rows holding a sampled value fail `invalid_entry`. When Meta counted more invalid rows than that, the
other rows are re-sent in halves, each its own request in the session, until each part's invalid rows are all
sampled, or all its rows are invalid, or `MAX_BISECT_DEPTH` is reached; rows still unaccounted for then fail
`invalid_entry` too, never reported delivered.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import requests
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
from syncs.http import NOT_PROCESSED_STATUSES, DestinationHTTPError
from syncs.logs import get_logger, log_event

log = get_logger("destinations.meta")

MAX_ROWS_PER_REQUEST = 10_000
# Answers to a users request that say Meta did not process it: the only ones the HTTP retries send again.
SESSION_REFUSED = (
    "Meta refused the upload session (a batch_seq that did not increase, or a session already ended); "
    "the rows are sent again in a new session"
)
# Halvings of a batch's unsampled rows while Meta counts invalid rows it did not sample: at most 2 + 4 + ... + 2**5 =
# 62 requests more for the batch (its smallest parts: 313 rows of 10,000), paid only by a batch with such rows.
MAX_BISECT_DEPTH = 5
SAMPLED = "Meta rejected this row's identifiers"
COUNTED = "Meta rejected this row's identifiers (counted among the invalid rows it did not sample)"
UNATTRIBUTED = (
    "Meta reported more invalid rows than it sampled, and re-sending this row's part in smaller parts did not "
    "tell which: it may be one of them"
)


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
    def __init__(self, expected: int) -> None:
        self.session_id = secrets.randbelow(2**62) + 1
        self.batch_seq = 0
        self.sent = 0  # rows of the requests Meta accepted, re-sends included
        self.expected = expected  # rows the operation had yet to hand over when the session opened (0: unknown)
        self.finished = False
        self.tail: tuple[list[str], list[str]] | None = None  # schema and values of the last row Meta accepted


@dataclass(frozen=True)
class _Answer:
    session_id: int
    invalid: int  # num_invalid_entries
    samples: frozenset[str]  # the invalid values Meta sampled


class _NotAccepted(Exception):
    """Meta did not accept a request; `fail(rows)` answers the rows it carried."""

    def __init__(self, fail: Callable[[Sequence[OutboundRow]], list[RowOutcome]]) -> None:
        super().__init__()
        self.fail = fail


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
        # A users request Meta may have processed (lost answer, 500, 502, 504) is never re-sent: a repeated
        # batch_seq is refused, and re-sending within the run could not tell it was applied.
        self.http = http_client(self, settings, resend_processed=False)
        self._planned = 0  # rows the planner gave the run, all operations together (0: unknown)
        self._planned_by_op: Mapping[Operation, int] = {}  # the same per operation, when the run knows them
        self._handed: Counter[Operation] = Counter()  # rows the runner has handed to `write` so far
        self._sessions: dict[Operation, _Session] = {}

    def open(self, run: RunInfo) -> None:
        self._planned, self._planned_by_op = run.estimated_rows, run.estimated_rows_by_op
        self._handed, self._sessions = Counter(), {}

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        if op is Operation.SEND:
            return fail_all(rows, "unsupported_operation", "audiences take members, not sends", permanent=True)
        for other in [o for o in self._sessions if o is not op]:
            self._finish(other)  # the runner starts a pass once the previous one is answered: that one is over
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
        planned, handed = self._progress(op)
        last = len(rows) < self.batch_size or 0 < planned <= handed + len(rows)
        if sendable:
            outcomes += self._upload(op, schema, sendable, last=last)
        self._handed[op] += len(rows)
        return outcomes

    def _progress(self, op: Operation) -> tuple[int, int]:
        """Rows the run plans to hand over for `op` (0: unknown) and has handed over so far: the operation's own
        when the run gives its count, else those of every operation together."""
        if op in self._planned_by_op:
            return self._planned_by_op[op], self._handed[op]
        return self._planned, self._handed.total()

    def _session(self, op: Operation) -> _Session:
        session = self._sessions.get(op)
        if session is None or session.finished:
            planned, handed = self._progress(op)
            session = self._sessions[op] = _Session(max(planned - handed, 0))
        return session

    def _abandon(self, op: Operation, session: _Session) -> None:
        """Send no more batches in `session`: Meta refused it, or may hold a batch of it whose answer was lost (so
        whether that batch counts, or even ended the session, is unknown). The operation's next request opens
        another; this one is left for Meta to expire."""
        del self._sessions[op]
        log_event(log, "meta.session_left_open", logging.WARNING, destination=self.name, session_id=session.session_id)

    def _upload(
        self, op: Operation, schema: list[str], sendable: list[tuple[OutboundRow, list[str]]], *, last: bool
    ) -> list[RowOutcome]:
        try:
            answer = self._post(op, schema, [values for _, values in sendable], last=last)
        except _NotAccepted as refused:
            return refused.fail([row for row, _ in sendable])
        return self._attribute(op, schema, sendable, answer, depth=0)

    def _post(self, op: Operation, schema: list[str], data: list[list[str]], *, last: bool) -> _Answer:
        """Send `data` as the next batch of the operation's session."""
        session = self._session(op)
        session.batch_seq += 1
        total = session.sent + len(data)
        body = {
            "access_token": self.token,
            "payload": {"schema": schema, "data": data},
            "session": {
                "session_id": session.session_id,
                "batch_seq": session.batch_seq,
                "last_batch_flag": last,
                "estimated_num_total": total if last else max(session.expected, total),
            },
        }
        method = "DELETE" if op is Operation.REMOVE else "POST"
        try:
            response = self.http.request(method, f"/{self.target.audience_id}/users", json=body)
        except DestinationHTTPError as error:
            self._abandon(op, session)
            raise _NotAccepted(partial(fail_batch_for_error, error=error)) from None
        if _refuses_session(response):
            self._abandon(op, session)
            raise _NotAccepted(partial(fail_all, code="session_refused", message=SESSION_REFUSED))
        if not response.ok:
            if response.status_code >= 500 and response.status_code not in NOT_PROCESSED_STATUSES:
                self._abandon(op, session)
            raise _NotAccepted(partial(fail_batch_for_response, response=response, what=f"Meta {method} users"))
        session.sent, session.finished, session.tail = total, last, (schema, data[-1])
        answer = response.json()
        samples = frozenset((answer.get("invalid_entry_samples") or {}).keys())
        return _Answer(session.session_id, int(answer.get("num_invalid_entries") or 0), samples)

    def _attribute(
        self,
        op: Operation,
        schema: list[str],
        sendable: list[tuple[OutboundRow, list[str]]],
        answer: _Answer,
        depth: int,
    ) -> list[RowOutcome]:
        """Outcomes of rows Meta answered for. Rows holding a sampled value are invalid. When Meta counted more
        invalid rows than those, the rest are all invalid if the count says so, else they are re-sent in halves
        (re-sending a valid member changes nothing) to learn which, down to `MAX_BISECT_DEPTH`."""
        outcomes, unsampled = [], []
        for row, values in sendable:
            if answer.samples.intersection(values):
                outcomes.append(RowOutcome.failure(row.key, "invalid_entry", SAMPLED, permanent=True))
            else:
                unsampled.append((row, values))
        unattributed = answer.invalid - len(outcomes)
        if unattributed <= 0:
            ref = str(answer.session_id)
            return outcomes + [RowOutcome.success(row.key, destination_ref=ref) for row, _ in unsampled]
        if unattributed >= len(unsampled) or depth == MAX_BISECT_DEPTH:
            message = COUNTED if unattributed >= len(unsampled) else UNATTRIBUTED
            return outcomes + [
                RowOutcome.failure(row.key, "invalid_entry", message, permanent=True) for row, _ in unsampled
            ]
        middle = len(unsampled) // 2
        for part in (unsampled[:middle], unsampled[middle:]):
            try:
                part_answer = self._post(op, schema, [values for _, values in part], last=False)
            except _NotAccepted as refused:
                outcomes += refused.fail([row for row, _ in part])
            else:
                outcomes += self._attribute(op, schema, part, part_answer, depth + 1)
        return outcomes

    def _finish(self, op: Operation) -> None:
        """End the operation's session if it is still open, by sending the last row Meta accepted in it again with
        `last_batch_flag`. A session Meta never accepted a row of has nothing to end."""
        session = self._sessions.get(op)
        if session is None or session.finished or session.tail is None:
            return
        schema, values = session.tail
        try:
            self._post(op, schema, [values], last=True)
        except (_NotAccepted, ValueError):
            if self._sessions.get(op) is session:  # else `_post` abandoned it already
                self._abandon(op, session)

    def close(self, *, success: bool) -> None:
        """After a successful run, end every session still open; a failed run's are left for Meta to expire."""
        try:
            if success:
                for op in list(self._sessions):
                    self._finish(op)
        finally:
            self.http.close()


def _refuses_session(response: requests.Response) -> bool:
    """Whether a 400 refuses the request's `session` (its Graph API error message names the session or
    `batch_seq`) rather than its payload."""
    if response.status_code != 400:
        return False
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    message = str(error.get("message", "")).lower() if isinstance(error, dict) else ""
    return "session" in message or "batch_seq" in message
