"""File export: streamed CSV/Parquet, atomic publication, the `latest` copy, one deferred outcome at close."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from syncs.destinations.base import DeferredOutcome, Mode, Operation, OutboundRow, RunInfo
from syncs.destinations.file_export import FileExportDestination


def exporter(directory: Path, fmt: str = "both", name: str = "churn_risk") -> FileExportDestination:
    settings = FileExportDestination.Settings(directory=directory)
    return FileExportDestination("exports", settings, FileExportDestination.Target(format=fmt, name=name))


def batch(start: int, n: int, plan: str | None = "pro") -> list[OutboundRow]:
    return [OutboundRow(f"c{i}", {"customer_id": f"c{i}", "orders": i, "plan": plan}) for i in range(start, start + n)]


def run(dest: FileExportDestination, *batches: list[OutboundRow], success: bool = True) -> DeferredOutcome:
    dest.open(RunInfo(run_id="r1", sync_name="churn_export", mode=Mode.EXPORT))
    for rows in batches:
        assert dest.write(Operation.UPSERT, rows) == []  # deferred until the file is in place
    return dest.close(success=success)


def test_batches_stream_into_both_formats_and_settle_on_close(tmp_path: Path) -> None:
    dest = exporter(tmp_path)
    outcome = run(dest, batch(0, 3), batch(3, 2))
    csv_file, parquet_file = dest.written_files
    assert outcome == DeferredOutcome.success(destination_ref=csv_file.stem)  # every written row, one answer
    assert csv_file.parent == tmp_path / "churn_risk" and csv_file.suffix == ".csv"
    assert pq.read_table(parquet_file).column("orders").to_pylist() == [0, 1, 2, 3, 4]
    assert pa_csv.read_csv(csv_file).column("customer_id").to_pylist() == [f"c{i}" for i in range(5)]
    assert (tmp_path / "churn_risk" / "latest.csv").read_bytes() == csv_file.read_bytes()
    assert (tmp_path / "churn_risk" / "latest.parquet").read_bytes() == parquet_file.read_bytes()
    assert not list((tmp_path / "churn_risk").glob(".*"))  # no temporary files left behind


def test_each_run_gets_its_own_file_and_latest_follows(tmp_path: Path) -> None:
    dest = exporter(tmp_path, fmt="csv")
    run(dest, batch(0, 2))
    first = dest.written_files[0]
    run(dest, batch(0, 4))
    second = dest.written_files[0]
    assert first != second and first.exists()
    assert pa_csv.read_csv(tmp_path / "churn_risk" / "latest.csv").num_rows == 4


def test_failed_run_publishes_nothing_and_fails_its_rows(tmp_path: Path) -> None:
    outcome = run(exporter(tmp_path, fmt="parquet"), batch(0, 2), success=False)
    assert (outcome.ok, outcome.code, outcome.permanent) == (False, "export_aborted", False)
    assert list((tmp_path / "churn_risk").iterdir()) == []


def test_column_null_in_first_batch_becomes_text(tmp_path: Path) -> None:
    dest = exporter(tmp_path, fmt="parquet")
    run(dest, batch(0, 2, plan=None), batch(2, 2, plan="pro"))
    assert pq.read_table(dest.written_files[0]).column("plan").to_pylist() == [None, None, "pro", "pro"]


def test_values_that_do_not_fit_the_schema_fail_their_batch(tmp_path: Path) -> None:
    dest = exporter(tmp_path, fmt="csv")
    dest.open(RunInfo(run_id="r1", sync_name="churn_export", mode=Mode.EXPORT))
    dest.write(Operation.UPSERT, batch(0, 2))
    bad = [OutboundRow("x", {"customer_id": "x", "orders": "many", "plan": "pro"})]
    [outcome] = dest.write(Operation.UPSERT, bad)
    assert (outcome.code, outcome.permanent) == ("schema_mismatch", True)
    assert dest.close(success=True).ok
    assert pa_csv.read_csv(dest.written_files[0]).column("customer_id").to_pylist() == ["c0", "c1"]


def test_directory_defaults_to_the_exports_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_EXPORTS_DIR", str(tmp_path / "elsewhere"))
    dest = FileExportDestination("exports", FileExportDestination.Settings(), FileExportDestination.Target(name="n"))
    run(dest, batch(0, 1))
    assert dest.written_files[0].parent == tmp_path / "elsewhere" / "n"


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_target_name_must_be_one_safe_folder(name: str) -> None:
    with pytest.raises(ValidationError):
        FileExportDestination.Target(name=name)
