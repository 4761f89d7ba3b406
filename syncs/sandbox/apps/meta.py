"""Meta Graph API Custom Audiences stand-in: `POST`/`DELETE /v{N}/{audience_id}/users`.

Enforced: `access_token` (body, query or Bearer), the multi-key payload shape, at most 10,000 rows per
request, lower-case hex SHA-256 values (EXTERN_ID excepted), and upload sessions (`batch_seq` increasing
from 1, nothing after `last_batch_flag`). Answers with `num_received`, `num_invalid_entries` (every invalid row)
and, as Meta does, only a sample of `invalid_entry_samples` (at most 10 invalid values). A row also counts as
invalid when it holds a value of `refused` (tests set it: Meta refuses values it cannot use). Keeps each
audience's members, and lists the sessions a client left inconsistent (`session_problems`), for assertions.
A request processed and then answered with the next status of `lost_answers` (500, 502, 504: a gateway lost the
answer), or answered `answer_delay_seconds` late (a client timing out meanwhile), simulates an answer lost after
Meta took the batch (tests set both in-process).
"""

from __future__ import annotations

import re
import time
from typing import Any

from syncs.sandbox.apps.credentials import META_ACCESS_TOKEN, SANDBOX_CREDENTIALS
from syncs.sandbox.server import Request, Response, SandboxApp, route

MAX_ROWS = 10_000
MAX_SAMPLES = 10
KEYS = frozenset(
    {
        "EXTERN_ID",
        "EMAIL",
        "PHONE",
        "GEN",
        "DOBY",
        "DOBM",
        "DOBD",
        "LN",
        "FN",
        "FI",
        "CT",
        "ST",
        "ZIP",
        "MADID",
        "COUNTRY",
    }
)
UNHASHED = frozenset({"EXTERN_ID", "MADID"})
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def graph_error(status: int, message: str, code: int, error_type: str = "OAuthException") -> Response:
    return Response(status, {"error": {"message": message, "type": error_type, "code": code, "fbtrace_id": "sandbox"}})


class MetaApp(SandboxApp):
    name = "meta"
    prefix = "/meta"
    default_requests_per_second = 50

    def __init__(self, *, access_token: str | None = None, **limits: Any) -> None:
        self.access_token = access_token or SANDBOX_CREDENTIALS[META_ACCESS_TOKEN]
        super().__init__(**limits)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.audiences: dict[str, set[tuple[tuple[str, str], ...]]] = {}  # audience -> member identities
            # session id -> {batches, rows, estimates: (estimated_num_total, rows received by then) per batch, last}
            self.sessions: dict[int, dict[str, Any]] = {}
            self.refused: set[str] = set()  # values answered as invalid entries
            self.uploads: list[dict[str, Any]] = []  # method, audience, schema, rows, session of each request
            self.lost_answers: list[int] = []  # statuses answering the next processed requests instead of 200
            self.answer_delay_seconds = 0.0  # each processed request's answer held back this long

    @route("POST", r"/v(?P<version>\d+\.\d+)/(?P<audience_id>[^/]+)/users")
    def add_users(self, request: Request) -> Response:
        return self._users(request, adding=True)

    @route("DELETE", r"/v(?P<version>\d+\.\d+)/(?P<audience_id>[^/]+)/users")
    def remove_users(self, request: Request) -> Response:
        return self._users(request, adding=False)

    def _users(self, request: Request, *, adding: bool) -> Response:
        body = request.json() or {}
        if not isinstance(body, dict):
            return graph_error(400, "(#100) Invalid parameter", 100, "GraphMethodException")
        token = body.get("access_token") or (request.query.get("access_token") or [""])[0]
        token = token or request.headers.get("authorization", "").removeprefix("Bearer ")
        if token != self.access_token:
            return graph_error(401, "Invalid OAuth access token - Cannot parse access token", 190)
        payload = body.get("payload")
        problem = _payload_problem(payload)
        if problem:
            return graph_error(400, f"(#100) {problem}", 100, "GraphMethodException")
        schema, data = payload["schema"], payload["data"]
        with self.lock:
            session = body.get("session")
            refusal = self._advance_session(session, len(data)) if session is not None else None
            if refusal:
                return graph_error(400, f"(#100) {refusal}", 100, "GraphMethodException")
            invalid: dict[str, str] = {}
            num_invalid = 0
            members = self.audiences.setdefault(request.params["audience_id"], set())
            for row in data:
                unhashed = [
                    v for k, v in zip(schema, row, strict=True) if v and k not in UNHASHED and not SHA256.match(v)
                ]
                refused = [v for v in row if v in self.refused]
                if unhashed or refused or not any(row):
                    num_invalid += 1
                    for value in unhashed:
                        invalid[value] = "not a lower-case hex SHA-256 value"
                    for value in refused:
                        invalid[value] = "refused identifier"
                    if not any(row):
                        invalid["(empty row)"] = "row has no identifier"
                    continue
                member = tuple(sorted((k, v) for k, v in zip(schema, row, strict=True) if v))
                (members.add if adding else members.discard)(member)
            self.uploads.append(
                {
                    "method": request.method,
                    "audience_id": request.params["audience_id"],
                    "schema": schema,
                    "rows": len(data),
                    "session": session,
                }
            )
            lost = self.lost_answers.pop(0) if self.lost_answers else None
        time.sleep(self.answer_delay_seconds)
        if lost is not None:
            return graph_error(lost, "An unexpected error has occurred. Please retry your request later.", 2)
        response = {
            "audience_id": request.params["audience_id"],
            "session_id": session.get("session_id") if isinstance(session, dict) else None,
            "num_received": len(data),
            "num_invalid_entries": num_invalid,
            "invalid_entry_samples": dict(list(invalid.items())[:MAX_SAMPLES]),
        }
        return Response(200, response)

    def _advance_session(self, session: Any, payload_rows: int) -> str | None:
        fields = ("session_id", "batch_seq", "last_batch_flag")
        if not isinstance(session, dict) or any(f not in session for f in fields):
            return "session needs session_id, batch_seq and last_batch_flag"
        state = self.sessions.get(session["session_id"]) or {"batches": [], "rows": 0, "estimates": [], "last": False}
        if state["last"]:
            return "the session was already finished by a batch with last_batch_flag"
        if not isinstance(session["batch_seq"], int) or session["batch_seq"] < 1:
            return "batch_seq starts at 1"
        if state["batches"] and session["batch_seq"] <= state["batches"][-1]:
            return "batch_seq must increase within a session"
        self.sessions[session["session_id"]] = state
        state["batches"].append(session["batch_seq"])
        state["rows"] += payload_rows
        state["last"] = bool(session["last_batch_flag"])
        state["estimates"].append((session.get("estimated_num_total"), state["rows"]))
        return None

    def session_problems(self) -> list[str]:
        """Sessions never ended by a batch with `last_batch_flag`, and sessions whose `estimated_num_total` fell
        below the rows they had received or, on their last batch, was not the rows they received. Meta takes
        such sessions; tests assert there are none."""
        problems = []
        with self.lock:
            for session_id, state in self.sessions.items():
                if not state["last"]:
                    problems.append(f"session {session_id} was never ended with last_batch_flag")
                if any(isinstance(estimate, int) and estimate < rows for estimate, rows in state["estimates"]):
                    problems.append(f"session {session_id}: estimated_num_total below the rows already received")
                final, _ = state["estimates"][-1]
                if state["last"] and isinstance(final, int) and final != state["rows"]:
                    problems.append(
                        f"session {session_id} ended with estimated_num_total {final} but received {state['rows']} rows"
                    )
        return problems


def _payload_problem(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "payload must be an object with schema and data"
    schema, data = payload.get("schema"), payload.get("data")
    if not isinstance(schema, list) or not schema or len(set(schema)) != len(schema) or not set(schema) <= KEYS:
        return f"schema must be a list of distinct keys from {sorted(KEYS)}"
    if not isinstance(data, list) or not data:
        return "data must be a non-empty list of rows"
    if len(data) > MAX_ROWS:
        return f"at most {MAX_ROWS} rows per request"
    if any(not isinstance(row, list) or len(row) != len(schema) for row in data):
        return "every data row must have one value per schema key"
    if any(not isinstance(v, str) for row in data for v in row):
        return "values must be strings"
    return None
