"""Google Ads Customer Match through offline user data jobs (REST).

One job per run and operation type, created on the first batch that needs it
(`customers/{cid}/offlineUserDataJobs:create`, type CUSTOMER_MATCH_USER_LIST for the user list). Each batch adds
its operations to that job (`{job}:addOperations`, partial failure enabled; one `create` or `remove` per row,
carrying the row's `userIdentifiers`), and `close(success=True)` runs each job once (`{job}:run`). Nothing waits
for Google to process a job (10 minutes to 24 hours). Google's rules behind this:
- operations go to one job over as many requests as needed, then the job runs once; a job that has started
  takes no more operations (JOB_ALREADY_STARTED), so a run has at most two jobs, as creates and removes never
  share one (CONFLICTING_OPERATION);
- additions to one job must not overlap (CONCURRENT_MODIFICATION): batches add in turn;
- two jobs on one list may be processed in parallel, in either order. A mirror sends its removals before its
  adds, so an add sharing an identifier with a removal of the same run is not sent: it fails `removal_pending`
  (retryable) and goes out next run, and the removal cannot undo it. Across runs, the engine tells the run which
  of its members (by row key) an earlier job Google may still be processing adds or removes
  (`RunInfo.added_in_flight`, `removed_in_flight`): an add of an identifier such a job removes fails
  `removal_pending` too, and a removal of one it adds fails `add_pending` (retryable), so it goes out once that job
  is done; a held retirement holds its member's change too (`add_pending`), so the member's state keeps naming the
  job in flight. Another member taking the whole identity such a job removes (a customer signing up again under
  a new key) is held too: the engine also passes those removals (`later_checks.in_flight`). One sharing only some
  identifiers with it (a company's switchboard phone) is not, or steady churn could hold such adds for good.

Acknowledgement (`answers_at_close`): a row is acknowledged once its operation is in a job this run ran. Rows
Google rejects are answered per row, from the partial-failure reply by operation index, when their batch is
added. A failed or crashed run runs nothing: its jobs stay PENDING and Google never processes them, and their
rows, unacknowledged, go out in a new job next run. The jobs about to run are recorded before the first `:run`
(`handover_ref`): a process that dies between them, or before its rows are settled, leaves them on record, so
later runs hold against what ran and find PENDING the one that never did. The record holds the members each job
adds or removes, so a later run holds an opposite operation on a member however its state changed since. A row
whose `addOperations` answer was lost (no answer, or a server fault, after the client's retries) fails, to be sent
again, but may be in the job all the same (`uncertain_keys`): it is recorded with the job too.

A job that ran may still FAIL at Google, having applied some of its operations or none (`confirms_later`): the
engine keeps each run's jobs (`destination_ref`, the job names) and, before a later run plans, `check_later`
reads their status (one search for up to 200 jobs). A run whose job failed is sent again, both its adds and its
removals, once none of its jobs still runs (`syncs.later_checks`); one whose jobs succeeded is forgotten.

Lost answers: the client re-sends a request whose answer it lost. A repeated `:run` is refused because the job
has started; the job's status then tells whether it runs. A repeated `:addOperations` adds the same members
again, which changes nothing; a repeated `:create` leaves an empty job that is never run.

Fields: `email`, `phone`, `first_name`, `last_name`, `country_code`, `postal_code`. Emails and phones are
hashed (SHA-256 of the normalized value, gmail dots removed, phones in E.164); an address is sent only when
first name, last name, country and postal code are all present (names hashed, country and postal code not). First
and last names are normalized alike: composed (NFC), lower case, no punctuation, spaces trimmed and collapsed,
without the title (Mrs.) or suffix (Jr.) Google asks to leave out (`syncs.identity.google_first_name`,
`google_last_name`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    status_code,
)
from syncs.destinations.base import (
    DeferredOutcome,
    Destination,
    DestinationSettings,
    LaterCheck,
    Mode,
    Operation,
    OutboundRow,
    RowOutcome,
    RunInfo,
    SyncTarget,
    register,
)
from syncs.http import DestinationHTTPError
from syncs.identity_release import RETIRED_MARKER

STARTED = frozenset({"RUNNING", "SUCCESS"})
OPERATIONS = {"remove": Operation.REMOVE, "create": Operation.UPSERT}  # a job's verb -> the rows' operation
JOBS_PER_SEARCH = 200
REMOVAL_PENDING = (
    "this run, or an earlier run's job Google is still processing, removes an identifier this row adds, and Google "
    "may process the two jobs in either order: the add goes out on a later run"
)
ADD_PENDING = (
    "an earlier run's job Google is still processing adds an identifier this row removes, and Google may process "
    "the two jobs in either order: the removal goes out once that job is done"
)
CHANGE_HELD = (
    "an earlier run's job Google is still processing adds this member's previous identifiers, whose retirement waits "
    "for it: the change goes out with the retirement"
)


class _BatchFailed(Exception):
    def __init__(self, rows: list[RowOutcome], *, maybe_applied: bool = False) -> None:
        self.outcomes = rows
        self.maybe_applied = maybe_applied  # no answer, or a server fault: the request may have taken effect


@dataclass
class _Job:
    name: str
    accepted: int = 0  # operations Google took into the job
    # Rows whose batch failed with its answer lost: their operations may be in the job all the same.
    maybe_in: list[str] = field(default_factory=list)


class GoogleCustomerMatchSettings(DestinationSettings):
    """`base_url` includes the API version (https://googleads.googleapis.com/v21)."""

    access_token_env: str
    developer_token_env: str
    login_customer_id: str | None = None

    @field_validator("login_customer_id")
    @classmethod
    def _digits_or_none(cls, value: str | None) -> str | None:
        return re.sub(r"\D", "", value) or None if value else None


class GoogleCustomerMatchTarget(SyncTarget):
    customer_id: str
    user_list_id: str

    @field_validator("customer_id")
    @classmethod
    def _digits(cls, value: str) -> str:
        digits = re.sub(r"-", "", value)
        if not digits.isdigit():
            raise ValueError("customer_id is the 10-digit Google Ads customer id (dashes allowed)")
        return digits


def user_identifiers(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's identifiers in Google's REST (camelCase) shape; empty when none is usable."""
    country = fields.get("country_code")
    found: list[dict[str, Any]] = []
    if (address := identity.google_email(fields.get("email"))) is not None:
        found.append({"hashedEmail": identity.sha256_hex(address)})
    if (phone := identity.google_phone(fields.get("phone"), country)) is not None:
        found.append({"hashedPhoneNumber": identity.sha256_hex(phone)})
    first, last = (
        identity.google_first_name(fields.get("first_name")),
        identity.google_last_name(fields.get("last_name")),
    )
    country_code, postal = identity.google_country(country), identity.google_postal_code(fields.get("postal_code"))
    if first and last and country_code and postal:
        found.append(
            {
                "addressInfo": {
                    "hashedFirstName": identity.sha256_hex(first),
                    "hashedLastName": identity.sha256_hex(last),
                    "countryCode": country_code,
                    "postalCode": postal,
                }
            }
        )
    return found


@register
class GoogleCustomerMatchDestination(Destination):
    type_name = "google_customer_match"
    channel = "ads"
    modes = frozenset({Mode.MIRROR, Mode.UPSERT})
    max_batch_size = 10_000
    default_requests_per_second = 5.0
    Settings = GoogleCustomerMatchSettings
    Target = GoogleCustomerMatchTarget
    optional_fields = frozenset({"email", "phone", "first_name", "last_name", "country_code", "postal_code"})
    identity_fields = optional_fields  # every field is a hashed identifier
    case_sensitive_identity_fields = frozenset({"postal_code"})  # sent unhashed, in the case it has
    normalized_identity_kinds = MappingProxyType({"email": "email", "phone": "phone"})
    accepts_extra_fields = False
    answers_at_close = True
    confirms_later = True

    @classmethod
    def sent_identity(cls, fields: Mapping[str, Any]) -> str | None:
        found = user_identifiers(dict(fields))
        return json.dumps(found, sort_keys=True) if found else None

    def __init__(self, name: str, settings: GoogleCustomerMatchSettings, target: GoogleCustomerMatchTarget) -> None:
        super().__init__(name, settings, target)
        headers = {
            "Authorization": f"Bearer {secret_from_env(settings.access_token_env, name)}",
            "developer-token": secret_from_env(settings.developer_token_env, name),
        }
        if settings.login_customer_id:
            headers["login-customer-id"] = settings.login_customer_id
        self.http = http_client(self, settings, headers=headers)
        self.customer = f"customers/{target.customer_id}"
        self.user_list = f"{self.customer}/userLists/{target.user_list_id}"
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}  # by verb, in the order the run needed them
        self._removed: set[str] = set()  # identifiers in this run's remove job or an earlier one still processed
        self._added_earlier: set[str] = set()  # identifiers an earlier job still processed adds
        self._held_members: set[str] = set()  # row keys whose retirement this run holds (`add_pending`)

    def open(self, run: RunInfo) -> None:
        self._jobs, self._held_members = {}, set()
        self._removed = _identifier_keys(run.removed_in_flight)
        self._added_earlier = _identifier_keys(run.added_in_flight)

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        """Answers only the rows that failed; the others are answered at close, when their job runs."""
        if op is Operation.SEND:
            return fail_all(rows, "unsupported_operation", "user lists take members, not sends", permanent=True)
        verb = "remove" if op is Operation.REMOVE else "create"
        sendable, outcomes = [], []
        for row in rows:
            identifiers = user_identifiers(row.fields)
            if not identifiers:
                message = "no usable email, phone or full address after normalization"
                outcomes.append(RowOutcome.failure(row.key, "no_identifier", message, permanent=True))
            elif verb == "create" and not self._removed.isdisjoint(_keys(identifiers)):  # removals came first
                outcomes.append(RowOutcome.failure(row.key, "removal_pending", REMOVAL_PENDING))
            elif verb == "remove" and not self._added_earlier.isdisjoint(_keys(identifiers)):
                outcomes.append(RowOutcome.failure(row.key, "add_pending", ADD_PENDING))
                self._held_members.add(row.key.split(RETIRED_MARKER)[0])
            elif verb == "create" and row.key in self._held_members:  # its state must keep the earlier job's ref
                outcomes.append(RowOutcome.failure(row.key, "add_pending", CHANGE_HELD))
            else:
                sendable.append((row, identifiers))
        if sendable:
            with self._lock:
                outcomes += self._add(verb, sendable)
        return outcomes

    def _add(self, verb: str, sendable: list[tuple[OutboundRow, list[dict[str, Any]]]]) -> list[RowOutcome]:
        rows = [row for row, _ in sendable]
        body = {"enablePartialFailure": True, "operations": [{verb: {"userIdentifiers": ids}} for _, ids in sendable]}
        try:
            job = self._job(verb, rows)
        except _BatchFailed as failed:
            return failed.outcomes
        try:
            added = self._post(f"{job.name}:addOperations", body, rows)
        except _BatchFailed as failed:
            if failed.maybe_applied:
                job.maybe_in += [row.key for row in rows]
            return failed.outcomes
        rejected = _failed_indexes(added.get("partialFailureError"))
        job.accepted += len(sendable) - len(rejected)
        if verb == "remove":
            self._removed.update(key for i, (_, ids) in enumerate(sendable) if i not in rejected for key in _keys(ids))
        message = "Google rejected this row's identifiers"
        return [RowOutcome.failure(rows[i].key, code, message, permanent=True) for i, code in rejected.items()]

    def _job(self, verb: str, rows: list[OutboundRow]) -> _Job:
        if verb not in self._jobs:
            spec = {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": {"userList": self.user_list}}
            created = self._post(f"{self.customer}/offlineUserDataJobs:create", {"job": spec}, rows)
            self._jobs[verb] = _Job(created["resourceName"])
        return self._jobs[verb]

    def _post(self, path: str, body: dict[str, Any], rows: list[OutboundRow]) -> dict[str, Any]:
        try:
            response = self.http.request("POST", path, json=body)
        except DestinationHTTPError as error:
            maybe_applied = error.status is None or error.status >= 500
            raise _BatchFailed(fail_batch_for_error(rows, error), maybe_applied=maybe_applied) from None
        if not response.ok:
            outcomes = fail_batch_for_response(rows, response, f"Google Ads {path.rsplit(':', 1)[-1]}")
            raise _BatchFailed(outcomes, maybe_applied=response.status_code >= 500)
        return response.json()

    def close(self, *, success: bool) -> DeferredOutcome:
        """Run the jobs (removals first), or none when the run failed: unrun, they are never processed. A job that
        cannot be run stops the ones after it, and fails only their rows: the rows of a job that ran are
        acknowledged under it (`DeferredOutcome.by_op`), so later runs know that job is in flight."""
        try:
            if not success:
                return DeferredOutcome.failure("run_aborted", "the run failed before its jobs were run")
            jobs = self._jobs_to_run()
            for index, (_, job) in enumerate(jobs):
                if (failure := self._run(job)) is not None:
                    ran = jobs[:index]
                    done = DeferredOutcome.success(destination_ref=" ".join(name for _, name in ran))
                    return replace(failure, by_op={OPERATIONS[verb]: done for verb, _ in ran})
            return DeferredOutcome.success(destination_ref=" ".join(name for _, name in jobs) or None)
        finally:
            self.http.close()

    def handover_ref(self) -> str | None:
        return " ".join(name for _, name in self._jobs_to_run()) or None

    def uncertain_keys(self) -> list[str]:
        return [key for job in self._jobs.values() if job.accepted for key in job.maybe_in]

    def _jobs_to_run(self) -> list[tuple[str, str]]:
        """(verb, job name) of the jobs `close` runs, in order: removals first."""
        return [(verb, job.name) for verb, job in self._jobs.items() if job.accepted]

    def _run(self, job: str) -> DeferredOutcome | None:
        """None once the job runs, or may run. The client re-sends a `:run` whose answer it lost, and Google refuses
        the repeat because the job has started (JOB_ALREADY_STARTED); otherwise the job's status says whether it
        runs. When neither tells (no answer, then no status), the job counts as run: its rows are acknowledged and it
        is recorded, so later runs treat it as in flight, and their check finds it never ran (PENDING) if so, and
        sends its rows again. A job Google refused to run (any other 4xx) did not run."""
        try:
            response = self.http.request("POST", f"{job}:run", json={})
        except DestinationHTTPError as error:
            status, refusal = error.status, str(error)
        else:
            if response.ok or "JOB_ALREADY_STARTED" in response.text:
                return None
            status, refusal = response.status_code, f"Google Ads run failed with HTTP {response.status_code}"
        answered = self._statuses([job])
        state = None if isinstance(answered, str) else answered.get(job, (None, None))[0]
        if state in STARTED or (state is None and (status is None or status == 429 or status >= 500)):
            return None
        if state == "FAILED":
            return DeferredOutcome.failure("job_failed", "Google failed the offline user data job")
        return DeferredOutcome.failure(status_code(status), refusal)

    def check_later(self, refs: Sequence[str]) -> dict[str, LaterCheck]:
        """Each ref names a run's jobs: failed when one failed, pending while one runs, done when all succeeded."""
        try:
            names = sorted({job for ref in refs for job in ref.split()})
            found: dict[str, tuple[str, str | None]] = {}
            refusals: list[str] = []
            for start in range(0, len(names), JOBS_PER_SEARCH):
                answered = self._statuses(names[start : start + JOBS_PER_SEARCH])
                if isinstance(answered, str):
                    refusals.append(answered)
                else:
                    found.update(answered)
        finally:
            self.http.close()
        unknown = f"Google's status search failed ({refusals[0]})" if refusals else None
        return {ref: _run_check([found.get(job) for job in ref.split()], unknown) for ref in refs}

    def _statuses(self, jobs: list[str]) -> dict[str, tuple[str, str | None]] | str:
        """Job name -> (status, failure reason) of the jobs Google answers for, or why the search failed."""
        names = ", ".join(f"'{job}'" for job in jobs)
        query = (
            "SELECT offline_user_data_job.resource_name, offline_user_data_job.status, "
            "offline_user_data_job.failure_reason FROM offline_user_data_job "
            f"WHERE offline_user_data_job.resource_name IN ({names})"
        )
        try:
            response = self.http.request("POST", f"{self.customer}/googleAds:search", json={"query": query})
        except DestinationHTTPError as error:
            return str(error)
        if not response.ok:
            return f"HTTP {response.status_code}"
        try:
            jobs_found = [result["offlineUserDataJob"] for result in response.json().get("results", [])]
            return {job["resourceName"]: (job["status"], job.get("failureReason")) for job in jobs_found}
        except (ValueError, KeyError, TypeError, AttributeError):
            return "an answer of another shape"


def _run_check(jobs: list[tuple[str, str | None] | None], unknown: str | None) -> LaterCheck:
    """One run's jobs as (status, failure reason), None for a job Google did not answer for (`unknown` says why when
    a search failed). Pending while one still runs, even when another failed: the failed run is sent again once
    nothing of it is in flight."""
    known = [job for job in jobs if job is not None]
    reasons = [reason for status, reason in known if status == "FAILED"]
    failed = f"Google failed an offline user data job ({reasons[0] or 'no reason given'})" if reasons else None
    if any(status == "PENDING" for status, _ in known):  # recorded as run, yet never started
        failed = "Google never ran an offline user data job (its run request went unanswered, or never went out)"
    if any(status not in ("SUCCESS", "FAILED", "PENDING") for status, _ in known):
        return LaterCheck("pending", failed)
    if failed:
        return LaterCheck("failed", failed)
    return LaterCheck("unknown", unknown) if len(known) < len(jobs) else LaterCheck("done")


def _keys(identifiers: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(identifier, sort_keys=True) for identifier in identifiers]


def _identifier_keys(members: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every identifier the connector sends for these members' fields, as `_keys` compares them."""
    return {key for fields in members for key in _keys(user_identifiers(dict(fields)))}


def _failed_indexes(partial_failure: Any) -> dict[int, str]:
    """Operation index -> error code, from a partialFailureError status."""
    failed: dict[int, str] = {}
    for detail in (partial_failure or {}).get("details", []):
        for error in detail.get("errors", []):
            elements = error.get("location", {}).get("fieldPathElements", [])
            index = next((e.get("index") for e in elements if e.get("fieldName") == "operations"), None)
            if index is not None:
                codes = list((error.get("errorCode") or {}).values())
                failed[int(index)] = str(codes[0]).lower() if codes else "invalid_operation"
    return failed
