"""Mailchimp Marketing API v3.0 stand-in: batch member upserts, static segments, archiving, member events.

Every list id exists (created on first use). Enforced: HTTP Basic with the API key as password, 500 members
per batch or segment call (400 beyond), at most 10 simultaneous connections (429), per-member errors for
invalid addresses, and events deduplicated by their `idempotency_key` property.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from syncs.sandbox.apps.credentials import MAILCHIMP_API_KEY, SANDBOX_CREDENTIALS
from syncs.sandbox.server import Request, Response, SandboxApp, problem, route

MAX_MEMBERS = 500
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
            self.events: list[dict[str, Any]] = []  # delivered events, each once
            self._event_keys: set[str] = set()
            self.stats.update(duplicate_events=0)

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
                return Response(204)
            if key:
                self._event_keys.add(key)
            self.events.append({"list_id": request.params["list_id"], "email_address": member["email_address"], **body})
        return Response(204)
