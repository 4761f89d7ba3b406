"""SendGrid Marketing Contacts stand-in: async upsert jobs, job polling, error reports, list removal.

Enforced: Bearer API key, at most 30,000 contacts and 6 MB per upsert, `X-RateLimit-*` headers, per-contact
errors for invalid emails (reported through the job's `errors_url` CSV), and jobs that stay `pending` for
one poll, so clients must poll, then finish `completed` (no errors), `errored` (some) or `failed` (all).
Validation refuses the whole upsert with a 400, `{"errors": [{"field": "contacts[3].first_name", "message"}]}`, one
error per invalid value, storing nothing: a reserved field over its documented length (`MAX_LENGTHS`), or a value
of the wrong type for a typed custom field (`CUSTOM_FIELD_TYPES`; other custom field ids take any value). With
`errors_name_contacts` off, `field` leaves out the `contacts[i].` part, so a client cannot tell which contact.
Contact search by emails takes at most 100 addresses, all valid (else 400), answers `contact not found` for
the addresses it does not know, and 404 when it knows none.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from syncs.sandbox.apps.credentials import SANDBOX_CREDENTIALS, SENDGRID_API_KEY
from syncs.sandbox.server import Request, Response, SandboxApp, route

MAX_CONTACTS = 30_000
MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_SEARCH_EMAILS = 100
MAX_LENGTHS = {  # SendGrid's documented maxLength of reserved contact fields
    "first_name": 50,
    "last_name": 50,
    "address_line_1": 100,
    "address_line_2": 100,
    "city": 60,
    "state_province_region": 50,
    "country": 50,
}
CUSTOM_FIELD_TYPES = {"e1_N": "Number", "e2_D": "Date"}  # custom field ids, typed as SendGrid ids are (`_N`, `_D`)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")


def valid_email(email: str) -> bool:
    return bool(EMAIL.match(email)) and len(email.partition("@")[0]) <= 64  # RFC 5321 local-part limit


def fits_type(value: Any, field_type: str) -> bool:
    """A Number takes a number or numeric text; a Date, an ISO 8601 date (or date-time)."""
    parse: Callable[[str], object] = float if field_type == "Number" else lambda text: date.fromisoformat(text[:10])
    try:
        parse(str(value))
    except ValueError:
        return False
    return not isinstance(value, bool)


def sendgrid_error(status: int, message: str, field: str | None = None) -> Response:
    return Response(status, {"errors": [{"field": field, "message": message}]})


class SendGridApp(SandboxApp):
    name = "sendgrid"
    prefix = "/sendgrid"
    default_requests_per_second = 20

    def __init__(self, *, api_key: str | None = None, **limits: Any) -> None:
        self.api_key = api_key or SANDBOX_CREDENTIALS[SENDGRID_API_KEY]
        super().__init__(**limits)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.contacts: dict[str, dict[str, Any]] = {}  # email -> contact (with id and list_ids)
            self.jobs: dict[str, dict[str, Any]] = {}
            self.job_errors: dict[str, list[tuple[str, str]]] = {}
            self.errors_name_contacts = True

    def list_members(self, list_id: str) -> set[str]:
        with self.lock:
            return {email for email, c in self.contacts.items() if list_id in c["list_ids"]}

    def _refusal(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return sendgrid_error(401, "authorization required")
        return None

    def _limited(self, response: Response) -> Response:
        rate = self.limit.rate or 0
        response.headers.update(
            {"X-RateLimit-Limit": str(int(rate)), "X-RateLimit-Remaining": str(int(rate)), "X-RateLimit-Reset": "1"}
        )
        return response

    @route("PUT", r"/v3/marketing/contacts")
    def upsert(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        if len(request.body) > MAX_BODY_BYTES:
            return sendgrid_error(413, "request body must be at most 6 MB")
        body = request.json() or {}
        contacts, list_ids = body.get("contacts"), body.get("list_ids") or []
        if not isinstance(contacts, list) or not contacts:
            return sendgrid_error(400, "contacts is required", "contacts")
        if len(contacts) > MAX_CONTACTS:
            return sendgrid_error(400, f"at most {MAX_CONTACTS} contacts per request", "contacts")
        self.count("upserts")
        if invalid := self._invalid(contacts):
            return Response(400, {"errors": invalid})
        job_id = str(uuid.uuid4())
        errors = []
        with self.lock:
            for contact in contacts:
                email = str(contact.get("email") or "").lower()
                if not valid_email(email):
                    errors.append((email, "invalid email"))
                    continue
                stored = self.contacts.setdefault(email, {"id": str(uuid.uuid4()), "list_ids": set()})
                stored.update({k: v for k, v in contact.items() if k != "email"}, email=email)
                stored["list_ids"] |= set(list_ids)
            self.job_errors[job_id] = errors
            self.jobs[job_id] = {
                "id": job_id,
                "status": "pending",
                "job_type": "upsert",
                "polls": 0,
                "results": {
                    "requested_count": len(contacts),
                    "created_count": len(contacts) - len(errors),
                    "updated_count": 0,
                    "deleted_count": 0,
                    "errored_count": len(errors),
                },
            }
        return self._limited(Response(202, {"job_id": job_id}))

    def _invalid(self, contacts: list[dict[str, Any]]) -> list[dict[str, str]]:
        errors = []
        for index, contact in enumerate(contacts):
            custom = contact.get("custom_fields") or {}
            for name, limit in MAX_LENGTHS.items():
                if len(str(contact.get(name) or "")) > limit:
                    errors.append((index, name, "exceeds the maximum length"))
            for field_id, field_type in CUSTOM_FIELD_TYPES.items():
                if field_id in custom and not fits_type(custom[field_id], field_type):
                    errors.append((index, f"custom_fields.{field_id}", f"is not a valid {field_type}"))
        prefix = "contacts[{}]." if self.errors_name_contacts else ""
        return [{"field": prefix.format(index) + field, "message": message} for index, field, message in errors]

    @route("GET", r"/v3/marketing/contacts/imports/(?P<job_id>[0-9a-f-]+)")
    def import_status(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        host = request.headers.get("host", "127.0.0.1")
        with self.lock:
            job = self.jobs.get(request.params["job_id"])
            if job is None:
                return sendgrid_error(404, "job not found")
            job["polls"] += 1
            if job["polls"] > 1:
                job["status"] = _finished_status(job["results"])
            answer = {k: v for k, v in job.items() if k != "polls"}
            if job["status"] != "pending" and job["results"]["errored_count"]:
                answer["results"] = {
                    **job["results"],
                    "errors_url": f"http://{host}{self.prefix}/_errors/{job['id']}.csv",
                }
        return self._limited(Response(200, answer))

    @route("GET", r"/_errors/(?P<job_id>[0-9a-f-]+)\.csv")
    def errors_csv(self, request: Request) -> Response:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["email", "error"])
        with self.lock:
            writer.writerows(self.job_errors.get(request.params["job_id"], []))
        return Response(200, buffer.getvalue().encode(), content_type="text/csv")

    @route("POST", r"/v3/marketing/contacts/search/emails")
    def search_emails(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        emails = (request.json() or {}).get("emails") or []
        if len(emails) > MAX_SEARCH_EMAILS:
            return sendgrid_error(400, f"at most {MAX_SEARCH_EMAILS} emails per search", "emails")
        if not all(isinstance(e, str) and valid_email(e.lower()) for e in emails):
            return sendgrid_error(400, "invalid email address", "emails")
        with self.lock:
            found = {e.lower(): self.contacts.get(e.lower()) for e in emails}
        if not any(found.values()):
            return sendgrid_error(404, "no contacts found")
        result = {
            e: {"contact": {"id": contact["id"], "email": e}} if contact else {"error": "contact not found"}
            for e, contact in found.items()
        }
        return self._limited(Response(200, {"result": result}))

    @route("DELETE", r"/v3/marketing/lists/(?P<list_id>[^/]+)/contacts")
    def remove_from_list(self, request: Request) -> Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        ids = set(",".join(request.query.get("contact_ids", [])).split(",")) - {""}
        if not ids:
            return sendgrid_error(400, "contact_ids is required", "contact_ids")
        with self.lock:
            for contact in self.contacts.values():
                if contact["id"] in ids:
                    contact["list_ids"].discard(request.params["list_id"])
        return self._limited(Response(202, {"job_id": str(uuid.uuid4())}))


def _finished_status(results: dict[str, int]) -> str:
    if not results["errored_count"]:
        return "completed"
    return "failed" if results["errored_count"] == results["requested_count"] else "errored"
