"""Mailchimp Marketing API v3.0: list members, static-segment (tag) membership and member events.

- upsert: `POST /lists/{list_id}` batch (<= 500 members, `update_existing`), then, when the target names a
  segment, `POST /lists/{list_id}/segments/{segment_id}` with `members_to_add`.
- remove (mirror): with a segment, `members_to_remove` from that segment only: the person stays on the list,
  where other syncs and other tags may own them. Without a segment the sync owns list membership itself and
  the member is archived (`DELETE /lists/{list_id}/members/{hash}`), which keeps their history and consent.
- send: the member is upserted first (an event needs an existing member), then
  `POST /lists/{list_id}/members/{hash}/events` with `name = event_name` and the occurrence's idempotency key
  in `properties`. Events are one call per member, so they go out `event_concurrency` at a time.

Mailchimp stores every event it is sent (events take no idempotency key) and each one triggers the journey, so
an occurrence must never be posted twice. An event POST whose answer was lost (a read timeout, a dropped
connection, a 500, 502 or 504) is not sent again by the HTTP retries: its row fails retryably. When earlier
runs may have delivered occurrences without recording it (`RunInfo.unsettled_runs`), each occurrence is first
looked up in the member's events (`GET /lists/{list_id}/members/{hash}/events`, paged) and acknowledged without
a send when its `idempotency_key` is there; if that read fails, the row fails retryably (`event_check_failed`).

Limits: Mailchimp allows 10 simultaneous connections per user (over that: 429) and sets no request rate, so the
connector bounds connections, not requests per second: `concurrency` (batches in flight) times
`event_concurrency` must stay within 10.

Fields: `email` (required); every other mapped field is a merge field (`FNAME`, `LNAME`, ...) and, for sends,
also an event property.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import requests
from pydantic import Field, model_validator
from requests.auth import HTTPBasicAuth

from syncs import identity
from syncs.destinations._support import (
    chunks,
    fail_all,
    fail_batch_for_error,
    fail_batch_for_response,
    http_client,
    secret_from_env,
    split_non_finite,
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
from syncs.http import DestinationHTTPError, HttpClient

MAX_MEMBERS_PER_CALL = 500
MAX_CONNECTIONS = 10
EVENT_NAME = r"^[A-Za-z0-9_-]{2,30}$"  # Mailchimp's rule for event names
EVENTS_PAGE = 1000  # the most a member-events read returns at once


class MailchimpSettings(DestinationSettings):
    """`base_url` defaults to the data center named by the API key's suffix (`...-us21`)."""

    base_url: str | None = None  # type: ignore[assignment]
    api_key_env: str
    status_if_new: Literal["subscribed", "pending", "transactional"] = "subscribed"
    event_concurrency: int = Field(default=8, ge=1, le=MAX_CONNECTIONS)

    @model_validator(mode="after")
    def _within_connection_limit(self) -> MailchimpSettings:
        if self.concurrency * self.event_concurrency > MAX_CONNECTIONS:
            raise ValueError(
                f"concurrency x event_concurrency is {self.concurrency * self.event_concurrency}, over Mailchimp's "
                f"{MAX_CONNECTIONS} simultaneous connections; lower one of them"
            )
        return self


class MailchimpTarget(SyncTarget):
    list_id: str
    segment_id: str | int | None = None
    event_name: str | None = Field(default=None, pattern=EVENT_NAME)

    @model_validator(mode="after")
    def _segment_id_as_text(self) -> MailchimpTarget:
        if self.segment_id is not None:
            self.segment_id = str(self.segment_id)
        return self


@register
class MailchimpDestination(Destination):
    type_name = "mailchimp"
    channel = "email"
    modes = frozenset({Mode.MIRROR, Mode.UPSERT, Mode.SEND_ONCE})
    max_batch_size = MAX_MEMBERS_PER_CALL
    Settings = MailchimpSettings
    Target = MailchimpTarget
    required_fields = frozenset({"email"})
    optional_fields = frozenset({"FNAME", "LNAME", "PHONE", "ADDRESS", "BIRTHDAY"})
    identity_fields = frozenset({"email"})  # members are keyed by the hash of the lower-cased address
    accepts_extra_fields = True

    @classmethod
    def sync_problems(
        cls, mode: Mode, settings: MailchimpSettings, target: MailchimpTarget
    ) -> list[tuple[str, str, str]]:
        if mode is Mode.SEND_ONCE and not target.event_name:
            fix = "add `event_name: <name>` under target: the event that starts the Customer Journey"
            return [("target.event_name", "a send_once sync posts member events but names no event", fix)]
        return []

    def __init__(self, name: str, settings: MailchimpSettings, target: MailchimpTarget) -> None:
        super().__init__(name, settings, target)
        api_key = secret_from_env(settings.api_key_env, name)
        if not settings.base_url:
            data_center = api_key.rsplit("-", 1)[-1] if "-" in api_key else ""
            if not data_center:
                raise ValueError(f"destination {name!r}: the Mailchimp API key must end with -<dc> (e.g. -us21)")
            settings = settings.model_copy(update={"base_url": f"https://{data_center}.api.mailchimp.com/3.0"})
            self.settings = settings
        auth = HTTPBasicAuth("tidings", api_key)
        self.http = http_client(self, settings, auth=auth, pool_size=settings.event_concurrency)
        # Event POSTs carry no idempotency key: one Mailchimp may have stored (lost answer, 500, 502, 504) is never
        # re-sent; it shares the main client's rate limit.
        self.event_http = http_client(
            self,
            settings,
            auth=auth,
            pool_size=settings.event_concurrency,
            bucket=self.http.bucket,
            resend_processed=False,
        )
        self.list_path = f"/lists/{target.list_id}"
        self._check_earlier_sends = False

    def open(self, run: RunInfo) -> None:
        self._check_earlier_sends = bool(run.unsettled_runs)

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        valid, outcomes = _split_by_email(rows)
        if op is not Operation.REMOVE:  # a removal sends the address only
            valid, not_finite = split_non_finite(valid, lambda pair: pair[0])
            outcomes += not_finite
        if op is Operation.SEND:
            outcomes += fail_all(
                (row for row, _ in valid if not row.idempotency_key),
                "missing_idempotency_key",
                "a send needs an idempotency key",
                permanent=True,
            )
            valid = [(row, address) for row, address in valid if row.idempotency_key]
        if op is Operation.SEND and not self.target.event_name:
            return outcomes + fail_all(
                (row for row, _ in valid), "missing_event_name", "send_once to Mailchimp needs target.event_name"
            )
        for batch in chunks(valid, MAX_MEMBERS_PER_CALL):
            if op is Operation.REMOVE:
                outcomes += self._remove(batch)
                continue
            upserted, failed = self._upsert(batch)
            outcomes += failed
            if op is Operation.SEND:
                outcomes += self._send_events(upserted)
            elif self.target.segment_id is not None:
                outcomes += self._segment(upserted, "members_to_add")
            else:
                outcomes += [RowOutcome.success(row.key, identity.subscriber_hash(a)) for row, a in upserted]
        return outcomes

    def _upsert(
        self, batch: Sequence[tuple[OutboundRow, str]]
    ) -> tuple[list[tuple[OutboundRow, str]], list[RowOutcome]]:
        members = [
            {"email_address": address, "status_if_new": self.settings.status_if_new, "merge_fields": _merge(row)}
            for row, address in batch
        ]
        body = {"members": members, "update_existing": True}
        response = self._call("POST", self.list_path, [row for row, _ in batch], json=body)
        if isinstance(response, list):
            return [], response
        errors = {e.get("email_address", "").lower(): e for e in response.json().get("errors", [])}
        upserted = [(row, address) for row, address in batch if address not in errors]
        failed = [
            RowOutcome.failure(row.key, _error_code(errors[address]), "Mailchimp rejected the member", permanent=True)
            for row, address in batch
            if address in errors
        ]
        return upserted, failed

    def _segment(self, batch: Sequence[tuple[OutboundRow, str]], action: str) -> list[RowOutcome]:
        if not batch:
            return []
        path = f"{self.list_path}/segments/{self.target.segment_id}"
        response = self._call("POST", path, [row for row, _ in batch], json={action: [a for _, a in batch]})
        if isinstance(response, list):
            return response
        refused = {a.lower() for e in response.json().get("errors", []) for a in e.get("email_addresses", [])}
        return [
            RowOutcome.failure(row.key, "segment_rejected", "Mailchimp refused the segment change", permanent=True)
            if address in refused
            else RowOutcome.success(row.key, identity.subscriber_hash(address))
            for row, address in batch
        ]

    def _remove(self, batch: Sequence[tuple[OutboundRow, str]]) -> list[RowOutcome]:
        if self.target.segment_id is not None:
            return self._segment(batch, "members_to_remove")
        outcomes = []
        for row, address in batch:
            member = identity.subscriber_hash(address)
            response = self._call("DELETE", f"{self.list_path}/members/{member}", [row])
            if isinstance(response, list):
                outcomes += response
            else:
                outcomes.append(RowOutcome.success(row.key, member))
        return outcomes

    def _send_events(self, members: Sequence[tuple[OutboundRow, str]]) -> list[RowOutcome]:
        if len(members) <= 1:
            return [self._send_event(row, address) for row, address in members]
        workers = min(self.settings.event_concurrency, len(members))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"{self.name}-events") as pool:
            return list(pool.map(lambda member: self._send_event(*member), members))

    def _send_event(self, row: OutboundRow, address: str) -> RowOutcome:
        member = identity.subscriber_hash(address)
        path = f"{self.list_path}/members/{member}/events"
        if self._check_earlier_sends:
            posted = self._posted_before(path, row.idempotency_key)
            if posted is None:
                message = "the member's events could not be read to check for an earlier send; sending could repeat it"
                return RowOutcome.failure(row.key, "event_check_failed", message)
            if posted:
                return RowOutcome.success(row.key, member)
        properties = {k: "" if v is None else str(v) for k, v in row.fields.items() if k != "email"}
        body = {"name": self.target.event_name, "properties": {**properties, "idempotency_key": row.idempotency_key}}
        response = self._call("POST", path, [row], json=body, client=self.event_http)
        return response[0] if isinstance(response, list) else RowOutcome.success(row.key, member)

    def _posted_before(self, path: str, idempotency_key: str | None) -> bool | None:
        """Whether the member's events hold one with this idempotency key; None when they could not be read."""
        offset = 0
        while True:
            try:
                response = self.http.request("GET", path, params={"count": EVENTS_PAGE, "offset": offset})
                page = response.json() if response.ok else None
            except (DestinationHTTPError, ValueError):
                return None
            if not isinstance(page, dict) or not isinstance(page.get("events"), list):
                return None
            events = page["events"]
            if any((event.get("properties") or {}).get("idempotency_key") == idempotency_key for event in events):
                return True
            offset += len(events)
            if not events or offset >= page.get("total_items", 0):
                return False

    def _call(
        self,
        method: str,
        path: str,
        rows: Sequence[OutboundRow],
        *,
        json: Any = None,
        client: HttpClient | None = None,
    ) -> requests.Response | list[RowOutcome]:
        """The response when the call succeeded as a whole, else failure outcomes for `rows`.

        A 404 on archiving means the member is already gone, which is what removal wanted.
        """
        try:
            response = (client or self.http).request(method, path, json=json)
        except DestinationHTTPError as error:
            return fail_batch_for_error(rows, error)
        if response.ok or (method == "DELETE" and response.status_code == 404):
            return response
        return fail_batch_for_response(rows, response, f"Mailchimp {method}")

    def close(self, *, success: bool) -> None:
        self.http.close()
        self.event_http.close()


def _split_by_email(rows: Sequence[OutboundRow]) -> tuple[list[tuple[OutboundRow, str]], list[RowOutcome]]:
    """Rows with a usable address (normalized), and failures for the rest."""
    valid, invalid = [], []
    for row in rows:
        address = identity.email(row.fields.get("email"))
        if address is None:
            invalid.append(
                RowOutcome.failure(row.key, "invalid_email", "email is missing or malformed", permanent=True)
            )
        else:
            valid.append((row, address))
    return valid, invalid


def _merge(row: OutboundRow) -> dict[str, Any]:
    return {
        k: ("" if v is None else v if isinstance(v, int | float | str) else str(v))
        for k, v in row.fields.items()
        if k != "email"
    }


def _error_code(error: dict[str, Any]) -> str:
    """Mailchimp's error_code (ERROR_GENERIC, ERROR_CONTACT_EXISTS...) as a stable lower-case code."""
    code = str(error.get("error_code") or "member_rejected").lower()
    return "invalid_email" if "invalid" in str(error.get("error", "")).lower() else code
