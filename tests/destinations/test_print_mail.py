"""Print-and-mail connector against the Lob-style sandbox: pieces, idempotency, per-piece errors, cost."""

from __future__ import annotations

import json
import os
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from syncs.config import ConfigError, load_project
from syncs.destinations import print_mail
from syncs.destinations.base import Operation, OutboundRow, RowOutcome
from syncs.destinations.print_mail import PrintMailDestination
from syncs.sandbox.apps.credentials import LOB_API_KEY
from tests.destinations.runs import send_once_run

SENDER = {
    "name": "Tidings Demo Co",
    "address_line1": "185 Berry St",
    "address_city": "San Francisco",
    "address_state": "CA",
    "address_zip": "94107",
}
DAY = 24 * 3600


def lob(sandbox: Any, **settings: Any) -> PrintMailDestination:
    cfg = PrintMailDestination.Settings(
        base_url=f"{sandbox.url}/lob/v1", api_key_env=LOB_API_KEY, from_address=SENDER, **settings
    )
    target = PrintMailDestination.Target(kind="postcard", front_template="winback_front", back_template="winback_back")
    return PrintMailDestination("lob", cfg, target)


def load_sync(tmp_path: Path, target: dict[str, Any], settings: dict[str, Any]) -> None:
    """Load a project whose one model declares one print_mail sync (raises ConfigError). YAML is a superset of
    JSON, so the declarations are written as JSON."""
    sync = {
        "name": "winback_postcards",
        "destination": "lob",
        "mode": "send_once",
        "primary_key": "occurrence_key",
        "target": {"front_template": "winback_front", "back_template": "winback_back", **target},
        "mapping": {k: k for k in ("name", "address_line1", "address_city", "address_state", "address_zip")},
    }
    model = {"name": "msg_winback", "config": {"meta": {"tidings": {"syncs": [sync]}}}}
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "_messages.yml").write_text(json.dumps({"models": [model]}))
    lob_settings = {"type": "print_mail", "base_url": "http://127.0.0.1:9/lob/v1", "api_key_env": LOB_API_KEY}
    destinations = tmp_path / "destinations.yml"
    destinations.write_text(json.dumps({"profiles": {"sandbox": {"lob": {**lob_settings, **settings}}}}))
    load_project(tmp_path, destinations, profile="sandbox")


def send_run(
    dest: PrintMailDestination, rows: list[OutboundRow], run_id: str, unsettled: tuple[str, ...] = ()
) -> list[RowOutcome]:
    return send_once_run(dest, "winback_postcards", rows, run_id, unsettled)


def post_postcard(sandbox: Any, idempotency_key: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A postcard put into the sandbox without the connector (by an older version of it, or another sync)."""
    body = {"to": {**SENDER, "name": "Ann"}, "from": SENDER, "front": "f", "back": "b", "metadata": metadata}
    response = requests.post(
        f"{sandbox.url}/lob/v1/postcards",
        json=body,
        auth=(os.environ[LOB_API_KEY], ""),
        headers={"Idempotency-Key": idempotency_key},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


def piece(i: int, **overrides: Any) -> OutboundRow:
    fields = {
        "name": f"Person {i}",
        "address_line1": f"{i} Main St",
        "address_city": "Portland",
        "address_state": "OR",
        "address_zip": "97201",
        "first_name": "Ann",
        **overrides,
    }
    return OutboundRow(f"occ-{i}", fields, f"idem-{i}")


def test_each_row_prints_one_piece_with_its_cost(clean_sandbox: Any) -> None:
    outcomes = lob(clean_sandbox).write(Operation.SEND, [piece(1), piece(2)])
    assert all(o.ok and o.cost == 0.63 and (o.destination_ref or "").startswith("psc_") for o in outcomes)
    printed = clean_sandbox.app("lob").pieces
    assert len(printed) == 2
    assert printed[0]["to"]["address_city"] == "Portland" and printed[0]["to"]["address_country"] == "US"
    assert printed[0]["merge_variables"] == {"first_name": "Ann"}
    assert printed[0]["from"]["name"] == "Tidings Demo Co"


def test_repeated_idempotency_key_returns_the_original_piece(clean_sandbox: Any) -> None:
    dest = lob(clean_sandbox)
    [first] = dest.write(Operation.SEND, [piece(1)])
    [again] = dest.write(Operation.SEND, [piece(1)])
    assert again.ok and again.destination_ref == first.destination_ref
    app = clean_sandbox.app("lob")
    assert len(app.pieces) == 1 and app.stats["idempotent_replays"] == 1


def test_retry_after_a_lost_answer_does_not_print_twice(clean_sandbox: Any, control: Any) -> None:
    control("lob", latency_seconds=0.3)
    dest = lob(clean_sandbox, timeout_seconds=0.1, max_retries=0)
    [lost] = dest.write(Operation.SEND, [piece(1)])
    assert not lost.ok and not lost.permanent  # the piece was printed, but we never heard back
    control("lob", latency_seconds=0)
    [retried] = lob(clean_sandbox).write(Operation.SEND, [piece(1)])
    app = clean_sandbox.app("lob")
    deadline = time.monotonic() + 5
    while not app.stats["idempotent_replays"] and time.monotonic() < deadline:  # the lost request, served late
        time.sleep(0.01)  # (and not left to land in the next test's sandbox)
    assert retried.ok and len(app.pieces) == 1 and app.stats["idempotent_replays"] == 1


def test_a_piece_printed_before_a_crash_is_not_printed_again_after_lob_forgot_its_key(clean_sandbox: Any) -> None:
    """Lob honours an idempotency key for 24 hours: a run after a weekend of failures finds the piece an unsettled
    run printed (by its metadata) and records it, with its price, instead of printing a second one."""
    app = clean_sandbox.app("lob")
    [first] = send_run(lob(clean_sandbox), [piece(1)], "run-1")
    # run-1 died before committing that acknowledgement; the next run comes after Lob's window
    app.advance_clock(DAY + 3600)

    rerun = send_run(lob(clean_sandbox), [piece(1), piece(2)], "run-2", ("run-1",))

    assert [(o.ok, o.cost) for o in rerun] == [(True, 0.63), (True, 0.63)]
    assert rerun[0].destination_ref == first.destination_ref
    assert len(app.pieces) == 2 and app.stats["idempotent_replays"] == 0
    assert app.pieces[0]["metadata"] == {"tidings_row": "occ-1", "tidings_idempotency_key": "idem-1"}


def test_an_earlier_piece_is_matched_on_its_idempotency_key_across_pages(clean_sandbox: Any, monkeypatch: Any) -> None:
    """Another sync's piece for the same row key is not this occurrence's; a piece printed before the key went into
    the metadata is matched on its row key alone."""
    monkeypatch.setattr(print_mail, "LIST_LIMIT", 1)
    ours = post_postcard(clean_sandbox, "idem-1", {"tidings_row": "occ-1", "tidings_idempotency_key": "idem-1"})
    post_postcard(clean_sandbox, "other", {"tidings_row": "occ-1", "tidings_idempotency_key": "other"})  # listed first
    older_version = post_postcard(clean_sandbox, "idem-2", {"tidings_row": "occ-2"})
    app = clean_sandbox.app("lob")
    app.advance_clock(2 * DAY)

    rerun = send_run(lob(clean_sandbox), [piece(1), piece(2), piece(3)], "run-2", ("run-0", "run-1"))

    assert all(o.ok for o in rerun)
    assert [o.destination_ref for o in rerun[:2]] == [ours["id"], older_version["id"]]
    assert len(app.pieces) == 4  # occ-3 only


@pytest.mark.parametrize("fault", [{"burst_5xx": 1}, {"drop_next": 1}], ids=["error", "no_answer"])
def test_when_pieces_cannot_be_listed_the_row_waits_unprinted(
    clean_sandbox: Any, control: Any, fault: dict[str, int]
) -> None:
    control("lob", **fault)

    [outcome] = send_run(lob(clean_sandbox, max_retries=0), [piece(1)], "run-2", ("run-1",))

    assert (outcome.ok, outcome.code, outcome.permanent) == (False, "piece_check_failed", False)
    app = clean_sandbox.app("lob")
    assert app.pieces == [] and app.stats["requests"] == 1  # the lookup only: nothing was posted


def test_without_unsettled_runs_pieces_are_posted_without_a_lookup(clean_sandbox: Any) -> None:
    outcomes = send_run(lob(clean_sandbox), [piece(1), piece(2)], "run-1")
    app = clean_sandbox.app("lob")
    assert all(o.ok for o in outcomes) and app.stats["requests"] == 2


def test_the_sandbox_honours_an_idempotency_key_for_24_hours(clean_sandbox: Any) -> None:
    app = clean_sandbox.app("lob")
    first = post_postcard(clean_sandbox, "key-1", {})
    app.advance_clock(DAY - 60)
    assert post_postcard(clean_sandbox, "key-1", {})["id"] == first["id"]
    app.advance_clock(120)
    assert post_postcard(clean_sandbox, "key-1", {})["id"] != first["id"]
    assert len(app.pieces) == 2


def test_the_sandbox_lists_pieces_by_metadata_like_lob(clean_sandbox: Any) -> None:
    """Newest first, `limit` per page, `next_url` / `previous_url` cursors, metadata filters, `total_count`."""
    for i in range(5):
        post_postcard(clean_sandbox, f"key-{i}", {"campaign": "other" if i == 2 else "winback", "n": str(i)})
    url = f"{clean_sandbox.url}/lob/v1/postcards"
    auth = (os.environ[LOB_API_KEY], "")
    query = {"limit": 2, "metadata[campaign]": "winback", "include[]": "total_count"}

    first = requests.get(url, params=query, auth=auth, timeout=5).json()
    second = requests.get(first["next_url"], auth=auth, timeout=5).json()
    back = requests.get(second["previous_url"], auth=auth, timeout=5).json()

    def numbers(page: dict[str, Any]) -> list[str]:
        return [p["metadata"]["n"] for p in page["data"]]

    assert (first["object"], first["count"], first["total_count"], first["previous_url"]) == ("list", 2, 4, None)
    assert (numbers(first), numbers(second), numbers(back)) == (["4", "3"], ["1", "0"], ["4", "3"])
    assert second["next_url"] is None
    assert requests.get(f"{clean_sandbox.url}/lob/v1/letters", auth=auth, timeout=5).json()["count"] == 0
    refused = requests.get(url, params={"limit": 101}, auth=auth, timeout=5)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid")
    assert requests.get(url, auth=("test_wrong", ""), timeout=5).status_code == 401


def test_bad_addresses_fail_per_piece(clean_sandbox: Any) -> None:
    rows = [piece(1), piece(2, address_zip="ABCDE"), piece(3, address_line1=None)]
    outcomes = {o.key: o for o in lob(clean_sandbox).write(Operation.SEND, rows)}
    assert outcomes["occ-1"].ok
    assert (outcomes["occ-2"].code, outcomes["occ-2"].permanent) == ("undeliverable_address", True)
    assert (outcomes["occ-3"].code, outcomes["occ-3"].permanent) == ("missing_address", True)
    assert "ABCDE" not in (outcomes["occ-2"].message or "")


def test_wrong_key_is_refused(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(LOB_API_KEY, "test_wrong")
    [outcome] = lob(clean_sandbox).write(Operation.SEND, [piece(1)])
    assert (outcome.code, outcome.permanent) == ("unauthorized", False)


def test_rate_limit_is_honoured(clean_sandbox: Any) -> None:
    app = clean_sandbox.app("lob")
    app.set_rate_limit(5)
    try:
        outcomes = lob(clean_sandbox).write(Operation.SEND, [piece(i) for i in range(8)])
    finally:
        app.set_rate_limit(app.default_requests_per_second)
    assert all(o.ok for o in outcomes)
    assert len(app.pieces) == 8


def test_an_international_address_needs_no_state_or_postal_code(clean_sandbox: Any) -> None:
    """Lob requires city, state and ZIP for US addresses only; a UK piece without a state is printed, a US piece
    without one fails locally, before any request."""
    rows = [
        piece(1, address_state=None, address_zip="SW1A 1AA", address_city="London", address_country="gb"),
        piece(2, address_state=None, address_zip=None, address_city=None, address_country="IE"),
        piece(3, address_state=None),
    ]
    outcomes = {o.key: o for o in lob(clean_sandbox).write(Operation.SEND, rows)}

    assert outcomes["occ-1"].ok and outcomes["occ-2"].ok
    assert (outcomes["occ-3"].code, outcomes["occ-3"].message) == ("missing_address", "address lacks address_state")
    printed = clean_sandbox.app("lob").pieces
    assert [p["to"]["address_country"] for p in printed] == ["GB", "IE"]
    assert "address_state" not in printed[0]["to"]


def test_countries_go_to_lob_as_two_letter_codes_and_an_unknown_one_fails_its_row(clean_sandbox: Any) -> None:
    """Lob takes ISO 3166-1 alpha-2 only: `USA` or `Germany` would have been refused (or, as `USA`, skipped the
    US address rules); a country nobody knows fails locally instead of printing somewhere."""
    rows = [
        piece(1, address_country="USA"),
        piece(2, address_state=None, address_city="Berlin", address_zip="10115", address_country="Germany"),
        piece(3, address_country="Atlantis"),
        piece(4, address_state=None, address_country="usa"),
    ]
    outcomes = {o.key: o for o in lob(clean_sandbox).write(Operation.SEND, rows)}
    assert outcomes["occ-1"].ok and outcomes["occ-2"].ok
    assert (outcomes["occ-3"].code, outcomes["occ-3"].permanent) == ("invalid_country", True)
    assert outcomes["occ-4"].code == "missing_address"  # a US address still needs its state
    assert [p["to"]["address_country"] for p in clean_sandbox.app("lob").pieces] == ["US", "DE"]


def test_the_sandbox_refuses_an_incomplete_us_address_like_lob(clean_sandbox: Any) -> None:
    url = f"{clean_sandbox.url}/lob/v1/postcards"
    auth = (os.environ[LOB_API_KEY], "")
    base = {"front": "winback_front", "back": "winback_back", "from": SENDER}
    us_without_state = {"name": "A", "address_line1": "1 Main St", "address_city": "Portland", "address_zip": "97201"}
    gb_line_only = {"name": "A", "address_line1": "10 Downing St", "address_country": "GB"}

    refused = requests.post(url, json={**base, "to": us_without_state}, auth=auth, timeout=5)
    printed = requests.post(url, json={**base, "to": gb_line_only}, auth=auth, timeout=5)

    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_address")
    assert printed.status_code == 200


def test_merge_variables_keep_their_json_types(clean_sandbox: Any) -> None:
    """A template's `{{#if vip}}` must see false: a stringified "False" would be truthy and print the offer."""
    extras = {"vip": False, "visits": 3, "spend": 12.5, "since": date(2024, 5, 1), "credit": Decimal("10.10")}
    [outcome] = lob(clean_sandbox).write(Operation.SEND, [piece(1, **extras)])
    assert outcome.ok
    merge = clean_sandbox.app("lob").pieces[0]["merge_variables"]
    assert merge == {
        "first_name": "Ann",
        "vip": False,
        "visits": 3,
        "spend": 12.5,
        "since": "2024-05-01",
        "credit": "10.10",
    }


def test_a_non_finite_merge_variable_fails_only_its_row(clean_sandbox: Any) -> None:
    rows = [piece(1), piece(2, score=float("nan")), piece(3, score=float("inf"))]
    outcomes = {o.key: o for o in lob(clean_sandbox).write(Operation.SEND, rows)}
    assert outcomes["occ-1"].ok
    for key in ("occ-2", "occ-3"):
        assert (outcomes[key].code, outcomes[key].permanent) == ("non_finite_number", True)
    assert len(clean_sandbox.app("lob").pieces) == 1


def test_a_sync_without_any_sender_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_sync(tmp_path, target={}, settings={})
    [problem] = refused.value.problems
    assert (problem.file, problem.field) == (tmp_path / "models" / "_messages.yml", "target.from_address")
    assert "destinations.yml" in problem.fix
    load_sync(tmp_path, target={"from_address": SENDER}, settings={})
    load_sync(tmp_path, target={}, settings={"from_address": SENDER})
