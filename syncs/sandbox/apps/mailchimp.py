"""Mailchimp Marketing API v3.0 stand-in: batch member upserts, static segments, archiving, member events.

Every list id exists (created on first use). Enforced: HTTP Basic with the API key as password, 500 members
per batch or segment call (400 beyond), at most 10 simultaneous connections (429), per-member errors for
invalid addresses. Like the real API, events have no idempotency key: every event posted is stored, and a
member's events are read back with `GET .../events` (`count` at most 1000, `offset`, `total_items`). An event
whose `idempotency_key` property was posted before is counted in `duplicate_events`, for tests to assert 0.
`event_answer_delay_seconds` (set in-process by tests) holds each event's answer back after the event is stored:
a client that times out meanwhile has lost the answer of a stored event.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from datetime import UTC, datetime
from typing import Any

from syncs.sandbox.apps.credentials import MAILCHIMP_API_KEY, SANDBOX_CREDENTIALS
from syncs.sandbox.server import Request, Response, SandboxApp, problem, route

MAX_MEMBERS = 500
MAX_EVENTS_PAGE = 1000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
EVENT_NAME = re.compile(r"^[A-Za-z0-9_-]{2,30}$")
STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})


def subscriber_hash(address: str) -> str:
    return hashlib.md5(address.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpApp(SandboxApp):
    name = "mailchimp"
    prefix = "/mailchimp/3.0"
    default_max_concurrent = 10

    def __init__(self, *, api_key: str | None = None, **limits: Any) -> None:
        self.api_key = api_key or SANDBOX_CREDENTIALS[MAILCHIMP_API_KEY]
        super().__init__(**limits)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.members: dict[str, dict[str, dict[str, Any]]] = {}  # list id -> subscriber hash -> member
            self.segments: dict[tuple[str, str], set[str]] = {}  # (list id, segment id) -> subscriber hashes
            self.events: list[dict[str, Any]] = []  # every event posted, in arrival order
            self._member_events: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (list id, member id) -> events
            self._event_keys: set[str] = set()
            self.stats.update(duplicate_events=0)
            self.event_answer_delay_seconds = 0.0

    def segment(self, list_id: str, segment_id: str) -> set[str]:
        """Email addresses in a segment (for assertions)."""
        with self.lock:
            hashes = self.segments.get((list_id, str(segment_id)), set())
            return {self.members[list_id][h]["email_address"] for h in hashes}

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return password == self.api_key

    def _unauthorized(self) -> Response:
        return problem(
            401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter."
        )

    @route("POST", r"/lists/(?P<list_id>[^/]+)")
    def batch_members(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        body = request.json()
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, list):
            return problem(400, "Invalid Resource", "The resource submitted could not be validated.")
        if len(members) > MAX_MEMBERS:
            return problem(400, "Invalid Resource", f"A maximum of {MAX_MEMBERS} members can be submitted at once.")
        update_existing = bool(body.get("update_existing"))
        created, updated, errors = [], [], []
        with self.lock:
            listed = self.members.setdefault(request.params["list_id"], {})
            for member in members:
                address = str(member.get("email_address") or "")
                status = member.get("status_if_new") or member.get("status")
                if not EMAIL.match(address) or status not in STATUSES:
                    errors.append(
                        {
                            "email_address": address,
                            "error": f"{address} looks fake or invalid, please enter a real email address.",
                            "error_code": "ERROR_GENERIC",
                        }
                    )
                    continue
                member_id = subscriber_hash(address)
                existing = listed.get(member_id)
                if existing is not None and not update_existing:
                    errors.append(
                        {"email_address": address, "error": "member exists", "error_code": "ERROR_CONTACT_EXISTS"}
                    )
                    continue
                merge_fields = {**(existing or {}).get("merge_fields", {}), **(member.get("merge_fields") or {})}
                record = {
                    "id": member_id,
                    "email_address": address.lower(),
                    "status": existing["status"] if existing and existing["status"] != "archived" else status,
                    "merge_fields": merge_fields,
                }
                listed[member_id] = record
                (updated if existing else created).append(record)
        body = {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
        }
        return Response(200, body)

    @route("POST", r"/lists/(?P<list_id>[^/]+)/segments/(?P<segment_id>[^/]+)")
    def segment_members(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        body = request.json() or {}
        to_add, to_remove = body.get("members_to_add", []), body.get("members_to_remove", [])
        if len(to_add) > MAX_MEMBERS or len(to_remove) > MAX_MEMBERS:
            return problem(400, "Invalid Resource", f"At most {MAX_MEMBERS} members can be added or removed at once.")
        list_id, segment_id = request.params["list_id"], request.params["segment_id"]
        with self.lock:
            listed = self.members.setdefault(list_id, {})
            segment = self.segments.setdefault((list_id, segment_id), set())
            added, removed, missing = [], [], []
            for address in to_add:
                member_id = subscriber_hash(address)
                if member_id not in listed:
                    missing.append(address)
                    continue
                segment.add(member_id)
                added.append({"email_address": address, "id": member_id})
            for address in to_remove:
                member_id = subscriber_hash(address)
                if member_id in segment:
                    segment.discard(member_id)
                    removed.append({"email_address": address, "id": member_id})
        errors = [{"email_addresses": missing, "error": "Email addresses are not on the list."}] if missing else []
        return Response(
            200,
            {
                "members_added": added,
                "members_removed": removed,
                "errors": errors,
                "total_added": len(added),
                "total_removed": len(removed),
                "error_count": len(missing),
            },
        )

    @route("DELETE", r"/lists/(?P<list_id>[^/]+)/members/(?P<member_id>[0-9a-f]{32})")
    def archive_member(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        with self.lock:
            member = self.members.get(request.params["list_id"], {}).get(request.params["member_id"])
            if member is None or member["status"] == "archived":
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            member["status"] = "archived"
        return Response(204)

    @route("POST", r"/lists/(?P<list_id>[^/]+)/members/(?P<member_id>[0-9a-f]{32})/events")
    def member_event(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        body = request.json() or {}
        name, properties = body.get("name"), body.get("properties") or {}
        if not isinstance(name, str) or not EVENT_NAME.match(name) or not isinstance(properties, dict):
            return problem(400, "Invalid Resource", "name must be 2-30 letters, digits, '_' or '-'.")
        if any(not isinstance(v, str) for v in properties.values()):
            return problem(400, "Invalid Resource", "event property values must be strings.")
        with self.lock:
            member = self.members.get(request.params["list_id"], {}).get(request.params["member_id"])
            if member is None:
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            key = properties.get("idempotency_key")
            if key in self._event_keys:
                self.count("duplicate_events")
            elif key:
                self._event_keys.add(key)
            event = {
                "list_id": request.params["list_id"],
                "email_address": member["email_address"],
                **body,
                "occurred_at": body.get("occurred_at") or datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self.events.append(event)
            self._member_events.setdefault((request.params["list_id"], request.params["member_id"]), []).append(event)
        time.sleep(self.event_answer_delay_seconds)
        return Response(204)

    @route("GET", r"/lists/(?P<list_id>[^/]+)/members/(?P<member_id>[0-9a-f]{32})/events")
    def member_events(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            count = int(request.query.get("count", ["10"])[0])
            offset = int(request.query.get("offset", ["0"])[0])
        except ValueError:
            return problem(400, "Invalid Resource", "count and offset must be integers.")
        if not 1 <= count <= MAX_EVENTS_PAGE or offset < 0:
            return problem(400, "Invalid Resource", f"count must be 1 to {MAX_EVENTS_PAGE}; offset at least 0.")
        list_id, member_id = request.params["list_id"], request.params["member_id"]
        with self.lock:
            if member_id not in self.members.get(list_id, {}):
                return problem(404, "Resource Not Found", "The requested resource could not be found.")
            events = self._member_events.get((list_id, member_id), [])
            page = [
                {"name": e["name"], "properties": e.get("properties") or {}, "occurred_at": e["occurred_at"]}
                for e in events[offset : offset + count]
            ]
            return Response(200, {"events": page, "total_items": len(events), "_links": []})
