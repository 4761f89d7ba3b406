"""Print-and-mail connector against the Lob-style sandbox: pieces, idempotency, per-piece errors, cost."""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from syncs.config import ConfigError, load_project
from syncs.destinations.base import Operation, OutboundRow
from syncs.destinations.print_mail import PrintMailDestination
from syncs.sandbox.apps.credentials import LOB_API_KEY

SENDER = {
    "name": "Tidings Demo Co",
    "address_line1": "185 Berry St",
    "address_city": "San Francisco",
    "address_state": "CA",
    "address_zip": "94107",
}


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
    assert retried.ok and len(clean_sandbox.app("lob").pieces) == 1


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
