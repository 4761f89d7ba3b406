"""SendGrid Marketing Contacts (v3): asynchronous contact upserts into a list, and list removal.

- upsert: `PUT /v3/marketing/contacts` (at most 30,000 contacts and 6 MB per request: larger batches are
  split) answers 202 with a `job_id`; the import job is polled at `GET /v3/marketing/contacts/imports/{id}`
  until it finishes (bounded by `poll_timeout_seconds`; a job still pending then fails its rows, retryable).
  A job finishes `completed` (no errors), `errored` (some contacts rejected) or `failed` (all rejected, or
  unprocessable). The rejected contacts are read from the job's `errors_url` (a CSV of email and error) and
  fail individually and permanently; the others of a `failed` job fail retryable.
- The PUT refuses the whole request with a 400 (`{"errors": [{"field", "message"}]}`) when any contact fails
  validation. So reserved fields longer than SendGrid's documented limit (`MAX_LENGTHS`) fail `field_too_long`,
  permanently, before sending. After a 400, the contacts its errors name by index (`field` such as
  `contacts[3].first_name`) fail `contact_rejected`, permanently, and the others are sent again; an error about
  the request itself (`list_ids`, `contacts`) fails the whole part as before; with no contact named, each half is
  sent again, down to single contacts, and a single contact still refused fails `contact_rejected`, permanently.
  Finding one refused contact among n takes at most 2 * ceil(log2 n) extra PUTs (30 for a full part); a part
  spends at most `SPLIT_BUDGET` extra PUTs per run, after which the contacts not yet told apart fail retryable
  and the next run carries on.
- remove (mirror): per 100 addresses (the search's limit), contact ids come from
  `POST /v3/marketing/contacts/search/emails`, then `DELETE /v3/marketing/lists/{list_id}/contacts?contact_ids=...`
  removes them from the list only (the contact stays in the account for other lists). An address the search
  does not find is no contact and counts as removed; the addresses of a search that failed fail, retryable. A
  400 means some address is one the search will not take, and the body does not say which: the addresses are
  searched again in halves, so the others are removed and that one fails `search_refused` (at most
  2 * ceil(log2 100) = 14 extra searches per such address, `SEARCH_SPLIT_BUDGET` per batch; chunks refused beyond
  it stay in error, retryable). It fails permanently only when another search of the batch was answered, which
  shows the 400 is about the address and not the request; else it is retried next run.

Every request, polls included, goes through the rate-limited, retrying client.
Fields: `email` (required), `first_name`, `last_name`, `phone_number`, `address_line_1`, `city`,
`state_province_region`, `postal_code`, `country`; any other mapped field is a custom field, named in the
mapping by its SendGrid custom field id (e.g. `e1_T`), as the API keys custom fields by id. A decimal goes to a
Number field (id ending `_N`) as a JSON number, since the id says the field's type; elsewhere as exact text.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TypeVar

from requests import Response

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
    SyncTarget,
    register,
)
from syncs.http import DestinationHTTPError

MAX_CONTACTS = 30_000
MAX_BODY_BYTES = 6 * 1024 * 1024
RESERVED_FIELDS = (
    "first_name",
    "last_name",
    "phone_number",
    "address_line_1",
    "city",
    "state_province_region",
    "postal_code",
    "country",
)
# maxLength of the reserved fields that have one (ContactRequest in SendGrid's OpenAPI); phone_number and
# postal_code have none.
MAX_LENGTHS = {
    "first_name": 50,
    "last_name": 50,
    "address_line_1": 100,
    "city": 60,
    "state_province_region": 50,
    "country": 50,
}
CONTACTS_PATH = "/v3/marketing/contacts"
NUMBER_FIELD_SUFFIX = "_N"  # SendGrid's custom field ids carry their type: e1_T text, e2_N number, e3_D date
REQUEST_FIELDS = frozenset({"list_ids", "contacts"})  # a 400 naming these is about the request, not a contact
SPLIT_BUDGET = 120  # extra PUTs a part may spend isolating refused contacts per run: 4 among 30,000
REMOVE_CHUNK = 100  # addresses per contact search (the API's limit), hence at most 100 contact ids per DELETE
FINISHED = frozenset({"completed", "errored", "failed"})  # import job states; `pending` is the other
SEARCH_PATH = "/v3/marketing/contacts/search/emails"
SEARCH_REFUSED = "SendGrid's contact search refuses this address, so it cannot be removed from the list here"
SEARCH_REFUSED_CODE = "search_refused"
SEARCH_SPLIT_BUDGET = 60  # extra searches a removal batch may spend finding refused addresses: 4 of them
T = TypeVar("T")
_PLAIN_TEXT = re.compile(r"[A-Za-z][A-Za-z _,.;:'()/-]{0,119}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")
_CONTACT_ERROR = re.compile(r"contacts\[(?P<index>\d+)\](?:\.(?P<field>.*))?")
UNISOLATED = "SendGrid refused a batch holding this contact (HTTP 400), not yet isolated: retried next run"
Contact = tuple[OutboundRow, dict[str, Any]]


class _Failed(Exception):
    def __init__(self, outcomes: list[RowOutcome], response: Response | None = None) -> None:
        self.outcomes = outcomes
        self.response = response


@dataclass
class _Budget:
    """The extra requests a part may still spend isolating refused contacts (PUTs) or addresses (searches), shared
    by all its halves."""

    left: int


@dataclass
class _Search:
    """The contact searches of one removal batch: whether any was answered, and the extra searches left."""

    budget: _Budget
    answered: bool = False


def _settle(outcome: RowOutcome, search_answered: bool) -> RowOutcome:
    """An address the search refused alone fails permanently only when another search of the batch was answered:
    else the 400 may be about the request itself, and the row is retried."""
    if outcome.code == SEARCH_REFUSED_CODE and search_answered:
        return replace(outcome, permanent=True)
    return outcome


class SendGridSettings(DestinationSettings):
    """`base_url` is the API host (https://api.sendgrid.com); paths start with /v3."""

    api_key_env: str
    poll_interval_seconds: float = 2.0
    poll_timeout_seconds: float = 600.0


class SendGridTarget(SyncTarget):
    list_id: str


@register
class SendGridDestination(Destination):
    type_name = "sendgrid"
    channel = "email"
    modes = frozenset({Mode.MIRROR, Mode.UPSERT})
    max_batch_size = MAX_CONTACTS
    default_requests_per_second = 3.0
    Settings = SendGridSettings
    Target = SendGridTarget
    required_fields = frozenset({"email"})
    optional_fields = frozenset(RESERVED_FIELDS)
    identity_fields = frozenset({"email"})  # contacts are keyed by email
    accepts_extra_fields = True

    def __init__(self, name: str, settings: SendGridSettings, target: SendGridTarget) -> None:
        super().__init__(name, settings, target)
        api_key = secret_from_env(settings.api_key_env, name)
        self.http = http_client(self, settings, headers={"Authorization": f"Bearer {api_key}"})

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        if op is Operation.SEND:
            return fail_all(rows, "unsupported_operation", "contact lists take members, not sends", permanent=True)
        valid, outcomes = [], []
        for row in rows:
            address = identity.email(row.fields.get("email"))
            if address is None:
                failure = RowOutcome.failure(row.key, "invalid_email", "email is missing or malformed", permanent=True)
                outcomes.append(failure)
            else:
                valid.append((row, address))
        if op is not Operation.REMOVE:  # a removal sends the address only
            valid, not_finite = split_non_finite(valid, lambda pair: pair[0])
            outcomes += not_finite
        if op is Operation.REMOVE:
            search = _Search(_Budget(SEARCH_SPLIT_BUDGET))
            removed = _each(chunks(valid, REMOVE_CHUNK), lambda chunk: self._remove(chunk, search))
            return outcomes + [_settle(outcome, search.answered) for outcome in removed]
        contacts = []
        for row, address in valid:
            contact = _contact(row, address)
            if (field := _too_long(contact)) is not None:
                message = f"{field} is longer than the {MAX_LENGTHS[field]} characters SendGrid allows"
                outcomes.append(RowOutcome.failure(row.key, "field_too_long", message, permanent=True))
            else:
                contacts.append((row, contact))
        return outcomes + _each(_parts(contacts), self._upsert)

    def _upsert(self, part: list[Contact], budget: _Budget | None = None) -> list[RowOutcome]:
        rows = [row for row, _ in part]
        body = {"list_ids": [self.target.list_id], "contacts": [contact for _, contact in part]}
        try:
            job_id = self._call("PUT", CONTACTS_PATH, rows, json=body)["job_id"]
        except _Failed as failed:
            if failed.response is None or failed.response.status_code != 400:
                raise
            return self._isolate(part, _errors(failed.response), failed, budget or _Budget(SPLIT_BUDGET))
        job = self._wait(job_id, rows)
        status = job.get("status", "pending")
        if status not in FINISHED:
            return fail_all(rows, f"job_{status}", "the contact import did not finish in time")
        rejected = self._rejections(job, rows)
        outcomes = []
        for row, contact in part:
            if (reason := rejected.get(contact["email"])) is not None:
                message = _rejection_message(reason, contact)
                outcomes.append(RowOutcome.failure(row.key, "contact_rejected", message, permanent=True))
            elif status == "failed":  # unprocessable, or rejected without a line in errors_url
                outcomes.append(RowOutcome.failure(row.key, "job_failed", "the contact import failed"))
            else:
                outcomes.append(RowOutcome.success(row.key, destination_ref=job_id))
        return outcomes

    def _isolate(
        self, part: list[Contact], errors: list[dict[str, Any]], failed: _Failed, budget: _Budget
    ) -> list[RowOutcome]:
        """The outcomes of a part whose PUT SendGrid refused with validation `errors` (see the module docstring)."""
        named: dict[int, dict[str, Any]] = {}
        for error in errors:
            match = _CONTACT_ERROR.fullmatch(str(error.get("field") or ""))
            if match and int(match["index"]) < len(part):
                named.setdefault(int(match["index"]), {**error, "field": match["field"]})
        if named:
            outcomes = [_refused(*part[i], error) for i, error in named.items()]
            rest = [item for i, item in enumerate(part) if i not in named]
            return outcomes + self._again([rest] if rest else [], budget)
        if any(error.get("field") in REQUEST_FIELDS for error in errors):
            raise failed
        if len(part) == 1:
            return [_refused(*part[0], errors[0] if errors else {})]
        middle = len(part) // 2
        return self._again([part[:middle], part[middle:]], budget)

    def _again(self, parts: list[list[Contact]], budget: _Budget) -> list[RowOutcome]:
        outcomes = []
        for part in parts:
            if budget.left <= 0:
                outcomes += fail_all([row for row, _ in part], "http_400", UNISOLATED)
                continue
            budget.left -= 1
            try:
                outcomes += self._upsert(part, budget)
            except _Failed as failed:
                outcomes += failed.outcomes
        return outcomes

    def _wait(self, job_id: str, rows: list[OutboundRow]) -> dict[str, Any]:
        deadline = time.monotonic() + self.settings.poll_timeout_seconds
        while True:
            job = self._call("GET", f"/v3/marketing/contacts/imports/{job_id}", rows)
            if job.get("status") in FINISHED or time.monotonic() >= deadline:
                return job
            time.sleep(self.settings.poll_interval_seconds)

    def _rejections(self, job: dict[str, Any], rows: list[OutboundRow]) -> dict[str, str]:
        """SendGrid's reason for each contact the job's `errors_url` CSV lists, by email."""
        results = job.get("results") or {}
        if not results.get("errored_count") or not results.get("errors_url"):
            return {}
        text = self._request("GET", results["errors_url"], rows).text
        return {
            line["email"].strip().lower(): (line.get("error") or "").strip()
            for line in csv.DictReader(io.StringIO(text))
            if line.get("email")
        }

    def _remove(self, chunk: Sequence[tuple[OutboundRow, str]], search: _Search) -> list[RowOutcome]:
        rows = [row for row, _ in chunk]
        try:
            found = self._call("POST", SEARCH_PATH, rows, json={"emails": [address for _, address in chunk]})
        except _Failed as failed:  # whatever the status, these may still be members: never report them removed
            refused = failed.response is not None and failed.response.status_code == 400
            if refused and len(chunk) > 1 and search.budget.left >= 2:  # find the address, remove the others
                search.budget.left -= 2
                half = len(chunk) // 2
                return _each([chunk[:half], chunk[half:]], lambda part: self._remove(part, search))
            if refused and len(chunk) == 1:  # permanent only once another search shows the request is fine
                return [RowOutcome.failure(rows[0].key, SEARCH_REFUSED_CODE, SEARCH_REFUSED, permanent=False)]
            raise _Failed([replace(outcome, permanent=False) for outcome in failed.outcomes]) from None
        search.answered = True
        ids = {
            email.lower(): item["contact"]["id"]
            for email, item in (found.get("result") or {}).items()
            if "contact" in item
        }
        known = sorted({ids[address] for _, address in chunk if address in ids})
        if known:
            path = f"/v3/marketing/lists/{self.target.list_id}/contacts"
            self._call("DELETE", path, rows, params={"contact_ids": ",".join(known)})
        return [RowOutcome.success(row.key, destination_ref=ids.get(address)) for row, address in chunk]

    def _call(self, method: str, path: str, rows: list[OutboundRow], **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, rows, **kwargs)
        return response.json() if response.content else {}

    def _request(self, method: str, path: str, rows: list[OutboundRow], **kwargs: Any) -> Any:
        """A successful response, or _Failed with outcomes for `rows` (a 404 on search means no such contacts)."""
        try:
            response = self.http.request(method, path, **kwargs)
        except DestinationHTTPError as error:
            raise _Failed(fail_batch_for_error(rows, error)) from None
        if response.status_code == 404 and path == SEARCH_PATH:
            return _Empty()
        if not response.ok:
            raise _Failed(fail_batch_for_response(rows, response, f"SendGrid {method}"), response)
        return response

    def close(self, *, success: bool) -> None:
        self.http.close()


class _Empty:
    """What a 404 from contact search means: no contact matched."""

    content = b"{}"
    text = ""

    @staticmethod
    def json() -> dict[str, Any]:
        return {}


def _each(requests: Iterable[T], send: Callable[[T], list[RowOutcome]]) -> list[RowOutcome]:
    """The outcomes of sending each request in turn; a request that fails fails its own rows only."""
    outcomes: list[RowOutcome] = []
    for request in requests:
        try:
            outcomes += send(request)
        except _Failed as failed:
            outcomes += failed.outcomes
    return outcomes


def _rejection_message(error: str, contact: dict[str, Any], field: str | None = None) -> str:
    """SendGrid's reason and the field it names, each kept only when it reads as fixed text (a field name) and
    repeats none of the contact's values (PII)."""
    values = [*contact.values(), *(contact.get("custom_fields") or {}).values()]
    texts = [text for text in (str(v).strip().lower() for v in values) if len(text) > 1]

    def safe(said: str | None, shape: re.Pattern[str]) -> bool:
        return bool(said and shape.fullmatch(said) and not any(text in said.lower() for text in texts))

    subject = f"this contact's {field}" if safe(field, _FIELD_NAME) else "this contact"
    return f"SendGrid rejected {subject}" + (f": {error}" if safe(error, _PLAIN_TEXT) else "")


def _refused(row: OutboundRow, contact: dict[str, Any], error: dict[str, Any]) -> RowOutcome:
    message = _rejection_message(str(error.get("message") or ""), contact, error.get("field"))
    return RowOutcome.failure(row.key, "contact_rejected", message, permanent=True)


def _errors(response: Response) -> list[dict[str, Any]]:
    """The `errors` of a SendGrid error answer, each a dict with `field` and `message`."""
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [error for error in errors if isinstance(error, dict)] if isinstance(errors, list) else []


def _too_long(contact: dict[str, Any]) -> str | None:
    """The first reserved field over SendGrid's documented length limit, if any."""
    return next((name for name, limit in MAX_LENGTHS.items() if len(contact.get(name, "")) > limit), None)


def _contact(row: OutboundRow, address: str) -> dict[str, Any]:
    contact: dict[str, Any] = {"email": address}
    custom: dict[str, Any] = {}
    for name, value in row.fields.items():
        if name == "email" or value is None:
            continue
        if name in RESERVED_FIELDS:
            contact[name] = str(value)
        elif isinstance(value, Decimal) and name.endswith(NUMBER_FIELD_SUFFIX) and value.is_finite():
            custom[name] = int(value) if value == value.to_integral_value() else float(value)
        else:
            custom[name] = value if isinstance(value, int | float | str) else str(value)
    if custom:
        contact["custom_fields"] = custom
    return contact


def _parts(contacts: list[Contact]) -> list[list[Contact]]:
    """Split into requests of at most 30,000 contacts and (leaving room for the envelope) 6 MB."""
    parts: list[list[Contact]] = [[]]
    size = 0
    for item in contacts:
        item_size = len(json.dumps(item[1])) + 1
        if parts[-1] and (len(parts[-1]) >= MAX_CONTACTS or size + item_size > MAX_BODY_BYTES - 1024):
            parts.append([])
            size = 0
        parts[-1].append(item)
        size += item_size
    return [part for part in parts if part]
