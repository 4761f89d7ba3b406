"""Google Ads Customer Match through an offline user data job (REST).

Per batch: `customers/{cid}/offlineUserDataJobs:create` (type CUSTOMER_MATCH_USER_LIST for the user list),
`{job}:addOperations` with partial failure enabled (one `create` or `remove` per row, carrying the row's
`userIdentifiers`), `{job}:run`, then poll the job's status with a `googleAds:search` query until it ends
(bounded by `poll_timeout_seconds`). Every call goes through the same rate-limited, retrying client.
Partial failures come back per operation index and become that row's outcome.

Fields: `email`, `phone`, `first_name`, `last_name`, `country_code`, `postal_code`. Emails and phones are
hashed (SHA-256 of the normalized value, gmail dots removed, phones in E.164); an address is sent only when
first name, last name, country and postal code are all present (names hashed, country and postal code not).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
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
    SyncTarget,
    register,
)
from syncs.http import DestinationHTTPError

FINAL_STATUSES = frozenset({"SUCCESS", "FAILED"})


class _JobFailed(Exception):
    def __init__(self, rows: list[RowOutcome]) -> None:
        self.outcomes = rows


class GoogleCustomerMatchSettings(DestinationSettings):
    """`base_url` includes the API version (https://googleads.googleapis.com/v21)."""

    access_token_env: str
    developer_token_env: str
    login_customer_id: str | None = None
    poll_interval_seconds: float = 2.0
    poll_timeout_seconds: float = 600.0

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

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        if op is Operation.SEND:
            return fail_all(rows, "unsupported_operation", "user lists take members, not sends", permanent=True)
        sendable, outcomes = [], []
        for row in rows:
            identifiers = user_identifiers(row.fields)
            if identifiers:
                sendable.append((row, identifiers))
            else:
                message = "no usable email, phone or full address after normalization"
                outcomes.append(RowOutcome.failure(row.key, "no_identifier", message, permanent=True))
        if sendable:
            try:
                outcomes += self._run_job(op, sendable)
            except _JobFailed as failed:
                outcomes += failed.outcomes
        return outcomes

    def _run_job(self, op: Operation, sendable: list[tuple[OutboundRow, list[dict[str, Any]]]]) -> list[RowOutcome]:
        rows = [row for row, _ in sendable]
        job_spec = {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": {"userList": self.user_list}}
        job = self._post(f"{self.customer}/offlineUserDataJobs:create", {"job": job_spec}, rows)["resourceName"]
        verb = "remove" if op is Operation.REMOVE else "create"
        operations = [{verb: {"userIdentifiers": identifiers}} for _, identifiers in sendable]
        added = self._post(f"{job}:addOperations", {"enablePartialFailure": True, "operations": operations}, rows)
        failed = _failed_indexes(added.get("partialFailureError"))
        self._post(f"{job}:run", {}, rows)
        status = self._wait(job, rows)
        if status != "SUCCESS":
            code = "job_failed" if status == "FAILED" else "job_pending"
            return fail_all(rows, code, f"offline user data job ended {status}")
        return [
            RowOutcome.failure(row.key, failed[i], "Google rejected this row's identifiers", permanent=True)
            if i in failed
            else RowOutcome.success(row.key, destination_ref=job)
            for i, row in enumerate(rows)
        ]

    def _wait(self, job: str, rows: list[OutboundRow]) -> str:
        query = (
            "SELECT offline_user_data_job.status FROM offline_user_data_job "
            f"WHERE offline_user_data_job.resource_name = '{job}'"
        )
        deadline = time.monotonic() + self.settings.poll_timeout_seconds
        while True:
            results = self._post(f"{self.customer}/googleAds:search", {"query": query}, rows).get("results", [])
            status = results[0]["offlineUserDataJob"]["status"] if results else "UNKNOWN"
            if status in FINAL_STATUSES or time.monotonic() >= deadline:
                return status
            time.sleep(self.settings.poll_interval_seconds)

    def _post(self, path: str, body: dict[str, Any], rows: list[OutboundRow]) -> dict[str, Any]:
        try:
            response = self.http.request("POST", path, json=body)
        except DestinationHTTPError as error:
            raise _JobFailed(fail_batch_for_error(rows, error)) from None
        if not response.ok:
            raise _JobFailed(fail_batch_for_response(rows, response, f"Google Ads {path.rsplit(':', 1)[-1]}"))
        return response.json()

    def close(self, *, success: bool) -> None:
        self.http.close()


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
