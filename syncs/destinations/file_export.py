"""Full-file exports (CSV and/or Parquet) into a local directory that a downstream system picks up.

Each run writes `<directory>/<name>/<run-timestamp>.<ext>` by streaming every batch into a pyarrow writer
(the audience is never held in memory whole) under a hidden temporary name, renames it into place only when
the run succeeds, and then refreshes `latest.<ext>`. `latest` is a *copy* renamed into place, not a symlink:
readers on any file system or sync tool (S3 sync, SMB shares, Windows) see a complete regular file. Outcomes
are deferred: `close()` answers every written row at once (`DeferredOutcome`) once their file is in place, so
the exporter holds no key per row and its memory does not grow with the audience.

Batches streamed from a plan arrive as Arrow columns typed by the warehouse and are written as they are, so a
file's column types are the model's (DECIMAL(18,2), UBIGINT, HUGEINT, TIMESTAMPTZ, ENUM) whichever values come
first, and no row becomes a Python object on the way.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from pydantic import field_validator

from syncs.arrow_values import csv_ready
from syncs.destinations.base import (
    DeferredOutcome,
    Destination,
    DestinationSettings,
    Mode,
    Operation,
    OutboundBatch,
    OutboundRow,
    RowOutcome,
    RunInfo,
    SyncTarget,
    register,
)
from syncs.settings import exports_dir

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class FileExportSettings(DestinationSettings):
    """No endpoint: `directory` defaults to `TIDINGS_EXPORTS_DIR` (see syncs.settings.exports_dir)."""

    base_url: str | None = None  # type: ignore[assignment]
    directory: Path | None = None


class FileExportTarget(SyncTarget):
    format: Literal["csv", "parquet", "both"] = "csv"
    name: str

    @field_validator("name")
    @classmethod
    def _one_safe_path_segment(cls, value: str) -> str:
        if not SAFE_NAME.match(value):
            raise ValueError("name must be one folder name of letters, digits, '_', '.' or '-' (no slashes)")
        return value


@dataclass
class _Spool:
    """One output file being written under a hidden temporary name beside its final name."""

    final: Path
    temp: Path
    writer: Any
    prepare: Callable[[pa.Table], pa.Table]  # the batch as this format writes it


@register
class FileExportDestination(Destination):
    type_name = "file_export"
    channel = "file"
    modes = frozenset({Mode.EXPORT})
    max_batch_size = 10_000
    Settings = FileExportSettings
    Target = FileExportTarget
    accepts_extra_fields = True
    answers_at_close = True

    @classmethod
    def accepted_type_families(cls, target: SyncTarget) -> frozenset[str]:
        """Parquet keeps lists, structs and binary columns as they are; a CSV cell holds text."""
        if isinstance(target, FileExportTarget) and target.format == "parquet":
            return frozenset({"scalar", "nested", "binary"})
        return frozenset({"scalar"})

    def __init__(self, name: str, settings: FileExportSettings, target: FileExportTarget) -> None:
        super().__init__(name, settings, target)
        self.folder = (settings.directory or exports_dir()) / target.name
        self.extensions = ("csv", "parquet") if target.format == "both" else (target.format,)
        self._stem = ""
        self._schema: pa.Schema | None = None
        self._text_columns: set[str] = set()
        self._spools: list[_Spool] = []
        self.written_files: list[Path] = []  # the files the last finished run put in place

    def open(self, run: RunInfo) -> None:
        self._stem, self._schema, self._text_columns, self._spools = "", None, set(), []

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> list[RowOutcome]:
        if op is not Operation.UPSERT:
            return [
                RowOutcome.failure(
                    row.key, "unsupported_operation", f"exports write rows, not {op.value}", permanent=True
                )
                for row in rows
            ]
        if not rows:
            return []
        try:
            if isinstance(rows, OutboundBatch) and rows.fields is not None:
                table = self._warehouse_typed(rows.fields)
            else:
                table = pa.Table.from_batches([self._record_batch(rows)])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            message = "a value does not fit the column types fixed by the first batch of the export"
            return [RowOutcome.failure(row_key, "schema_mismatch", message, permanent=True) for row_key in _keys(rows)]
        if not self._spools:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._stem = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            self._spools = [self._start(ext, table) for ext in self.extensions]
        for spool in self._spools:
            spool.writer.write_table(spool.prepare(table))
        return []

    def close(self, *, success: bool) -> DeferredOutcome:
        """Publish (or discard) the files now: every row written is in the run's file, or none is."""
        for spool in self._spools:
            spool.writer.close()
        stem = self._stem
        if not success:
            for spool in self._spools:
                spool.temp.unlink(missing_ok=True)
        else:
            for spool in self._spools:
                publish(spool.temp, spool.final)
                refresh_latest(spool.final)
            self.written_files = [spool.final for spool in self._spools]
        self._spools = []
        if success:
            return DeferredOutcome.success(destination_ref=stem)
        return DeferredOutcome.failure("export_aborted", "the run failed before the file was complete")

    def _start(self, extension: str, first: pa.Table) -> _Spool:
        final = self.folder / f"{self._stem}.{extension}"
        temp = final.with_name(f".{final.name}.partial")
        if extension == "csv":
            return _Spool(final, temp, pa_csv.CSVWriter(temp, csv_ready(first).schema), csv_ready)
        return _Spool(final, temp, pq.ParquetWriter(temp, first.schema), _as_is)

    def _warehouse_typed(self, fields: pa.Table) -> pa.Table:
        """A batch streamed from the plan, written with the column types the warehouse gave it: the file's
        types do not depend on which values happen to come first."""
        if self._schema is None:
            self._schema = fields.schema
        return fields if fields.schema == self._schema else fields.cast(self._schema)

    def _record_batch(self, rows: Sequence[OutboundRow]) -> pa.RecordBatch:
        """Rows handed over as Python values (not streamed from a plan), with the schema inferred from the first
        batch of the run.

        A column that is entirely null in the first batch has no type yet: it becomes text, and its values in
        later batches are written as text.
        """
        records = [
            {k: (None if v is None else str(v)) if k in self._text_columns else v for k, v in row.fields.items()}
            for row in rows
        ]
        if self._schema is None:
            inferred = pa.Table.from_pylist(records).schema
            self._text_columns = {f.name for f in inferred if pa.types.is_null(f.type)}
            self._schema = pa.schema(
                [pa.field(f.name, pa.string()) if f.name in self._text_columns else f for f in inferred]
            )
        return pa.RecordBatch.from_pylist(records, schema=self._schema)


def _as_is(table: pa.Table) -> pa.Table:
    return table


def _keys(rows: Sequence[OutboundRow]) -> list[str]:
    return rows.keys if isinstance(rows, OutboundBatch) else [row.key for row in rows]


def publish(temp: Path, final: Path) -> None:
    """Rename a finished temp file into place; never replaces a delivered file."""
    if final.exists():
        raise FileExistsError(f"refusing to overwrite delivered export {final.name}")
    os.replace(temp, final)


def refresh_latest(final: Path) -> None:
    latest = final.with_name(f"latest{final.suffix}")
    staging = final.with_name(f".latest{final.suffix}.partial")
    shutil.copyfile(final, staging)
    os.replace(staging, latest)
