"""Google Ads API stand-in for Customer Match offline user data jobs (REST, JSON in camelCase).

Enforced: `Authorization: Bearer` and `developer-token` headers, the job flow (create -> addOperations while
PENDING -> run -> status via googleAds:search; a job reports RUNNING once before SUCCESS so clients must
poll), the operation shape, SHA-256 hex for hashed identifiers, and partial failure per operation index
(without `enablePartialFailure`, one bad operation fails the whole request). Members are applied to the
user list when the job succeeds.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from syncs.sandbox.apps.credentials import GOOGLE_ADS_ACCESS_TOKEN, GOOGLE_ADS_DEVELOPER_TOKEN, SANDBOX_CREDENTIALS
from syncs.sandbox.server import Request, Response, SandboxApp, route

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_OPERATIONS = 100_000
JOB = r"/v\d+/customers/(?P<cid>\d+)/offlineUserDataJobs/(?P<job>\d+)"


def google_error(status: int, state: str, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    details = [{"@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure", "errors": errors}]
    body = {"error": {"code": status, "message": message, "status": state, "details": details if errors else []}}
    return Response(status, body)


def _identifier_error(identifier: Any) -> str | None:
    if not isinstance(identifier, dict) or len(identifier) != 1:
        return "INVALID_USER_IDENTIFIER"
    ((kind, value),) = identifier.items()
    if kind in ("hashedEmail", "hashedPhoneNumber"):
        return None if isinstance(value, str) and SHA256.match(value) else "INVALID_SHA256_FORMAT"
    if kind == "addressInfo" and isinstance(value, dict):
        hashed_ok = all(SHA256.match(str(value.get(k, ""))) for k in ("hashedFirstName", "hashedLastName"))
        country_ok = re.match(r"^[A-Z]{2}$", str(value.get("countryCode", ""))) is not None
        return None if hashed_ok and country_ok and value.get("postalCode") else "INCOMPATIBLE_USER_IDENTIFIER"
    return "INVALID_USER_IDENTIFIER"


class GoogleAdsApp(SandboxApp):
    name = "google_ads"
    prefix = "/google-ads"
    default_requests_per_second = 50

    def __init__(self, *, access_token: str | None = None, developer_token: str | None = None, **limits: Any) -> None:
        self.access_token = access_token or SANDBOX_CREDENTIALS[GOOGLE_ADS_ACCESS_TOKEN]
        self.developer_token = developer_token or SANDBOX_CREDENTIALS[GOOGLE_ADS_DEVELOPER_TOKEN]
        super().__init__(**limits)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.jobs: dict[str, dict[str, Any]] = {}  # job resource name -> job
            self.user_lists: dict[str, set[tuple[str, str]]] = {}  # user list -> (identifier kind, value)

    def _refusal(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if request.headers.get("developer-token") != self.developer_token:
            return google_error(403, "PERMISSION_DENIED", "The developer token is not valid.")
        return None

    @route("POST", r"/v\d+/customers/(?P<cid>\d+)/offlineUserDataJobs:create")
    def create_job(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        job = (request.json() or {}).get("job") or {}
        user_list = (job.get("customerMatchUserListMetadata") or {}).get("userList", "")
        if job.get("type") != "CUSTOMER_MATCH_USER_LIST" or not user_list.startswith(
            f"customers/{request.params['cid']}/userLists/"
        ):
            return google_error(400, "INVALID_ARGUMENT", "job needs type CUSTOMER_MATCH_USER_LIST and its userList.")
        name = f"customers/{request.params['cid']}/offlineUserDataJobs/{uuid.uuid4().int % 10**12}"
        with self.lock:
            self.jobs[name] = {"status": "PENDING", "userList": user_list, "operations": [], "polls": 0}
        return Response(200, {"resourceName": name})

    @route("POST", JOB + r":addOperations")
    def add_operations(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        body = request.json() or {}
        operations = body.get("operations")
        if not isinstance(operations, list) or not operations or len(operations) > MAX_OPERATIONS:
            return google_error(400, "INVALID_ARGUMENT", f"operations must hold 1 to {MAX_OPERATIONS} items.")
        errors = []
        for index, operation in enumerate(operations):
            code = _operation_error(operation)
            if code:
                location = {"fieldPathElements": [{"fieldName": "operations", "index": index}]}
                errors.append({"errorCode": {"offlineUserDataJobError": code}, "message": code, "location": location})
        if errors and not body.get("enablePartialFailure"):
            return google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", errors)
        name = _job_name(request)
        with self.lock:
            job = self.jobs.get(name)
            if job is None or job["status"] != "PENDING":
                return google_error(400, "FAILED_PRECONDITION", "operations can only be added to a PENDING job.")
            bad = {e["location"]["fieldPathElements"][0]["index"] for e in errors}
            job["operations"] += [op for i, op in enumerate(operations) if i not in bad]
        answer: dict[str, Any] = {}
        if errors:
            answer["partialFailureError"] = {
                "code": 3,
                "message": "Multiple errors in 'details'.",
                "details": [
                    {"@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure", "errors": errors}
                ],
            }
        return Response(200, answer)

    @route("POST", JOB + r":run")
    def run_job(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        name = _job_name(request)
        with self.lock:
            job = self.jobs.get(name)
            if job is None or job["status"] != "PENDING" or not job["operations"]:
                return google_error(400, "FAILED_PRECONDITION", "only a PENDING job with operations can run.")
            job["status"] = "RUNNING"
        return Response(200, {"name": f"customers/{request.params['cid']}/operations/{uuid.uuid4().hex}"})

    @route("POST", r"/v\d+/customers/(?P<cid>\d+)/googleAds:search")
    def search(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        query = str((request.json() or {}).get("query", ""))
        match = re.search(r"offline_user_data_job\.resource_name\s*=\s*'([^']+)'", query)
        with self.lock:
            job = self.jobs.get(match.group(1)) if match else None
            if job is None:
                return Response(200, {"results": []})
            if job["status"] == "RUNNING":
                job["polls"] += 1
                if job["polls"] > 1:
                    self._complete(job)
            return Response(
                200, {"results": [{"offlineUserDataJob": {"resourceName": match.group(1), "status": job["status"]}}]}
            )

    def _complete(self, job: dict[str, Any]) -> None:
        members = self.user_lists.setdefault(job["userList"], set())
        for operation in job["operations"]:
            verb = "create" if "create" in operation else "remove"
            for identifier in operation[verb]["userIdentifiers"]:
                ((kind, value),) = identifier.items()
                key = (kind, json.dumps(value, sort_keys=True) if isinstance(value, dict) else value)
                (members.add if verb == "create" else members.discard)(key)
        job["status"] = "SUCCESS"

    def members(self, user_list: str) -> set[str]:
        """Hashed emails in a user list (for assertions)."""
        with self.lock:
            return {value for kind, value in self.user_lists.get(user_list, set()) if kind == "hashedEmail"}


def _job_name(request: Request) -> str:
    return f"customers/{request.params['cid']}/offlineUserDataJobs/{request.params['job']}"


def _operation_error(operation: Any) -> str | None:
    if not isinstance(operation, dict) or len(operation) != 1 or next(iter(operation)) not in ("create", "remove"):
        return "INVALID_OPERATION"
    identifiers = next(iter(operation.values())).get("userIdentifiers")
    if not isinstance(identifiers, list) or not identifiers or len(identifiers) > 20:
        return "INVALID_USER_IDENTIFIER"
    return next((code for code in map(_identifier_error, identifiers) if code), None)
