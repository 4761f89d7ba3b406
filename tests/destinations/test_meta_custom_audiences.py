"""Meta Custom Audiences connector against its sandbox: hashed multi-key uploads, sessions, removal."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from syncs.destinations.base import Mode, Operation, OutboundRow, RunInfo
from syncs.destinations.meta_custom_audiences import MetaCustomAudiencesDestination
from syncs.identity import sha256_hex
from syncs.sandbox.apps.credentials import META_ACCESS_TOKEN

AUDIENCE = "23850000000000001"


def meta(sandbox: Any, estimated_rows: int = 0) -> MetaCustomAudiencesDestination:
    settings = MetaCustomAudiencesDestination.Settings(
        base_url=f"{sandbox.url}/meta/v21.0", access_token_env=META_ACCESS_TOKEN
    )
    dest = MetaCustomAudiencesDestination(
        "meta_ads", settings, MetaCustomAudiencesDestination.Target(audience_id=AUDIENCE)
    )
    dest.open(RunInfo(run_id="r1", sync_name="s", mode=Mode.MIRROR, estimated_rows=estimated_rows))
    return dest


def people(start: int, n: int) -> list[OutboundRow]:
    return [
        OutboundRow(f"c{i}", {"EMAIL": f"Person{i}@Example.com", "FN": "Ann", "COUNTRY": "US"})
        for i in range(start, start + n)
    ]


def test_payload_is_hashed_multi_key(clean_sandbox: Any) -> None:
    outcomes = meta(clean_sandbox).write(Operation.UPSERT, people(0, 2))
    assert all(o.ok for o in outcomes)
    app = clean_sandbox.app("meta")
    upload = app.uploads[0]
    assert (upload["method"], upload["schema"], upload["rows"]) == ("POST", ["EMAIL", "FN", "COUNTRY"], 2)
    expected = (("COUNTRY", sha256_hex("us")), ("EMAIL", sha256_hex("person0@example.com")), ("FN", sha256_hex("ann")))
    assert expected in app.audiences[AUDIENCE]


def test_10001_rows_take_two_requests_in_one_session(clean_sandbox: Any) -> None:
    dest = meta(clean_sandbox, estimated_rows=10_001)
    outcomes = dest.write(Operation.UPSERT, people(0, 10_000)) + dest.write(Operation.UPSERT, people(10_000, 1))
    assert len(outcomes) == 10_001 and all(o.ok for o in outcomes)
    app = clean_sandbox.app("meta")
    sessions = [u["session"] for u in app.uploads]
    assert len(sessions) == 2 and sessions[0]["session_id"] == sessions[1]["session_id"]
    assert [(s["batch_seq"], s["last_batch_flag"]) for s in sessions] == [(1, False), (2, True)]
    assert sessions[0]["estimated_num_total"] == 10_001
    assert len(app.audiences[AUDIENCE]) == 10_001


def test_removal_deletes_members(clean_sandbox: Any) -> None:
    dest = meta(clean_sandbox)
    dest.write(Operation.UPSERT, people(0, 3))
    assert all(o.ok for o in dest.write(Operation.REMOVE, people(0, 2)))
    app = clean_sandbox.app("meta")
    assert app.uploads[-1]["method"] == "DELETE"
    assert len(app.audiences[AUDIENCE]) == 1


def test_rows_without_any_usable_identifier_fail_alone(clean_sandbox: Any) -> None:
    rows = [*people(0, 1), OutboundRow("bad", {"EMAIL": "not an email", "FN": "---"})]
    outcomes = {o.key: o for o in meta(clean_sandbox).write(Operation.UPSERT, rows)}
    assert outcomes["c0"].ok
    assert (outcomes["bad"].code, outcomes["bad"].permanent) == ("no_identifier", True)


def test_sandbox_rejects_unhashed_values_and_oversized_requests(clean_sandbox: Any) -> None:
    import requests

    url = f"{clean_sandbox.url}/meta/v21.0/{AUDIENCE}/users"
    token = {"access_token": "sandbox-meta-access-token"}
    plain = {**token, "payload": {"schema": ["EMAIL"], "data": [["person@example.com"], [sha256_hex("a@b.co")]]}}
    answer = requests.post(url, json=plain, timeout=5).json()
    assert (answer["num_received"], answer["num_invalid_entries"]) == (2, 1)
    too_many = {**token, "payload": {"schema": ["EMAIL"], "data": [[sha256_hex("x")]] * 10_001}}
    assert requests.post(url, json=too_many, timeout=5).status_code == 400


def test_wrong_token_is_refused(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(META_ACCESS_TOKEN, "stolen")
    outcomes = meta(clean_sandbox).write(Operation.UPSERT, people(0, 2))
    assert {(o.code, o.permanent) for o in outcomes} == {("http_401", False)}


def test_retries_through_injected_faults(clean_sandbox: Any, control: Any) -> None:
    control("meta", burst_5xx=2, drop_next=1)
    assert all(o.ok for o in meta(clean_sandbox).write(Operation.UPSERT, people(0, 5)))
    assert len(clean_sandbox.app("meta").uploads) == 1


def test_settings_refuse_batches_side_by_side() -> None:
    """A session's batches must reach Meta in batch_seq order, which concurrent batches cannot promise."""
    with pytest.raises(ValidationError, match="must be 1: Meta takes a session"):
        MetaCustomAudiencesDestination.Settings(base_url="http://127.0.0.1:1", access_token_env="T", concurrency=2)
