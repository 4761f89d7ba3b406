"""Google Ads API stand-in for Customer Match offline user data jobs (REST, JSON in camelCase).

Enforced: `Authorization: Bearer` and `developer-token` headers; the job flow: create, then addOperations in as
many requests as needed while the job is PENDING, then run it once, then read its status with
googleAds:search. Operations added to a job that has started, and a second run, are refused with 400
FAILED_PRECONDITION (JOB_ALREADY_STARTED). A request holds at most 100,000 user identifiers and an operation at
most 20 (TOO_MANY_USER_IDENTIFIERS); create and remove operations never share a job (CONFLICTING_OPERATION).
Also the operation shape, SHA-256 hex for hashed identifiers, and partial failure per operation index (without
`enablePartialFailure`, one bad operation fails the whole request). A job that runs reports RUNNING for
`RUNNING_POLLS` status reads, then SUCCESS: its members are applied to the user list then. Status reads name one
job (`resource_name = '...'`) or several (`resource_name IN ('...', ...)`), and a FAILED job has a
`failureReason`.

Test hooks: `lost_answers[action] = n` makes the next n requests to `create`, `addOperations` or `run` take effect
and then answer 503, as when Google's answer is lost on its way back; `failing_jobs[verb] = n` makes the next n
jobs of that verb (`create` or `remove`) that finish end FAILED, having applied only their first half of
operations (Google: "some operations may have been successfully processed"); `refused_runs[verb] = n` refuses
the next n `:run` requests of jobs of that verb (400); `held_runs[verb] = ran` holds the next `:run` of a job of
that verb unanswered (the job runs first when `ran`, as when the client dies waiting for the answer; it never
does otherwise, as when the client dies before sending it), sets `run_held` and waits for `release_held_runs()`,
then answers 503; `members()` reads a user list once
every job that runs has finished, in the order they ran, or newest first with `newest_first = True` (Google may
process two jobs on one list in either order); `finish_newest_job()` processes the last job run ahead of the others.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from typing import Any

from syncs.sandbox.apps.credentials import GOOGLE_ADS_ACCESS_TOKEN, GOOGLE_ADS_DEVELOPER_TOKEN, SANDBOX_CREDENTIALS
from syncs.sandbox.server import Request, Response, SandboxApp, route

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_IDENTIFIERS_PER_REQUEST = 100_000
MAX_IDENTIFIERS_PER_OPERATION = 20
RUNNING_POLLS = 3
JOB = r"/v\d+/customers/(?P<cid>\d+)/offlineUserDataJobs/(?P<job>\d+)"


def google_error(status: int, state: str, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    details = [{"@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure", "errors": errors}]
    body = {"error": {"code": status, "message": message, "status": state, "details": details if errors else []}}
    return Response(status, body)


def job_error(status: int, state: str, code: str, message: str) -> Response:
    return google_error(status, state, message, [{"errorCode": {"offlineUserDataJobError": code}, "message": message}])


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
            self.lost_answers: dict[str, int] = {}  # action -> answers still to lose
            self.failing_jobs: dict[str, int] = {}  # verb -> jobs still to fail
            self.refused_runs: dict[str, int] = {}  # verb -> `:run` requests still to refuse
            self.newest_first = False
            self._runs = itertools.count()
            self.held_runs: dict[str, bool] = {}  # verb -> whether the held `:run` takes effect
            self.run_held = threading.Event()
            if (release := getattr(self, "_release", None)) is not None:
                release.set()  # a request held before the reset ends now
            self._release = threading.Event()

    def release_held_runs(self) -> None:
        """Let every held `:run` request end; a later hold waits anew (for tests)."""
        with self.lock:
            release, self._release = self._release, threading.Event()
            self.run_held.clear()
        release.set()

    def _refusal(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if request.headers.get("developer-token") != self.developer_token:
            return google_error(403, "PERMISSION_DENIED", "The developer token is not valid.")
        return None

    def _answer(self, action: str, response: Response) -> Response:
        """The answer to a request that took effect, unless a test asked to lose it."""
        with self.lock:
            if self.lost_answers.get(action, 0) > 0:
                self.lost_answers[action] -= 1
                return google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        return response

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
            self.jobs[name] = {"status": "PENDING", "userList": user_list, "operations": [], "verb": None, "polls": 0}
        return self._answer("create", Response(200, {"resourceName": name}))

    @route("POST", JOB + r":addOperations")
    def add_operations(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        body = request.json() or {}
        operations = body.get("operations")
        if not isinstance(operations, list) or not operations:
            return google_error(400, "INVALID_ARGUMENT", "operations must hold at least one operation.")
        if sum(map(_identifier_count, operations)) > MAX_IDENTIFIERS_PER_REQUEST:
            message = f"A request holds at most {MAX_IDENTIFIERS_PER_REQUEST} user identifiers."
            return job_error(400, "INVALID_ARGUMENT", "TOO_MANY_USER_IDENTIFIERS", message)
        errors = []
        for index, operation in enumerate(operations):
            code = _operation_error(operation)
            if code:
                location = {"fieldPathElements": [{"fieldName": "operations", "index": index}]}
                errors.append({"errorCode": {"offlineUserDataJobError": code}, "message": code, "location": location})
        if errors and not body.get("enablePartialFailure"):
            return google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", errors)
        bad = {e["location"]["fieldPathElements"][0]["index"] for e in errors}
        kept = [op for i, op in enumerate(operations) if i not in bad]
        with self.lock:
            job = self.jobs.get(_job_name(request))
            if job is None:
                return google_error(404, "NOT_FOUND", "The offline user data job does not exist.")
            if job["status"] != "PENDING":
                message = "Operations cannot be added once the job has started."
                return job_error(400, "FAILED_PRECONDITION", "JOB_ALREADY_STARTED", message)
            verbs = {job["verb"], *(next(iter(op)) for op in kept)} - {None}
            if len(verbs) > 1:
                message = "Mixing creation and removal of offline data in the same job is not allowed."
                return job_error(400, "INVALID_ARGUMENT", "CONFLICTING_OPERATION", message)
            job["verb"] = next(iter(verbs), None)
            job["operations"] += kept
        answer: dict[str, Any] = {}
        if errors:
            answer["partialFailureError"] = {
                "code": 3,
                "message": "Multiple errors in 'details'.",
                "details": [
                    {"@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure", "errors": errors}
                ],
            }
        return self._answer("addOperations", Response(200, answer))

    @route("POST", JOB + r":run")
    def run_job(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        with self.lock:
            job = self.jobs.get(_job_name(request))
            if job is None:
                return google_error(404, "NOT_FOUND", "The offline user data job does not exist.")
            if job["status"] != "PENDING":
                return job_error(400, "FAILED_PRECONDITION", "JOB_ALREADY_STARTED", "The job has already started.")
            if not job["operations"]:
                return google_error(400, "FAILED_PRECONDITION", "The job has no operations to run.")
            if self.refused_runs.get(job["verb"], 0) > 0:
                self.refused_runs[job["verb"]] -= 1
                return google_error(400, "FAILED_PRECONDITION", "The job cannot be run now.")
            held = job["verb"] in self.held_runs
            if not held or self.held_runs.pop(job["verb"]):
                job["status"], job["ran"] = "RUNNING", next(self._runs)
            release = self._release
        if held:
            self.run_held.set()
            release.wait(timeout=60)
            return google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        return self._answer(
            "run", Response(200, {"name": f"customers/{request.params['cid']}/operations/{uuid.uuid4().hex}"})
        )

    @route("POST", r"/v\d+/customers/(?P<cid>\d+)/googleAds:search")
    def search(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        query = str((request.json() or {}).get("query", ""))
        match = re.search(r"offline_user_data_job\.resource_name\s*(?:=\s*'[^']+'|in\s*\([^)]*\))", query, re.I)
        names = re.findall(r"'([^']+)'", match.group(0)) if match else []
        results = []
        with self.lock:
            for name in names:
                job = self.jobs.get(name)
                if job is None:
                    continue
                if job["status"] == "RUNNING":
                    job["polls"] += 1
                    if job["polls"] > RUNNING_POLLS:
                        self._complete(job)
                found = {"resourceName": name, "status": job["status"]}
                if job["status"] == "FAILED":
                    found["failureReason"] = "UNKNOWN"
                results.append({"offlineUserDataJob": found})
        return Response(200, {"results": results})

    def _complete(self, job: dict[str, Any]) -> None:
        members = self.user_lists.setdefault(job["userList"], set())
        operations, job["status"] = job["operations"], "SUCCESS"
        if self.failing_jobs.get(job["verb"], 0) > 0:
            self.failing_jobs[job["verb"]] -= 1
            operations, job["status"] = operations[: len(operations) // 2], "FAILED"
        for operation in operations:
            verb = "create" if "create" in operation else "remove"
            for identifier in operation[verb]["userIdentifiers"]:
                ((kind, value),) = identifier.items()
                key = (kind, json.dumps(value, sort_keys=True) if isinstance(value, dict) else value)
                (members.add if verb == "create" else members.discard)(key)

    def finish_newest_job(self) -> None:
        """Process the job that ran last among those still running, ahead of the others (for tests)."""
        with self.lock:
            running = [job for job in self.jobs.values() if job["status"] == "RUNNING"]
            if running:
                self._complete(max(running, key=lambda job: job["ran"]))

    def members(self, user_list: str) -> set[str]:
        """Hashed emails in a user list once every job that runs has finished (for assertions)."""
        with self.lock:
            running = [job for job in self.jobs.values() if job["status"] == "RUNNING"]
            for job in sorted(running, key=lambda job: job["ran"], reverse=self.newest_first):
                self._complete(job)
            return {value for kind, value in self.user_lists.get(user_list, set()) if kind == "hashedEmail"}


def _job_name(request: Request) -> str:
    return f"customers/{request.params['cid']}/offlineUserDataJobs/{request.params['job']}"


def _identifier_count(operation: Any) -> int:
    data = next(iter(operation.values()), None) if isinstance(operation, dict) else None
    identifiers = data.get("userIdentifiers") if isinstance(data, dict) else None
    return len(identifiers) if isinstance(identifiers, list) else 0


def _operation_error(operation: Any) -> str | None:
    if not isinstance(operation, dict) or len(operation) != 1 or next(iter(operation)) not in ("create", "remove"):
        return "INVALID_OPERATION"
    data = next(iter(operation.values()))
    identifiers = data.get("userIdentifiers") if isinstance(data, dict) else None
    if not isinstance(identifiers, list) or not identifiers:
        return "INVALID_USER_IDENTIFIER"
    if len(identifiers) > MAX_IDENTIFIERS_PER_OPERATION:
        return "TOO_MANY_USER_IDENTIFIERS"
    return next((code for code in map(_identifier_error, identifiers) if code), None)
