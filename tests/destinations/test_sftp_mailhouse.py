"""Mail-house drop over real SFTP: USPS-style CSV, temp-name upload + rename, manifest, no overwrite."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import socket
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import paramiko
import pytest

from syncs.config import ConfigError
from syncs.destinations import sftp_mailhouse
from syncs.destinations.base import DeferredOutcome, Mode, Operation, OutboundRow, RowOutcome, RunInfo
from syncs.destinations.sftp_mailhouse import SftpMailhouseDestination
from syncs.engine import load_project, run_sync
from syncs.sandbox.apps.credentials import MAILHOUSE_SFTP_PASSWORD
from syncs.sandbox.sftp import SftpSandbox
from tests.destinations.runs import opened_runs
from tests.reliability.harness import MAIL_MODEL_YAML


@pytest.fixture
def sftp_server(tmp_path: Path) -> Iterator[SftpSandbox]:
    with SftpSandbox(tmp_path / "mailhouse") as server:
        yield server


def mailhouse(server: SftpSandbox, **settings: Any) -> SftpMailhouseDestination:
    cfg = SftpMailhouseDestination.Settings(
        host="127.0.0.1",
        username="tidings",
        remote_dir="/drops",
        **(
            {
                "port": server.port,
                "password_env": MAILHOUSE_SFTP_PASSWORD,
                "known_host_key": f"{server.host_key.get_name()} {server.host_key.get_base64()}",
            }
            | settings
        ),
    )
    target = SftpMailhouseDestination.Target(campaign="winback", offer_code="WINBACK20")
    return SftpMailhouseDestination("mailhouse_sftp", cfg, target)


def person(i: int, **overrides: Any) -> OutboundRow:
    fields = {
        "full_name": f"Ann O'Neil {i}",
        "address_line1": "123 North Main Street, Apt. 4",
        "address_line2": None,
        "city": "St. Paul",
        "state": "mn",
        "postal_code": "55101 1234",
        "country": "US",
        "first_name": "Ann",
        **overrides,
    }
    return OutboundRow(f"occ-{i}", fields, f"idem-{i}")


def drop(
    dest: SftpMailhouseDestination,
    rows: list[OutboundRow],
    run_id: str = "run-1",
    unsettled: tuple[str, ...] = (),
    mapped: tuple[str, ...] = (),
) -> list:
    dest.open(
        RunInfo(
            run_id=run_id,
            sync_name="winback",
            mode=Mode.SEND_ONCE,
            estimated_rows=len(rows),
            unsettled_runs=unsettled,
            mapped_fields=mapped,
        )
    )
    immediate = dest.write(Operation.SEND, rows)
    return immediate + spooled_outcomes(rows, immediate, dest.close(success=True))


def spooled_outcomes(rows: list[OutboundRow], immediate: list[RowOutcome], closing: DeferredOutcome) -> list:
    """What the runner makes of the one answer at close: it holds for every row `write` did not answer."""
    answered = {o.key for o in immediate}
    return [
        RowOutcome(row.key, closing.ok, closing.code, closing.message, closing.permanent, closing.destination_ref)
        for row in rows
        if row.key not in answered
    ]


def test_drop_is_usps_style_csv_with_manifest(sftp_server: SftpSandbox) -> None:
    outcomes = drop(mailhouse(sftp_server), [person(1), person(2)])
    assert [o.ok for o in outcomes] == [True, True]
    folder = sftp_server.root / "drops"
    assert sorted(p.name for p in folder.iterdir()) == ["winback_run-1.csv", "winback_run-1.manifest.json"]
    content = (folder / "winback_run-1.csv").read_bytes()
    rows = list(csv.DictReader(content.decode().splitlines()))
    assert list(rows[0]) == [
        "key", "full_name", "address_line1", "address_line2", "city", "state", "postal_code", "country",
        "offer_code", "first_name",
    ]  # fmt: skip
    assert rows[0] == {
        "key": "occ-1",
        "full_name": "ANN O NEIL 1",
        "address_line1": "123 N MAIN ST APT 4",
        "address_line2": "",
        "city": "ST PAUL",
        "state": "MN",
        "postal_code": "55101-1234",
        "country": "US",
        "offer_code": "WINBACK20",
        "first_name": "Ann",
    }
    manifest = json.loads((folder / "winback_run-1.manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["sha256"] == hashlib.sha256(content).hexdigest()
    assert sftp_server.stats["renames"] == 2  # both files arrived under a temporary name first


def test_usps_style_applies_to_the_delivery_lines_only(sftp_server: SftpSandbox) -> None:
    """Street abbreviations and punctuation stripping belong to the delivery lines: names, the state and the
    personalization keep their words, house numbers keep their fraction slash or Queens-style hyphen."""
    rows = [
        person(1, full_name="Mary Street", address_line1="123 1/2 Main Street", state="West Virginia", amount=""),
        person(2, full_name="John West", address_line1="123-45 Queens Blvd", state="NY", amount=None),
        person(3, full_name="Ann  Court", address_line2="Apt. 4-B", first_name="Ann-Marie", amount="12.50"),
    ]
    drop(mailhouse(sftp_server), rows)
    csv_rows = list(csv.DictReader((sftp_server.root / "drops" / "winback_run-1.csv").read_text().splitlines()))
    assert [(r["full_name"], r["address_line1"], r["address_line2"], r["state"]) for r in csv_rows] == [
        ("MARY STREET", "123 1/2 MAIN ST", "", "WV"),
        ("JOHN WEST", "123-45 QUEENS BLVD", "", "NY"),
        ("ANN COURT", "123 N MAIN ST APT 4", "APT 4 B", "MN"),
    ]
    assert [(r["first_name"], r["amount"]) for r in csv_rows] == [("Ann", ""), ("Ann", ""), ("Ann-Marie", "12.50")]


def test_a_country_is_read_by_code_or_name_and_never_guessed(sftp_server: SftpSandbox) -> None:
    """An unknown country went out as US (a German address on a US form); `DEU` or `Germany` now read as DE."""
    german = {"state": None, "city": "Berlin", "postal_code": "10115", "address_line1": "Unter den Linden 5"}
    rows = [person(1, country="DEU", **german), person(2, country="Germany", **german), person(3, country="Atlantis")]
    outcomes = drop(mailhouse(sftp_server), rows)
    assert [(o.ok, o.code) for o in outcomes] == [(False, "invalid_country"), (True, None), (True, None)]
    csv_rows = list(csv.DictReader((sftp_server.root / "drops" / "winback_run-1.csv").read_text().splitlines()))
    assert [(r["key"], r["country"]) for r in csv_rows] == [("occ-1", "DE"), ("occ-2", "DE")]


def test_cells_a_spreadsheet_would_run_as_formulas_are_defused(sftp_server: SftpSandbox) -> None:
    rows = [
        person(1, full_name="=Hyperlink(A1)", first_name="@SUM(1+1)", amount="-12.50"),
        person(2, first_name="-2+3+cmd|' /C calc'!A0", amount="+1"),
    ]
    drop(mailhouse(sftp_server), rows)
    csv_rows = list(csv.DictReader((sftp_server.root / "drops" / "winback_run-1.csv").read_text().splitlines()))
    assert [(r["full_name"], r["first_name"], r["amount"]) for r in csv_rows] == [
        ("HYPERLINK A1", "'@SUM(1+1)", "-12.50"),  # the name loses its punctuation, USPS style
        ("ANN O NEIL 2", "'-2+3+cmd|' /C calc'!A0", "+1"),
    ]


def test_outcomes_wait_for_the_rename(sftp_server: SftpSandbox) -> None:
    dest = mailhouse(sftp_server)
    dest.open(RunInfo(run_id="run-2", sync_name="winback", mode=Mode.SEND_ONCE))
    assert dest.write(Operation.SEND, [person(1)]) == []
    assert not (sftp_server.root / "drops").exists()
    assert dest.close(success=True) == DeferredOutcome.success(destination_ref="winback_run-2.csv")


def test_a_lost_rename_is_retried_and_nothing_is_left_half_done(sftp_server: SftpSandbox) -> None:
    sftp_server.fail_renames = 1
    assert all(o.ok for o in drop(mailhouse(sftp_server), [person(1)]))
    names = sorted(p.name for p in (sftp_server.root / "drops").iterdir())
    assert names == ["winback_run-1.csv", "winback_run-1.manifest.json"]


def test_a_delivered_drop_is_never_overwritten(sftp_server: SftpSandbox) -> None:
    drop(mailhouse(sftp_server), [person(1)])
    original = (sftp_server.root / "drops" / "winback_run-1.csv").read_bytes()
    outcomes = drop(mailhouse(sftp_server), [person(7)])  # same run id, different content
    assert {(o.code, o.permanent) for o in outcomes} == {("drop_exists", True)}
    assert (sftp_server.root / "drops" / "winback_run-1.csv").read_bytes() == original


def test_pieces_an_unfinished_run_dropped_are_acknowledged_not_dropped_again(sftp_server: SftpSandbox) -> None:
    drop(mailhouse(sftp_server), [person(1), person(2)], run_id="run-1")  # its process died before recording it

    outcomes = drop(mailhouse(sftp_server), [person(1), person(2), person(3)], "run-2", unsettled=("run-0", "run-1"))

    assert [(o.key, o.ok, o.destination_ref) for o in outcomes] == [
        ("occ-1", True, "winback_run-1.csv"),
        ("occ-2", True, "winback_run-1.csv"),
        ("occ-3", True, "winback_run-2.csv"),
    ]
    second = (sftp_server.root / "drops" / "winback_run-2.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in second] == ["key", "occ-3"]


def test_a_run_whose_pieces_were_all_dropped_earlier_uploads_nothing(sftp_server: SftpSandbox) -> None:
    drop(mailhouse(sftp_server), [person(1)], run_id="run-1")
    uploads = sftp_server.stats["uploads"]

    outcomes = drop(mailhouse(sftp_server), [person(1)], "run-2", unsettled=("run-1",))

    assert [(o.ok, o.destination_ref) for o in outcomes] == [(True, "winback_run-1.csv")]
    assert sftp_server.stats["uploads"] == uploads
    assert not (sftp_server.root / "drops" / "winback_run-2.csv").exists()


@pytest.mark.parametrize("declared", [True, False])
def test_a_drop_the_mail_house_moved_on_pickup_is_found_in_its_pickup_dir(
    sftp_server: SftpSandbox, declared: bool
) -> None:
    """The mail house took the dead run's drop (and its manifest) into /drops/processed before the next run: with
    that folder declared in pickup_dirs the pieces are recognized, otherwise they are dropped a second time."""
    settings = {"pickup_dirs": ["/drops/processed"]} if declared else {}
    drop(mailhouse(sftp_server, **settings), [person(1), person(2)], run_id="run-1")
    processed = sftp_server.root / "drops" / "processed"
    processed.mkdir()
    for name in ("winback_run-1.csv", "winback_run-1.manifest.json"):
        (sftp_server.root / "drops" / name).rename(processed / name)
    uploads = sftp_server.stats["uploads"]

    outcomes = drop(mailhouse(sftp_server, **settings), [person(1), person(2)], "run-2", unsettled=("run-1",))

    assert all(o.ok for o in outcomes)
    if declared:
        assert {o.destination_ref for o in outcomes} == {"winback_run-1.csv"}
        assert sftp_server.stats["uploads"] == uploads
    else:
        assert {o.destination_ref for o in outcomes} == {"winback_run-2.csv"}
        assert (sftp_server.root / "drops" / "winback_run-2.csv").exists()


def test_a_retried_upload_finds_its_drop_already_taken_by_the_mail_house(sftp_server: SftpSandbox) -> None:
    """The same run id dropped again (its answer was lost) after the mail house moved the drop: nothing is
    uploaded twice, the CSV or its manifest."""
    settings = {"pickup_dirs": ["/drops/processed"]}
    drop(mailhouse(sftp_server, **settings), [person(1)], run_id="run-1")
    processed = sftp_server.root / "drops" / "processed"
    processed.mkdir()
    for name in ("winback_run-1.csv", "winback_run-1.manifest.json"):
        (sftp_server.root / "drops" / name).rename(processed / name)
    uploads = sftp_server.stats["uploads"]

    outcomes = drop(mailhouse(sftp_server, **settings), [person(1)], run_id="run-1")

    assert [(o.ok, o.destination_ref) for o in outcomes] == [(True, "winback_run-1.csv")]
    assert sftp_server.stats["uploads"] == uploads
    assert sorted(p.name for p in (sftp_server.root / "drops").iterdir()) == ["processed"]


@pytest.mark.parametrize("fault", ["unreachable", "unreadable"])
def test_earlier_drops_that_cannot_be_checked_fail_the_run_retryably(sftp_server: SftpSandbox, fault: str) -> None:
    if fault == "unreadable":  # a file under the drop's name that is not a drop
        (sftp_server.root / "drops").mkdir()
        (sftp_server.root / "drops" / "winback_run-1.csv").write_text("name,address\nAnn,1 Main St\n")
        dest = mailhouse(sftp_server, max_retries=0)
    else:
        with socket.create_server(("127.0.0.1", 0)) as closed:
            port = closed.getsockname()[1]
        dest = mailhouse(sftp_server, max_retries=0, port=port)

    outcomes = drop(dest, [person(1), person(2)], "run-2", unsettled=("run-1",))

    assert {(o.code, o.permanent) for o in outcomes} == {("drop_check_failed", False)}
    assert len(outcomes) == 2 and sftp_server.stats["uploads"] == 0


def visible(folder: Path) -> list[str]:
    """What the mail house sees in the drop folder: not the hidden temporary names."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def assert_one_complete_drop(folder: Path, name: str, keys: list[str]) -> None:
    """Exactly one CSV, holding `keys` once each, and its manifest with the right row count and SHA-256."""
    manifest_name = name.removesuffix(".csv") + ".manifest.json"
    assert sorted(p.name for p in folder.iterdir()) == [name, manifest_name]  # no temporary file left either
    content = (folder / name).read_bytes()
    assert [row["key"] for row in csv.DictReader(content.decode().splitlines())] == keys
    manifest = json.loads((folder / manifest_name).read_text())
    assert (manifest["file"], manifest["rows"]) == (name, len(keys))
    assert manifest["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_manifest_the_server_refuses_fails_the_drop_before_anything_is_delivered(sftp_server: SftpSandbox) -> None:
    """The manifest goes up (under its temporary name) before the CSV is renamed into place: when the server
    refuses it, no drop the mail house could see exists and every row is retried, into one complete drop."""
    sftp_server.refuse_writes = "*.manifest.json*"  # the temporary name too

    outcomes = drop(mailhouse(sftp_server, max_retries=1), [person(1), person(2)], run_id="run-1")

    assert {(o.code, o.permanent) for o in outcomes} == {("sftp_error", False)}
    assert visible(sftp_server.root / "drops") == []
    sftp_server.refuse_writes = ""

    outcomes = drop(mailhouse(sftp_server), [person(1), person(2)], "run-2", unsettled=("run-1",))

    assert [(o.ok, o.destination_ref) for o in outcomes] == [(True, "winback_run-2.csv")] * 2
    assert_one_complete_drop(sftp_server.root / "drops", "winback_run-2.csv", ["occ-1", "occ-2"])


def test_a_manifest_left_behind_is_reported_and_completed_by_the_next_run(
    sftp_server: SftpSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the CSV is in place its rows are delivered (sent again, they would be printed twice) even if the
    manifest cannot be renamed beside it: the run says so, and the next run puts the manifest in place, even a
    run with nothing to send."""
    sftp_server.refuse_writes = "*.manifest.json"  # the upload under the temporary name is accepted
    sleeps: list[float] = []
    monkeypatch.setattr(sftp_mailhouse.time, "sleep", sleeps.append)
    dest = mailhouse(sftp_server, max_retries=2)

    with caplog.at_level(logging.INFO, logger="tidings"):
        outcomes = drop(dest, [person(1), person(2)], run_id="run-1")

    assert [(o.ok, o.destination_ref) for o in outcomes] == [(True, "winback_run-1.csv")] * 2
    assert visible(sftp_server.root / "drops") == ["winback_run-1.csv"]
    assert dest.missing_manifests == ["winback_run-1.manifest.json"]
    assert sleeps == [0.2, 0.4]  # three attempts at the manifest, no sleep after the last
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        "event=mailhouse.manifest_missing destination=mailhouse_sftp drop=winback_run-1.csv rows=2 attempts=3"
    )
    sftp_server.refuse_writes = ""
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="tidings"):
        assert drop(mailhouse(sftp_server), [], run_id="run-2") == []

    assert_one_complete_drop(sftp_server.root / "drops", "winback_run-1.csv", ["occ-1", "occ-2"])
    assert [r.getMessage() for r in caplog.records] == [
        "event=mailhouse.manifest_completed destination=mailhouse_sftp drop=winback_run-1.csv"
    ]


def test_a_manifest_taken_away_after_delivery_is_never_written_again(sftp_server: SftpSandbox) -> None:
    """Only a manifest left at its temporary name is completed: one the mail house consumed, or an operator
    removed to hold a drop back, must not come back and get the drop printed again."""
    drop(mailhouse(sftp_server), [person(1)], run_id="run-1")
    (sftp_server.root / "drops" / "winback_run-1.manifest.json").unlink()
    uploads = sftp_server.stats["uploads"]

    drop(mailhouse(sftp_server), [], run_id="run-2")

    assert visible(sftp_server.root / "drops") == ["winback_run-1.csv"]
    assert sftp_server.stats["uploads"] == uploads


def test_another_campaigns_manifest_left_behind_is_left_to_it(sftp_server: SftpSandbox) -> None:
    """Campaign `winback` would take `winback_2_run-1.csv` for one of its drops: the manifest says whose it is."""
    sftp_server.refuse_writes = "*.manifest.json"
    other = mailhouse(sftp_server, max_retries=0)
    other.target = SftpMailhouseDestination.Target(campaign="winback_2")
    drop(other, [person(1)], run_id="run-1")
    sftp_server.refuse_writes = ""

    drop(mailhouse(sftp_server), [], run_id="run-2")

    assert visible(sftp_server.root / "drops") == ["winback_2_run-1.csv"]
    drop(other, [], run_id="run-2")
    assert visible(sftp_server.root / "drops") == ["winback_2_run-1.csv", "winback_2_run-1.manifest.json"]


def mail_project(tmp_path: Path, server: SftpSandbox, model_yaml: str = MAIL_MODEL_YAML) -> tuple[Any, Path]:
    """A project with the mail-drop sync `winback_mail` over `server`, and a warehouse holding its five pieces."""
    models = tmp_path / "project" / "models"
    models.mkdir(parents=True)
    (models / "_mail.yml").write_text(model_yaml)
    destinations = tmp_path / "project" / "destinations.yml"
    destinations.write_text(
        textwrap.dedent(f"""
        profiles:
          sandbox:
            mailhouse:
              type: sftp_mailhouse
              host: 127.0.0.1
              port: {server.port}
              username: tidings
              password_env: {MAILHOUSE_SFTP_PASSWORD}
              remote_dir: /drops
              known_host_key: any
              max_retries: 1
        """)
    )
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "create schema analytics; create table analytics.mail_pieces as select 'winback:' || i as occurrence_key, "
            "'Ann Example ' || i as full_name, i || ' Main Street' as street, 'Saint Paul' as city, 'MN' as state, "
            "'55101' as zip, 'Ann' as first, i * 10 as points from range(5) t(i)"
        )
    return load_project(tmp_path / "project", destinations, profile="sandbox"), warehouse


@pytest.mark.parametrize(
    ("refused", "first_status"),
    [("*.manifest.json*", "failed"), ("*.manifest.json", "success")],
    ids=["manifest-upload-refused", "manifest-rename-refused"],
)
def test_a_drop_is_never_left_without_its_manifest_across_runs(
    sftp_server: SftpSandbox, tmp_path: Path, refused: str, first_status: str
) -> None:
    """Through the engine: whichever step of the manifest fails, the following run leaves exactly one CSV with
    every piece once, its correct manifest beside it, and every piece in the ledger once."""
    project, warehouse = mail_project(tmp_path, sftp_server)
    sftp_server.refuse_writes = refused

    first = run_sync("winback_mail", project=project, warehouse=warehouse)

    assert first.status == first_status
    if first.sent:  # delivered without its manifest: the run says so, in its message and its history row
        [warning] = first.warnings
        assert warning.startswith(f"winback_{first.run_id}.csv was delivered without its manifest; the next run")
        assert first.message.endswith(f"; warning: {warning}")
        with duckdb.connect(str(warehouse)) as con:
            [(message,)] = con.execute(
                "select message from tidings.sync_runs where run_id = ?", [first.run_id]
            ).fetchall()
        assert warning in message
    else:
        assert first.warnings == []
    sftp_server.refuse_writes = ""

    second = run_sync("winback_mail", project=project, warehouse=warehouse)

    assert (first.sent + second.sent, second.failed, second.warnings) == (5, 0, [])
    drop_name = f"winback_{(first if first.sent else second).run_id}.csv"
    assert_one_complete_drop(sftp_server.root / "drops", drop_name, [f"winback:{i}" for i in range(5)])
    with duckdb.connect(str(warehouse)) as con:
        ledger = con.execute(
            "select occurrence_key, destination_ref from tidings.message_ledger where status = 'sent'"
        ).fetchall()
    assert Counter(key for key, _ in ledger) == Counter(f"winback:{i}" for i in range(5))
    assert {ref for _, ref in ledger} == {drop_name}
    assert run_sync("winback_mail", project=project, warehouse=warehouse).sent == 0


HEADER = ["key", *sftp_mailhouse.ADDRESS_COLUMNS, "offer_code"]


def test_every_drop_has_the_declared_columns_whichever_row_comes_first(sftp_server: SftpSandbox) -> None:
    """The header came from the first row: a personalization field it lacked never became a column, and later
    rows lost their value for it. It now comes from the sync's mapping, in mapping order, the same for every drop."""
    mapped = ("full_name", "address_line1", "city", "state", "postal_code", "points", "first_name")
    without_personalization = {k: v for k, v in person(1).fields.items() if k != "first_name"}
    rows = [OutboundRow("occ-1", without_personalization, "idem-1"), person(2, points=20)]

    drop(mailhouse(sftp_server), rows, mapped=mapped)
    drop(mailhouse(sftp_server), [person(3, points=30), person(4)], run_id="run-2", mapped=mapped)

    folder = sftp_server.root / "drops"
    first, second = (
        list(csv.reader((folder / f"winback_{r}.csv").read_text().splitlines())) for r in ("run-1", "run-2")
    )
    assert first[0] == second[0] == [*HEADER, "points", "first_name"]
    assert [record[-2:] for record in first[1:]] == [["", ""], ["20", "Ann"]]
    assert [record[-2:] for record in second[1:]] == [["30", "Ann"], ["", "Ann"]]
    assert json.loads((folder / "winback_run-1.manifest.json").read_text())["columns"] == first[0]


def test_the_engine_hands_the_drop_its_mapped_fields(
    sftp_server: SftpSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run tells the drop the sync's mapped fields, in mapping order (not the plan's sorted order)."""
    model_yaml = MAIL_MODEL_YAML.replace("postal_code: zip}", "postal_code: zip, points: points, first_name: first}")
    project, warehouse = mail_project(tmp_path, sftp_server, model_yaml)
    runs = opened_runs(monkeypatch, SftpMailhouseDestination)

    result = run_sync("winback_mail", project=project, warehouse=warehouse)

    assert result.sent == 5
    assert [run.mapped_fields for run in runs] == [
        ("full_name", "address_line1", "city", "state", "postal_code", "points", "first_name")
    ]
    content = (sftp_server.root / "drops" / f"winback_{result.run_id}.csv").read_text()
    assert next(csv.reader(content.splitlines())) == [*HEADER, "points", "first_name"]


def test_server_refuses_rename_onto_an_existing_file(sftp_server: SftpSandbox) -> None:
    transport = paramiko.Transport(("127.0.0.1", sftp_server.port))
    transport.connect(username="tidings", password=sftp_server.password)
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None
    for name in ("a.csv", "b.csv"):
        with sftp.open(name, "wb") as handle:
            handle.write(name.encode())
    with pytest.raises(OSError):
        sftp.rename("b.csv", "a.csv")
    with pytest.raises(OSError):
        sftp.posix_rename("b.csv", "a.csv")
    transport.close()
    assert (sftp_server.root / "a.csv").read_bytes() == b"a.csv"


def test_bad_addresses_fail_per_row(sftp_server: SftpSandbox) -> None:
    rows = [person(1), person(2, address_line1=" "), person(3, postal_code="1234")]
    outcomes = {o.key: o for o in drop(mailhouse(sftp_server), rows)}
    assert outcomes["occ-1"].ok
    assert (outcomes["occ-2"].code, outcomes["occ-3"].code) == ("missing_address", "invalid_postal_code")
    csv_rows = (sftp_server.root / "drops" / "winback_run-1.csv").read_text().splitlines()
    assert len(csv_rows) == 2  # header + the one good row


def test_failed_run_uploads_nothing(sftp_server: SftpSandbox) -> None:
    dest = mailhouse(sftp_server)
    dest.open(RunInfo(run_id="run-3", sync_name="winback", mode=Mode.SEND_ONCE))
    dest.write(Operation.SEND, [person(1)])
    closing = dest.close(success=False)
    assert (closing.ok, closing.code, closing.permanent) == (False, "drop_aborted", False)
    assert sftp_server.stats["uploads"] == 0


def test_wrong_password_and_wrong_host_key_are_refused(sftp_server: SftpSandbox, monkeypatch: Any) -> None:
    monkeypatch.setenv(MAILHOUSE_SFTP_PASSWORD, "wrong")
    outcomes = drop(mailhouse(sftp_server, max_retries=0), [person(1)])
    assert {(o.code, o.permanent) for o in outcomes} == {("sftp_error", False)}
    monkeypatch.undo()
    impostor = paramiko.ECDSAKey.generate()
    dest = mailhouse(sftp_server, max_retries=0, known_host_key=f"{impostor.get_name()} {impostor.get_base64()}")
    assert {o.code for o in drop(dest, [person(1)])} == {"sftp_error"}
    assert sftp_server.stats["uploads"] == 0


def test_key_authentication(tmp_path: Path) -> None:
    key = paramiko.ECDSAKey.generate()
    key_file = tmp_path / "id_ecdsa"
    key.write_private_key_file(str(key_file))
    with SftpSandbox(tmp_path / "keyed", authorized_key=key) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("TIDINGS_TEST_SFTP_KEY_PATH", str(key_file))
        dest = mailhouse(server, private_key_path_env="TIDINGS_TEST_SFTP_KEY_PATH", password_env=None)
        assert all(o.ok for o in drop(dest, [person(1)]))


def test_state_is_required_only_where_addresses_carry_one(sftp_server: SftpSandbox) -> None:
    uk = {"city": "London", "state": None, "postal_code": "SW1A 1AA", "country": "GB"}
    rows = [person(1, **uk), person(2, state=None), person(3, state=None, country="CA", postal_code="K1A 0B1")]
    outcomes = {o.key: o for o in drop(mailhouse(sftp_server), rows)}
    assert outcomes["occ-1"].ok
    assert (outcomes["occ-2"].code, outcomes["occ-3"].code) == ("missing_address", "missing_address")
    assert "state" in outcomes["occ-2"].message
    csv_rows = list(csv.DictReader((sftp_server.root / "drops" / "winback_run-1.csv").read_text().splitlines()))
    assert [(r["key"], r["state"], r["country"]) for r in csv_rows] == [("occ-1", "", "GB")]


def test_postcodes_outside_the_us_keep_their_own_form(sftp_server: SftpSandbox) -> None:
    """A Brazilian CEP was printed without its hyphen; US ZIPs keep the USPS form."""
    brazil = {"city": "São Paulo", "state": "SP", "country": "BR", "postal_code": "01310-100"}
    uk = {"city": "London", "state": None, "country": "GB", "postal_code": " sw1a  1aa"}
    drop(mailhouse(sftp_server), [person(1, **brazil), person(2, **uk), person(3)])
    csv_rows = list(csv.DictReader((sftp_server.root / "drops" / "winback_run-1.csv").read_text().splitlines()))
    assert [r["postal_code"] for r in csv_rows] == ["01310-100", "SW1A 1AA", "55101-1234"]


def test_a_mapped_offer_code_fills_the_offer_column_and_a_mapped_key_is_refused(
    sftp_server: SftpSandbox, tmp_path: Path
) -> None:
    """A per-recipient offer code mapped as `offer_code` fills the offer column once (it was written a second time,
    with the target's code in both); `key` is the row key's column, so mapping it is a load-time error."""
    mapped = ("full_name", "address_line1", "city", "state", "postal_code", "offer_code")
    rows = [person(1, offer_code="VIP-7"), person(2, offer_code=None)]
    drop(mailhouse(sftp_server), rows, mapped=mapped)
    csv_rows = list(csv.reader((sftp_server.root / "drops" / "winback_run-1.csv").read_text().splitlines()))
    assert csv_rows[0] == HEADER
    assert [record[HEADER.index("offer_code")] for record in csv_rows[1:]] == ["VIP-7", "WINBACK20"]

    with pytest.raises(ConfigError) as refused:
        mail_project(
            tmp_path, sftp_server, MAIL_MODEL_YAML.replace("postal_code: zip}", "postal_code: zip, key: first}")
        )
    assert "mapping.key" in str(refused.value) and "fills the field 'key' itself" in str(refused.value)
