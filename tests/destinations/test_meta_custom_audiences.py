"""Meta Custom Audiences connector against its sandbox: hashed multi-key uploads, sessions, removal."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from syncs.destinations import meta_custom_audiences
from syncs.destinations.base import Mode, Operation, OutboundRow, RowOutcome, RunInfo
from syncs.destinations.meta_custom_audiences import MetaCustomAudiencesDestination
from syncs.identity import sha256_hex
from syncs.sandbox.apps.credentials import META_ACCESS_TOKEN

AUDIENCE = "23850000000000001"


def meta(sandbox: Any, estimated_rows: int = 0, batch_size: int | None = None) -> MetaCustomAudiencesDestination:
    settings = MetaCustomAudiencesDestination.Settings(
        base_url=f"{sandbox.url}/meta/v21.0", access_token_env=META_ACCESS_TOKEN, batch_size=batch_size
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


def refuse(sandbox: Any, rows: list[OutboundRow]) -> set[str]:
    """Have the sandbox answer these rows as invalid entries (by their email hash); their keys."""
    sandbox.app("meta").refused.update(sha256_hex(row.fields["EMAIL"].lower()) for row in rows)
    return {row.key for row in rows}


def failures(outcomes: list[RowOutcome]) -> dict[str, RowOutcome]:
    return {o.key: o for o in outcomes if not o.ok}


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


def test_invalid_rows_beyond_the_samples_are_never_reported_delivered(clean_sandbox: Any) -> None:
    """Meta samples at most 10 invalid values: with 12 invalid rows, 2 are only counted. The rows the samples
    do not name are re-sent in halves, each small enough for its answer to sample all its invalid rows."""
    rows = people(0, 20)
    invalid = refuse(clean_sandbox, [rows[i] for i in (*range(10), 13, 18)])
    dest = meta(clean_sandbox)
    outcomes = dest.write(Operation.UPSERT, rows)
    dest.close(success=True)
    assert len(outcomes) == 20
    failed = failures(outcomes)
    assert set(failed) == invalid
    assert {(o.code, o.permanent) for o in failed.values()} == {("invalid_entry", True)}
    app = clean_sandbox.app("meta")
    # The batch (which ended its session), its 10 unsampled rows in halves, and the row ending their session.
    assert [u["rows"] for u in app.uploads] == [20, 5, 5, 1]
    assert app.session_problems() == [] and len(app.audiences[AUDIENCE]) == 8


def test_unsampled_rows_the_count_shows_all_invalid_fail_without_resending(clean_sandbox: Any) -> None:
    rows = people(0, 30)
    invalid = refuse(clean_sandbox, rows)
    outcomes = meta(clean_sandbox).write(Operation.UPSERT, rows)
    assert set(failures(outcomes)) == invalid
    assert sum("not sample" in (o.message or "") for o in outcomes) == 20
    assert len(clean_sandbox.app("meta").uploads) == 1


def test_resending_stops_at_the_depth_bound_and_fails_what_it_could_not_tell(
    clean_sandbox: Any, monkeypatch: Any
) -> None:
    """Three of every four rows invalid: halving twice leaves parts with more invalid rows than a sample holds.
    Their unsampled rows fail, good ones included: no invalid row is ever reported delivered."""
    monkeypatch.setattr(meta_custom_audiences, "MAX_BISECT_DEPTH", 2)
    rows = people(0, 200)
    invalid = refuse(clean_sandbox, [row for i, row in enumerate(rows) if i % 4])
    failed = failures(meta(clean_sandbox).write(Operation.UPSERT, rows))
    assert invalid <= set(failed)
    assert {o.code for o in failed.values()} == {"invalid_entry"} and all(o.permanent for o in failed.values())
    assert any("more invalid rows than it sampled" in (o.message or "") for o in failed.values())
    assert len(clean_sandbox.app("meta").uploads) <= 1 + 2 + 4


def test_each_operation_session_estimates_and_ends_with_its_own_rows(clean_sandbox: Any) -> None:
    """A mirror run of 3 removals and 5 upserts: each session announces its own rows, not the run's 8."""
    dest = meta(clean_sandbox, estimated_rows=8)
    assert all(o.ok for o in dest.write(Operation.REMOVE, people(0, 3)) + dest.write(Operation.UPSERT, people(3, 5)))
    dest.close(success=True)
    app = clean_sandbox.app("meta")
    sessions = [
        (u["method"], u["session"]["estimated_num_total"], u["session"]["last_batch_flag"]) for u in app.uploads
    ]
    assert sessions == [("DELETE", 3, True), ("POST", 5, True)]
    assert app.session_problems() == []


def test_rows_an_exact_multiple_of_the_batch_size_end_the_session_at_close(clean_sandbox: Any) -> None:
    """With no planned total, full batches give no sign of being the last: closing ends the session by sending
    the last row again with last_batch_flag (Meta takes no empty batch; a member added twice is one member)."""
    dest = meta(clean_sandbox, batch_size=4)
    assert all(o.ok for o in dest.write(Operation.UPSERT, people(0, 4)) + dest.write(Operation.UPSERT, people(4, 4)))
    dest.close(success=True)
    app = clean_sandbox.app("meta")
    sessions = [(u["rows"], u["session"]["batch_seq"], u["session"]["last_batch_flag"]) for u in app.uploads]
    assert sessions == [(4, 1, False), (4, 2, False), (1, 3, True)]
    assert app.uploads[-1]["session"]["estimated_num_total"] == 9
    assert app.session_problems() == [] and len(app.audiences[AUDIENCE]) == 8


def test_the_batch_reaching_the_planned_total_ends_the_session(clean_sandbox: Any) -> None:
    dest = meta(clean_sandbox, estimated_rows=8, batch_size=4)
    dest.write(Operation.UPSERT, people(0, 4))
    dest.write(Operation.UPSERT, people(4, 4))
    dest.close(success=True)
    app = clean_sandbox.app("meta")
    assert [u["session"]["last_batch_flag"] for u in app.uploads] == [False, True]
    assert app.session_problems() == []


def test_removals_an_exact_multiple_of_the_batch_size_end_before_the_upserts_start(clean_sandbox: Any) -> None:
    """A mirror's removal pass cannot tell its own size from the run's total: its session is ended when the
    upserts start, before any of them is sent, so a removal sent again cannot undo an add of the same run."""
    earlier = meta(clean_sandbox)
    earlier.write(Operation.UPSERT, people(0, 2))
    earlier.close(success=True)
    app = clean_sandbox.app("meta")
    app.uploads.clear()
    dest = meta(clean_sandbox, estimated_rows=6, batch_size=2)
    dest.write(Operation.REMOVE, people(0, 2))
    dest.write(Operation.REMOVE, people(2, 2))
    dest.write(Operation.UPSERT, people(0, 2))  # the removed members come back in the same run
    dest.close(success=True)
    sent = [(u["method"], u["rows"], u["session"]["last_batch_flag"]) for u in app.uploads]
    assert sent == [("DELETE", 2, False), ("DELETE", 2, False), ("DELETE", 1, True), ("POST", 2, True)]
    assert [u["session"]["estimated_num_total"] for u in app.uploads[2:]] == [5, 2]
    assert len(app.audiences[AUDIENCE]) == 2
    assert app.session_problems() == []


def test_a_failed_run_leaves_its_sessions_to_meta(clean_sandbox: Any) -> None:
    dest = meta(clean_sandbox, batch_size=2)
    dest.write(Operation.UPSERT, people(0, 2))
    dest.close(success=False)
    assert len(clean_sandbox.app("meta").uploads) == 1


def test_sandbox_samples_at_most_10_invalid_values_but_counts_every_invalid_row(clean_sandbox: Any) -> None:
    import requests

    url = f"{clean_sandbox.url}/meta/v21.0/{AUDIENCE}/users"
    data = [[f"plain{i}@example.com"] for i in range(12)] + [[sha256_hex(f"p{i}@example.com")] for i in range(8)]
    body = {"access_token": "sandbox-meta-access-token", "payload": {"schema": ["EMAIL"], "data": data}}
    answer = requests.post(url, json=body, timeout=5).json()
    assert (answer["num_received"], answer["num_invalid_entries"], len(answer["invalid_entry_samples"])) == (20, 12, 10)
