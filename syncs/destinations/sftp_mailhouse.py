"""Mail-house file drop: one USPS-style CSV per run, uploaded over SFTP, plus a manifest.

Rows are spooled to a local temporary file as they arrive (never held in memory, nor their keys). When the run
succeeds, `close()` uploads the manifest `<campaign>_<run id>.manifest.json` (row count, SHA-256 of the CSV,
columns) and the CSV under hidden temporary names, renames the CSV to `<campaign>_<run id>.csv` (a plain SFTP
rename, which servers refuse when the name exists: a delivered drop is never overwritten), then renames the
manifest beside it. Every spooled row gets one answer at close (`DeferredOutcome`), only after the CSV's rename
succeeded: a manifest the server refuses fails the drop retryably before anything is delivered. Once the CSV is
in place the rows count as delivered even if the manifest's rename then fails, because re-sending them would
print the drop twice; the run logs a `mailhouse.manifest_missing` warning, lists it in `missing_manifests` and
reports it in `run_warnings()` (the run's message and Dagster metadata),
and every later run starts by renaming into place any manifest left at its temporary name beside its delivered
CSV. Only such a leftover is completed: a manifest someone removed on purpose (or that the mail house consumed)
is never written again.

A mail house cannot deduplicate by idempotency key, so a run that died (or failed) between renaming its drop
into place and recording it would otherwise have its pieces printed again by the next run. Before sending,
a run reads the key column of the drops of such runs (`RunInfo.unsettled_runs`): occurrences found there are
acknowledged with that drop's name instead of being dropped again. If those drops cannot be read, every row
of the run fails with a retryable `drop_check_failed` and nothing is uploaded. The check looks for the drops in
`remote_dir` and in the `pickup_dirs` where the mail house moves the files it has taken; a mail house that
deletes them on pickup defeats it.

CSV columns: key, full_name, address_line1, address_line2, city, state, postal_code, country, offer_code,
then every other field the sync maps (personalization) in mapping order (`RunInfo.mapped_fields`): every drop of a
sync has the same header whichever rows come first, a cell left empty where a row has no value. A mapped
`offer_code` (a per-recipient code) fills the offer code column, else the target's `offer_code`; `key` is the row
key's and may not be mapped (`reserved_fields`). USPS style
(Publication 28): the address in upper case without punctuation, bar the ZIP+4 hyphen and, in the delivery lines,
the hyphen of a hyphenated house number and the slash of a fraction; standard abbreviations in the delivery lines
only (names and cities keep their words); a US state spelled out becomes its code. A postcode outside the US keeps
its own form (upper case, spaces collapsed, hyphens kept: Brazil `01310-100`). Offer code and personalization go
as written, except that a cell a spreadsheet would take for a formula gets a leading apostrophe (CSV injection: a
mail house may open the drop in a spreadsheet).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import paramiko
from pydantic import field_validator

from syncs import identity
from syncs.destinations._support import fail_all, secret_from_env
from syncs.destinations.base import (
    DeferredOutcome,
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
from syncs.logs import get_logger, log_event

log = get_logger("sftp_mailhouse")

ADDRESS_COLUMNS = ("full_name", "address_line1", "address_line2", "city", "state", "postal_code", "country")
REQUIRED = frozenset({"full_name", "address_line1", "city", "state", "postal_code"})
# Countries whose postal addresses carry a state/province/region; elsewhere (GB, DE, FR...) it stays blank.
STATE_REQUIRED_COUNTRIES = frozenset({"us", "ca", "au", "br", "mx"})
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


class SftpMailhouseSettings(DestinationSettings):
    """SFTP drop box. Authenticate with `password_env` or `private_key_path_env` (a key file path).

    `known_host_key` is the server's public key as `<type> <base64>`; `any` skips the check (sandbox only).
    `pickup_dirs`: folders where the mail house moves the drops it has taken (say `/incoming/processed`); a run
    looks for earlier drops there too, so one taken before a crashed run was recorded is not printed twice.
    """

    base_url: str | None = None  # type: ignore[assignment]
    host: str
    port: int = 22
    username: str
    password_env: str | None = None
    private_key_path_env: str | None = None
    remote_dir: str = "/"
    pickup_dirs: list[str] = []
    known_host_key: str


class SftpMailhouseTarget(SyncTarget):
    campaign: str
    offer_code: str | None = None

    @field_validator("campaign")
    @classmethod
    def _safe_file_name(cls, value: str) -> str:
        if not SAFE_NAME.match(value):
            raise ValueError("campaign must be letters, digits, '_' or '-' (it names the drop file)")
        return value


@register
class SftpMailhouseDestination(Destination):
    type_name = "sftp_mailhouse"
    channel = "direct_mail"
    modes = frozenset({Mode.SEND_ONCE})
    max_batch_size = 5_000
    Settings = SftpMailhouseSettings
    Target = SftpMailhouseTarget
    required_fields = REQUIRED
    optional_fields = frozenset({"address_line2", "country", "offer_code"})
    reserved_fields = frozenset({"key"})  # the row key's column
    accepts_extra_fields = True
    answers_at_close = True

    def __init__(self, name: str, settings: SftpMailhouseSettings, target: SftpMailhouseTarget) -> None:
        super().__init__(name, settings, target)
        if not (settings.password_env or settings.private_key_path_env):
            raise ValueError(f"destination {name!r}: set password_env or private_key_path_env")
        self.password = secret_from_env(settings.password_env, name) if settings.password_env else None
        key_path = secret_from_env(settings.private_key_path_env, name) if settings.private_key_path_env else None
        self.private_key = paramiko.PKey.from_path(key_path) if key_path else None
        self._spool: IO[str] | None = None
        self._writer: Any = None
        self._columns: list[str] = []
        self._spooled = 0
        self.file_name = ""
        self.delivered: list[str] = []  # remote paths put in place by the last run
        self.missing_manifests: list[str] = []  # manifests the last run left at their temporary name
        self.warnings: list[str] = []  # the last run's, for run_warnings()
        # key -> drop file of an unsettled earlier run that holds it; None when those drops could not be read
        self._dropped_earlier: dict[str, str] | None = {}

    def open(self, run: RunInfo) -> None:
        self.file_name = self._drop_name(run.run_id)
        self._spool, self._writer, self._spooled = None, None, 0
        self._columns = _columns(run.mapped_fields) if run.mapped_fields else []
        self.delivered, self.missing_manifests, self.warnings = [], [], []
        self._complete_manifests()
        self._dropped_earlier = self._read_earlier_drops(run.unsettled_runs)

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        if op is not Operation.SEND:
            return fail_all(rows, "unsupported_operation", "a mail drop only sends pieces", permanent=True)
        if self._dropped_earlier is None:
            message = "the drops of an earlier unfinished run could not be read over SFTP; sending could print twice"
            return fail_all(rows, "drop_check_failed", message)
        outcomes = []
        for row in rows:
            earlier_drop = self._dropped_earlier.get(row.key)
            if earlier_drop is not None:
                outcomes.append(RowOutcome.success(row.key, destination_ref=earlier_drop))
                continue
            record = self._record(row)
            if isinstance(record, RowOutcome):
                outcomes.append(record)
                continue
            self._spool_writer(row).writerow(record)
            self._spooled += 1
        return outcomes

    def close(self, *, success: bool) -> DeferredOutcome:
        """The answer for every row `write` spooled (no row spooled: nothing to upload, nothing to answer)."""
        spool, self._spool = self._spool, None
        if spool is None:
            return DeferredOutcome.success()
        try:
            if not success:
                return DeferredOutcome.failure("drop_aborted", "the run failed before the drop was uploaded")
            spool.flush()
            return self._deliver(Path(spool.name))
        finally:
            spool.close()

    def _record(self, row: OutboundRow) -> list[str] | RowOutcome:
        fields = row.fields
        country = identity.country_code(fields.get("country"))
        if country is None and fields.get("country") not in (None, ""):  # never guess: a US form for a German address
            message = "country is not an ISO 3166 code or country name"
            return RowOutcome.failure(row.key, "invalid_country", message, permanent=True)
        country = country or "us"
        values = {
            "full_name": identity.usps_text(fields.get("full_name")),
            "address_line1": identity.usps_line(fields.get("address_line1")),
            "address_line2": identity.usps_line(fields.get("address_line2")),
            "city": identity.usps_text(fields.get("city")),
            "state": identity.usps_state(fields.get("state"), country),
            "postal_code": identity.usps_zip(fields.get("postal_code"), country),
            "country": country.upper(),
        }
        required = REQUIRED if country in STATE_REQUIRED_COUNTRIES else REQUIRED - {"state"}
        missing = sorted(k for k in required if not values[k])
        if missing:
            code = (
                "invalid_postal_code" if missing == ["postal_code"] and fields.get("postal_code") else "missing_address"
            )
            return RowOutcome.failure(row.key, code, f"address lacks a usable {', '.join(missing)}", permanent=True)
        if not self._columns:  # a caller that declares no fields (the engine always does): the first row's
            self._columns = _columns(fields)
        personal = {k: "" if v is None else str(v) for k, v in fields.items() if k not in values}
        offer = personal.pop("offer_code", "") or self.target.offer_code or ""
        record = {"key": row.key, **{k: v or "" for k, v in values.items()}, "offer_code": offer}
        cells = [record.get(column, personal.get(column, "")) for column in self._columns]
        return [cells[0], *map(_formula_safe, cells[1:])]  # the key as it is: earlier drops are matched on it

    def _spool_writer(self, row: OutboundRow) -> Any:
        if self._spool is None:
            self._spool = tempfile.NamedTemporaryFile("w+", newline="", encoding="utf-8", suffix=".csv")  # noqa: SIM115
            self._writer = csv.writer(self._spool)
            self._writer.writerow(self._columns)
        return self._writer

    def _drop_name(self, run_id: str) -> str:
        return f"{self.target.campaign}_{_safe(run_id)}.csv"

    @property
    def _remote_dir(self) -> str:
        return self.settings.remote_dir.rstrip("/")

    def _remote_path(self, file_name: str) -> str:
        return f"{self._remote_dir}/{file_name}"

    def _drop_locations(self, file_name: str) -> list[str]:
        """Where a drop may be: where it was put, then where the mail house moves what it has taken."""
        return [self._remote_path(file_name), *(f"{d.rstrip('/')}/{file_name}" for d in self.settings.pickup_dirs)]

    def _complete_manifests(self) -> None:
        """Put in place the manifests earlier runs of this campaign uploaded but could not rename beside their
        delivered CSV. One attempt per run that never holds back sending: a failure is logged, the next run
        tries again."""
        try:
            with self._connect() as sftp:
                for drop_name in self._drops_with_manifest_left_behind(sftp):
                    self._complete_manifest(sftp, drop_name)
        except (OSError, paramiko.SSHException) as error:
            self._warn(
                "manifest_check_failed",
                "earlier drops could not be checked for a manifest left behind; the next run checks again",
                error=type(error).__name__,
            )

    def _complete_manifest(self, sftp: paramiko.SFTPClient, drop_name: str) -> None:
        manifest_name = _manifest_name(drop_name)
        with sftp.open(_temp_path(self._remote_path(manifest_name)), "rb") as handle:
            manifest = handle.read()
        campaign = _manifest_campaign(manifest, drop_name)
        if campaign is None:
            self._warn("manifest_unusable", f"the manifest left behind for {drop_name} is unreadable", drop=drop_name)
        elif campaign == self.target.campaign:  # else a campaign named like this one's, which completes its own
            self._place_manifest(sftp, manifest_name, manifest)
            log_event(log, "mailhouse.manifest_completed", destination=self.name, drop=drop_name)

    def _drops_with_manifest_left_behind(self, sftp: paramiko.SFTPClient) -> list[str]:
        """Drops of this campaign in `remote_dir` whose manifest is still at its temporary name and nowhere else."""
        try:
            names = set(sftp.listdir(self._remote_dir or "/"))
        except FileNotFoundError:  # nothing dropped yet
            return []
        left_behind = re.compile(rf"\.({re.escape(self.target.campaign)}_[A-Za-z0-9_-]+)\.manifest\.json\.partial")
        drops = sorted(f"{m[1]}.csv" for m in map(left_behind.fullmatch, names) if m and f"{m[1]}.csv" in names)
        return [d for d in drops if _first_existing(sftp, self._drop_locations(_manifest_name(d))) is None]

    def _read_earlier_drops(self, runs: Sequence[str]) -> dict[str, str] | None:
        """Keys of the drops that unsettled earlier runs put in place, with the drop's name; None if unreadable."""
        if not runs:
            return {}
        names = [self._drop_name(run_id) for run_id in runs]
        for attempt in range(self.settings.max_retries + 1):
            try:
                with self._connect() as sftp:
                    found = {name: _first_existing(sftp, self._drop_locations(name)) for name in names}
                    return {key: name for name, path in found.items() if path for key in _drop_keys(sftp, path)}
            except (OSError, paramiko.SSHException, csv.Error, UnicodeDecodeError):
                if attempt < self.settings.max_retries:
                    time.sleep(min(0.2 * 2**attempt, 10.0))
        return None

    def _deliver(self, local: Path) -> DeferredOutcome:
        final = self._remote_path(self.file_name)
        checksum = _sha256_file(local)
        manifest = _manifest(checksum, self.file_name, self._spooled, self._columns, self.target.campaign)
        manifest_name = _manifest_name(self.file_name)
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                with self._connect() as sftp:
                    _ensure_dir(sftp, self._remote_dir)
                    existing = _first_existing(sftp, self._drop_locations(self.file_name))
                    if existing is None:
                        # The manifest goes up first: refused, it fails the drop before anything is delivered;
                        # left at its temporary name, it tells the next run to complete the drop.
                        _upload(sftp, io.BytesIO(manifest), _temp_path(self._remote_path(manifest_name)))
                        _put_then_rename(sftp, local.open("rb"), final)
                    elif _sha256_remote(sftp, existing) != checksum:
                        message = "another drop with this name is already delivered; it is never overwritten"
                        return DeferredOutcome.failure("drop_exists", message, permanent=True)
                    # else: an earlier attempt renamed it into place but its answer was lost.
                    self.delivered.append(existing or final)
                    break
            except (OSError, paramiko.SSHException):
                if attempt == attempts - 1:
                    return DeferredOutcome.failure("sftp_error", "the drop could not be uploaded over SFTP")
                time.sleep(min(0.2 * 2**attempt, 10.0))
        if not self._deliver_manifest(manifest_name, manifest):
            # The rows stay delivered (sent again, they would be printed twice): say so; the next run completes it.
            self.missing_manifests.append(manifest_name)
            self._warn(
                "manifest_missing",
                f"{self.file_name} was delivered without its manifest; the next run of the sync puts it in place",
                drop=self.file_name,
                rows=self._spooled,
                attempts=attempts,
            )
        return DeferredOutcome.success(destination_ref=self.file_name)

    def _deliver_manifest(self, file_name: str, manifest: bytes) -> bool:
        """Put the manifest beside the delivered drop; False when every attempt failed."""
        for attempt in range(self.settings.max_retries + 1):
            try:
                with self._connect() as sftp:
                    self._place_manifest(sftp, file_name, manifest)
                    return True
            except (OSError, paramiko.SSHException):
                if attempt < self.settings.max_retries:
                    time.sleep(min(0.2 * 2**attempt, 10.0))
        return False

    def _place_manifest(self, sftp: paramiko.SFTPClient, file_name: str, manifest: bytes) -> None:
        """Rename the manifest from its temporary name (uploading it there first if it is gone), unless it is in
        place already or the mail house has taken it: a manifest is never overwritten."""
        path = _first_existing(sftp, self._drop_locations(file_name))
        if path is None:
            path = self._remote_path(file_name)
            if not _exists(sftp, _temp_path(path)):
                _upload(sftp, io.BytesIO(manifest), _temp_path(path))
            sftp.rename(_temp_path(path), path)
        self.delivered.append(path)

    def _warn(self, event: str, text: str, **fields: str | int) -> None:
        """Log a warning and keep `text` for the run's warnings: only file names, counts and error types, never
        row values."""
        self.warnings.append(text)
        log_event(log, f"mailhouse.{event}", logging.WARNING, destination=self.name, **fields)

    def run_warnings(self) -> list[str]:
        return list(self.warnings)

    @contextmanager
    def _connect(self) -> Iterator[paramiko.SFTPClient]:
        transport = paramiko.Transport((self.settings.host, self.settings.port))
        transport.banner_timeout = transport.auth_timeout = self.settings.timeout_seconds
        try:
            transport.start_client(timeout=self.settings.timeout_seconds)
            self._check_host_key(transport.get_remote_server_key())
            if self.private_key is not None:
                transport.auth_publickey(self.settings.username, self.private_key)
            else:
                transport.auth_password(self.settings.username, self.password or "")
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise paramiko.SSHException("the server refused the SFTP subsystem")
            sftp.get_channel().settimeout(self.settings.timeout_seconds)
            yield sftp
        finally:
            transport.close()

    def _check_host_key(self, key: paramiko.PKey) -> None:
        expected = self.settings.known_host_key.strip()
        if expected != "any" and expected.split()[:2] != [key.get_name(), key.get_base64()]:
            raise paramiko.SSHException("the SFTP server's host key does not match known_host_key")


def _columns(fields: Iterable[str]) -> list[str]:
    """The drop's header: the key, the address, the offer code, then the personalization fields in their order."""
    fixed = ["key", *ADDRESS_COLUMNS, "offer_code"]
    return [*fixed, *(f for f in fields if f not in fixed)]


def _put_then_rename(sftp: paramiko.SFTPClient, source: IO[bytes], final: str) -> None:
    _upload(sftp, source, _temp_path(final))
    sftp.rename(_temp_path(final), final)


def _upload(sftp: paramiko.SFTPClient, source: IO[bytes], path: str) -> None:
    with source:
        sftp.putfo(source, path, confirm=True)


def _temp_path(final: str) -> str:
    """The hidden name a file is uploaded under before its rename into place."""
    directory, _, name = final.rpartition("/")
    return f"{directory}/.{name}.partial"


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        return False
    return True


def _first_existing(sftp: paramiko.SFTPClient, paths: Sequence[str]) -> str | None:
    return next((path for path in paths if _exists(sftp, path)), None)


def _drop_keys(sftp: paramiko.SFTPClient, path: str) -> list[str]:
    """The `key` column of the delivered drop at `path`."""
    with sftp.open(path, "rb") as handle:
        handle.prefetch()
        reader = csv.reader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
        if next(reader, [])[:1] != ["key"]:
            raise csv.Error(f"{path} has no key column")
        return [record[0] for record in reader if record]


def _ensure_dir(sftp: paramiko.SFTPClient, directory: str) -> None:
    if directory and not _exists(sftp, directory):
        sftp.mkdir(directory)


def _sha256_file(local: Path) -> str:
    digest = hashlib.sha256()
    with local.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_remote(sftp: paramiko.SFTPClient, path: str) -> str:
    digest = hashlib.sha256()
    with sftp.open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(checksum: str, file_name: str, rows: int, columns: list[str], campaign: str) -> bytes:
    manifest = {
        "file": file_name,
        "campaign": campaign,
        "rows": rows,
        "sha256": checksum,
        "columns": columns,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return json.dumps(manifest, indent=2).encode()


def _manifest_name(drop_name: str) -> str:
    return f"{drop_name.removesuffix('.csv')}.manifest.json"


def _manifest_campaign(manifest: bytes, drop_name: str) -> str | None:
    """The campaign of `manifest` when it is a whole manifest of `drop_name`, else None."""
    try:
        parsed = json.loads(manifest)
    except ValueError:  # cut short, or not a manifest at all
        return None
    return parsed.get("campaign") if isinstance(parsed, dict) and parsed.get("file") == drop_name else None


def _formula_safe(cell: str) -> str:
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(cell) else cell


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_id) or "run"
