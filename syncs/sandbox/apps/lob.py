"""Print-and-mail API stand-in (Lob-style): postcards, letters and US address verification.

Enforced: HTTP Basic with the API key as user name, the piece shape (`to`, `from`, creative), per-piece 422
for incomplete addresses (a US one needs name, line 1, city, state and ZIP; an international one name and line 1,
as Lob's API) and undeliverable ones, `Idempotency-Key` (a repeated key within 24 h returns the original
piece and prints nothing), a price per piece, and a rate limit (429).

Pieces are listed as Lob lists them (`GET /v1/postcards`, `/v1/letters`): newest first, `limit` 1 to 100
(default 10), `metadata[<name>]=<value>` filters (every one must match), an answer of `object: "list"`, `data`,
`count` (the page's size), `next_url` and `previous_url` (carrying an `after` or `before` cursor; at most one of
them per request) and, for `include[]=total_count`, `total_count`.

The sandbox's clock can be moved forward (`advance_clock`), so tests can step past the 24-hour idempotency window.

Deliverability is decided deterministically so tests can aim at it: a US address is undeliverable when its
ZIP is not 5 or 5+4 digits, its state is not two letters, or its first line contains "UNDELIVERABLE".
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from syncs.sandbox.apps.credentials import LOB_API_KEY, SANDBOX_CREDENTIALS
from syncs.sandbox.server import Request, Response, SandboxApp, route

IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
PRICES = {"postcards": "0.63", "letters": "1.02"}
REQUIRED = ("name", "address_line1", "address_city", "address_state", "address_zip")
REQUIRED_INTERNATIONAL = ("name", "address_line1")  # city, state and postal code are optional outside the US
US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
METADATA_FILTER = re.compile(r"metadata\[(?P<name>[^\]]+)\]")
MAX_LIST_LIMIT = 100


def lob_error(status: int, message: str, code: str) -> Response:
    return Response(status, {"error": {"message": message, "status_code": status, "code": code}})


def is_us(address: dict[str, Any]) -> bool:
    return str(address.get("address_country") or "US").strip().upper() in ("US", "USA")


def undeliverable(address: dict[str, Any]) -> bool:
    if not is_us(address):
        return False
    return (
        not US_ZIP.match(str(address.get("address_zip", "")))
        or not re.match(r"^[A-Za-z]{2}$", str(address.get("address_state", "")))
        or "UNDELIVERABLE" in str(address.get("address_line1", "")).upper()
    )


class LobApp(SandboxApp):
    name = "lob"
    prefix = "/lob"
    default_requests_per_second = 30

    def __init__(self, *, api_key: str | None = None, **limits: Any) -> None:
        self.api_key = api_key or SANDBOX_CREDENTIALS[LOB_API_KEY]
        super().__init__(**limits)

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.pieces: list[dict[str, Any]] = []  # every piece printed, once each
            self._by_key: dict[str, tuple[float, dict[str, Any]]] = {}
            self._clock_offset = 0.0
            self.stats.update(idempotent_replays=0)

    def advance_clock(self, seconds: float) -> None:
        with self.lock:
            self._clock_offset += seconds

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        try:
            user = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")[0]
        except ValueError:
            return False
        return header.startswith("Basic ") and user == self.api_key

    @route("POST", r"/v1/(?P<kind>postcards|letters)")
    def create_piece(self, request: Request) -> Response:
        if not self._authorized(request):
            return lob_error(401, "Your API key is not valid.", "unauthorized")
        key = request.headers.get("idempotency-key")
        with self.lock:
            if key and key in self._by_key and self._now() - self._by_key[key][0] < IDEMPOTENCY_WINDOW_SECONDS:
                self.count("idempotent_replays")
                return Response(200, self._by_key[key][1])
        body = request.json()
        kind = request.params["kind"]
        refusal = _piece_problem(kind, body)
        if refusal is not None:
            return refusal
        piece = {
            "id": f"{'psc' if kind == 'postcards' else 'ltr'}_{uuid.uuid4().hex[:20]}",
            "object": kind[:-1],
            "to": body["to"],
            "from": body["from"],
            "merge_variables": body.get("merge_variables") or {},
            "metadata": body.get("metadata") or {},
            "price": PRICES[kind],
        }
        with self.lock:
            now = self._now()
            piece["date_created"] = (
                datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            )
            if key:
                self._by_key[key] = (now, piece)
            self.pieces.append(piece)
        return Response(200, piece)

    @route("GET", r"/v1/(?P<kind>postcards|letters)")
    def list_pieces(self, request: Request) -> Response:
        if not self._authorized(request):
            return lob_error(401, "Your API key is not valid.", "unauthorized")
        query = {name: values[-1] for name, values in request.query.items()}
        limit = query.get("limit", "10")
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST_LIMIT:
            return lob_error(422, f"limit must be an integer from 1 to {MAX_LIST_LIMIT}.", "invalid")
        if "after" in query and "before" in query:
            return lob_error(422, "after and before cannot be used together.", "invalid")
        kind = request.params["kind"]
        wanted = {m["name"]: value for name, value in query.items() if (m := METADATA_FILTER.fullmatch(name))}
        with self.lock:
            listed = [
                piece
                for piece in reversed(self.pieces)
                if piece["object"] == kind[:-1] and all(piece["metadata"].get(k) == v for k, v in wanted.items())
            ]
        ids = [piece["id"] for piece in listed]
        size = int(limit)
        start, end = 0, size
        for direction in ("after", "before"):
            if direction in query:
                anchor = _cursor_id(query[direction])
                if anchor not in ids:
                    return lob_error(422, f"{direction} is not a valid cursor.", "invalid")
                at = ids.index(anchor)
                start, end = (at + 1, at + 1 + size) if direction == "after" else (max(at - size, 0), at)
        page = listed[start:end]
        url = f"http://{request.headers.get('host', '127.0.0.1')}{self.prefix}/v1/{kind}?"
        unpaged = {name: value for name, value in query.items() if name not in ("after", "before")}
        body: dict[str, Any] = {
            "object": "list",
            "data": page,
            "count": len(page),
            "next_url": None,
            "previous_url": None,
        }
        if page and end < len(listed):
            body["next_url"] = url + urlencode({**unpaged, "after": _cursor(page[-1]["id"])})
        if page and start > 0:
            body["previous_url"] = url + urlencode({**unpaged, "before": _cursor(page[0]["id"])})
        if "total_count" in request.query.get("include[]", []):
            body["total_count"] = len(listed)
        return Response(200, body)

    @route("POST", r"/v1/us_verifications")
    def verify(self, request: Request) -> Response:
        if not self._authorized(request):
            return lob_error(401, "Your API key is not valid.", "unauthorized")
        body = request.json() or {}
        address = {
            "address_line1": body.get("primary_line", ""),
            "address_state": body.get("state", ""),
            "address_zip": body.get("zip_code", ""),
        }
        deliverability = "undeliverable" if undeliverable(address) else "deliverable"
        return Response(200, {"id": f"us_ver_{uuid.uuid4().hex[:20]}", "deliverability": deliverability})


def _cursor(piece_id: str) -> str:
    return base64.urlsafe_b64encode(piece_id.encode()).decode()


def _cursor_id(cursor: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except ValueError:  # not base64, or not UTF-8
        return None


def _piece_problem(kind: str, body: Any) -> Response | None:
    if not isinstance(body, dict) or not isinstance(body.get("to"), dict) or not isinstance(body.get("from"), dict):
        return lob_error(422, "to and from addresses are required.", "invalid_address")
    creative = ("front", "back") if kind == "postcards" else ("file",)
    if any(not body.get(part) for part in creative):
        return lob_error(422, f"{' and '.join(creative)} are required.", "missing_creative")
    for side in ("to", "from"):
        address = body[side]
        if any(not address.get(field) for field in (REQUIRED if is_us(address) else REQUIRED_INTERNATIONAL)):
            return lob_error(422, f"{side} address is incomplete.", "invalid_address")
        if undeliverable(address):
            return lob_error(422, f"{side} address is undeliverable.", "undeliverable_address")
    return None
