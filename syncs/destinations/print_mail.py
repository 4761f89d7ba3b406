"""Print-and-mail API (Lob-style): one postcard or letter per message occurrence.

Each row is a `POST /postcards` (or `/letters`, by `target.kind`) carrying the occurrence's idempotency key
in the `Idempotency-Key` header: a retry, or a re-run after a crash, gets the original piece back instead of
printing a second one. Lob honours a key for 24 hours only, so when earlier runs may have printed occurrences
without recording it (`RunInfo.unsettled_runs`), each occurrence is first looked up by the metadata its piece
carries (`GET /postcards?metadata[tidings_row]=<row key>`, paged) and a piece found there acknowledges the row
instead of a second print; if that lookup fails, the row fails retryably (`piece_check_failed`) and nothing is
sent. The piece's price is recorded as the row's cost, whether it was printed now or found. Addresses missing
a required part fail locally (`missing_address`); addresses the API finds undeliverable fail per piece (422).
Merge variables keep their JSON type (booleans, numbers; dates as ISO 8601, decimals as exact strings); a NaN or
Infinity fails its row (`non_finite_number`).

Fields: `name`, `address_line1`, `address_city`, `address_state`, `address_zip` (mapped by every sync),
`address_line2`, `address_country` (default US; sent as ISO 3166-1 alpha-2, which Lob requires, from a two- or
three-letter code or a country name; anything else fails the row `invalid_country`); every other mapped field is
a merge variable. As in Lob's API, a US address needs all five values, an international one only a name and its
first line (city, state and postal code are optional there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict
from requests.auth import HTTPBasicAuth

from syncs import identity
from syncs.destinations._support import (
    fail_all,
    fail_batch_for_error,
    http_client,
    is_transient,
    json_value,
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
    RunInfo,
    SyncTarget,
    register,
)
from syncs.http import DestinationHTTPError

ADDRESS_FIELDS = ("name", "address_line1", "address_line2", "address_city", "address_state", "address_zip")
REQUIRED_ADDRESS = frozenset({"name", "address_line1", "address_city", "address_state", "address_zip"})
REQUIRED_INTERNATIONAL_ADDRESS = frozenset({"name", "address_line1"})
# Metadata every piece carries: the row key, which the lookup filters on, and the occurrence's idempotency key,
# which tells this sync's piece from another sync's piece for the same row key.
ROW_METADATA = "tidings_row"
KEY_METADATA = "tidings_idempotency_key"
LIST_LIMIT = 100  # the most pieces one list request returns


class PostalAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    address_line1: str
    address_line2: str | None = None
    address_city: str
    address_state: str
    address_zip: str
    address_country: str = "US"


class PrintMailSettings(DestinationSettings):
    """`base_url` includes the API version (https://api.lob.com/v1); `from_address` is the default sender."""

    api_key_env: str
    from_address: PostalAddress | None = None


class PrintMailTarget(SyncTarget):
    kind: Literal["postcard", "letter"] = "postcard"
    front_template: str | None = None  # postcards
    back_template: str | None = None  # postcards
    file_template: str | None = None  # letters
    size: str | None = None
    use_type: Literal["marketing", "operational"] = "marketing"
    from_address: PostalAddress | None = None
    description: str | None = None


@register
class PrintMailDestination(Destination):
    type_name = "print_mail"
    channel = "direct_mail"
    modes = frozenset({Mode.SEND_ONCE})
    max_batch_size = 100
    default_requests_per_second = 25.0
    Settings = PrintMailSettings
    Target = PrintMailTarget
    required_fields = REQUIRED_ADDRESS
    optional_fields = frozenset({"address_line2", "address_country"})
    accepts_extra_fields = True

    @classmethod
    def sync_problems(
        cls, mode: Mode, settings: PrintMailSettings, target: PrintMailTarget
    ) -> list[tuple[str, str, str]]:
        if target.from_address or settings.from_address:
            return []
        fix = (
            "add from_address (name, address_line1, address_city, address_state, address_zip) under target, "
            "or once for every sync under the destination in destinations.yml"
        )
        return [("target.from_address", "no sender address: neither the target nor the destination gives one", fix)]

    def __init__(self, name: str, settings: PrintMailSettings, target: PrintMailTarget) -> None:
        super().__init__(name, settings, target)
        sender = target.from_address or settings.from_address
        if sender is None:
            raise ValueError(f"destination {name!r}: set from_address in destinations.yml or in the sync's target")
        self.sender = sender.model_dump(exclude_none=True)
        api_key = secret_from_env(settings.api_key_env, name)
        self.http = http_client(self, settings, auth=HTTPBasicAuth(api_key, ""))
        self.path = "/postcards" if target.kind == "postcard" else "/letters"
        self._check_earlier_prints = False

    def open(self, run: RunInfo) -> None:
        self._check_earlier_prints = bool(run.unsettled_runs)

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        if op is not Operation.SEND:
            return fail_all(rows, "unsupported_operation", "print mail only sends pieces", permanent=True)
        sendable, not_finite = split_non_finite(rows, lambda row: row)
        return not_finite + [self._send(row) for row in sendable]

    def _send(self, row: OutboundRow) -> RowOutcome:
        if not row.idempotency_key:
            return RowOutcome.failure(
                row.key, "missing_idempotency_key", "a piece needs an idempotency key", permanent=True
            )
        if self._check_earlier_prints:
            try:
                earlier = self._earlier_piece(row)
            except PieceCheckFailed:
                message = "Lob's pieces could not be listed to check for an earlier print; sending could print twice"
                return RowOutcome.failure(row.key, "piece_check_failed", message)
            if earlier is not None:
                return acknowledged(row.key, earlier)
        fields = {k: v for k, v in row.fields.items() if v not in (None, "")}
        country = identity.country_code(fields.get("address_country", "US"))
        if country is None:
            message = "address_country is not an ISO 3166 code or country name"
            return RowOutcome.failure(row.key, "invalid_country", message, permanent=True)
        fields["address_country"] = country.upper()  # Lob takes ISO 3166-1 alpha-2
        required = REQUIRED_ADDRESS if country == "us" else REQUIRED_INTERNATIONAL_ADDRESS
        if not fields.keys() >= required:
            missing = ", ".join(sorted(required - fields.keys()))
            return RowOutcome.failure(row.key, "missing_address", f"address lacks {missing}", permanent=True)
        try:
            response = self.http.request(
                "POST", self.path, json=self._piece(row, fields), headers={"Idempotency-Key": row.idempotency_key}
            )
        except DestinationHTTPError as error:
            return fail_batch_for_error([row], error)[0]
        body = _json(response)
        if response.ok:
            return acknowledged(row.key, body)
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = str(error.get("code") or f"http_{response.status_code}")
        status = response.status_code
        return RowOutcome.failure(
            row.key, code, f"piece refused with HTTP {status} ({code})", permanent=not is_transient(status)
        )

    def _piece(self, row: OutboundRow, fields: dict[str, Any]) -> dict[str, Any]:
        to = {k: str(fields[k]) for k in ADDRESS_FIELDS if k in fields}
        to["address_country"] = fields["address_country"]
        merge = {k: merge_value(v) for k, v in fields.items() if k not in to and k != "address_country"}
        piece: dict[str, Any] = {
            "to": to,
            "from": self.sender,
            "use_type": self.target.use_type,
            "merge_variables": merge,
            "metadata": {ROW_METADATA: row.key, KEY_METADATA: row.idempotency_key},
        }
        if self.target.kind == "postcard":
            piece.update(front=self.target.front_template, back=self.target.back_template)
        else:
            piece.update(file=self.target.file_template)
        if self.target.size:
            piece["size"] = self.target.size
        if self.target.description:
            piece["description"] = self.target.description
        return piece

    def _earlier_piece(self, row: OutboundRow) -> dict[str, Any] | None:
        """This occurrence's piece if Lob holds one; raises PieceCheckFailed when Lob's answer does not tell.
        A piece without the idempotency key in its metadata was printed before the connector attached it, and is
        taken as this occurrence's piece on its row key alone."""
        params: dict[str, Any] = {"limit": LIST_LIMIT, f"metadata[{ROW_METADATA}]": row.key}
        while True:
            try:
                response = self.http.request("GET", self.path, params=params)
                page = response.json() if response.ok else None
            except (DestinationHTTPError, ValueError):
                raise PieceCheckFailed from None
            pieces = page.get("data") if isinstance(page, dict) else None
            if not isinstance(pieces, list) or not all(isinstance(piece, dict) for piece in pieces):
                raise PieceCheckFailed
            for piece in pieces:
                metadata = piece.get("metadata") or {}
                if metadata.get(KEY_METADATA, row.idempotency_key) == row.idempotency_key:
                    return piece
            if not page.get("next_url"):
                return None
            # The cursor, not the URL itself: the session's credentials go to the configured host only.
            cursor = parse_qs(urlsplit(str(page["next_url"])).query).get("after")
            if not cursor:
                raise PieceCheckFailed
            params["after"] = cursor[0]

    def close(self, *, success: bool) -> None:
        self.http.close()


class PieceCheckFailed(Exception):
    """Lob's pieces could not be listed, so whether an occurrence was printed is unknown."""


def acknowledged(key: str, piece: dict[str, Any]) -> RowOutcome:
    price = piece.get("price")
    return RowOutcome.success(key, destination_ref=piece.get("id"), cost=float(price) if price else None)


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def merge_value(value: Any) -> Any:
    """A merge variable as its JSON type: a template's `{{#if vip}}` must see false, not the truthy "False"."""
    return value if isinstance(value, str | bool | int | float) else json_value(value)
