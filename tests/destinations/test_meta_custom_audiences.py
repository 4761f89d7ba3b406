"""Meta Custom Audiences connector against its sandbox: hashed multi-key uploads, sessions, removal."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from syncs.destinations import meta_custom_audiences
from syncs.destinations.base import Mode, Operation, OutboundRow, RowOutcome, RunInfo
from syncs.destinations.meta_custom_audiences import MetaCustomAudiencesDestination
from syncs.identity import sha256_hex
from syncs.sandbox.apps.credentials import META_ACCESS_TOKEN, SANDBOX_CREDENTIALS
from tests.reliability.harness import META_AUDIENCE_ID, make_env
from tests.syncs.conftest import SyncEnv

AUDIENCE = "23850000000000001"


def meta(
    sandbox: Any,
    estimated_rows: int = 0,
    batch_size: int | None = None,
    *,
    by_op: Mapping[Operation, int] | None = None,
    timeout_seconds: float = 30.0,
) -> MetaCustomAudiencesDestination:
    settings = MetaCustomAudiencesDestination.Settings(
        base_url=f"{sandbox.url}/meta/v21.0",
        access_token_env=META_ACCESS_TOKEN,
        batch_size=batch_size,
        timeout_seconds=timeout_seconds,
    )
    dest = MetaCustomAudiencesDestination(
        "meta_ads", settings, MetaCustomAudiencesDestination.Target(audience_id=AUDIENCE)
    )
    run = RunInfo("r1", "s", Mode.MIRROR, estimated_rows=estimated_rows, estimated_rows_by_op=by_op or {})
    dest.open(run)
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


def test_retries_requests_meta_did_not_process(clean_sandbox: Any, control: Any) -> None:
    control("meta", burst_5xx=2, burst_429=1, retry_after_seconds=0)
    assert all(o.ok for o in meta(clean_sandbox).write(Operation.UPSERT, people(0, 5)))
    assert len(clean_sandbox.app("meta").uploads) == 1


@pytest.mark.parametrize(
    ("statuses", "delay"),
    [([500], 0.0), ([502], 0.0), ([504], 0.0), ([], 3.0)],
    ids=["http_500", "http_502", "http_504", "read_timeout"],
)
def test_a_batch_whose_answer_is_lost_is_never_sent_again_and_its_rows_stay_retryable(
    clean_sandbox: Any, statuses: list[int], delay: float
) -> None:
    """Meta added the members but its answer never came back. Sent again with the same batch_seq, the batch would
    be refused (400) and its members, in the audience, recorded as refused: never removed when they leave."""
    app = clean_sandbox.app("meta")
    app.lost_answers, app.answer_delay_seconds = statuses, delay
    dest = meta(clean_sandbox, timeout_seconds=1.0)
    first = dest.write(Operation.UPSERT, people(0, 3))
    assert [(o.ok, o.permanent) for o in first] == [(False, False)] * 3
    assert len(app.uploads) == 1 and len(app.audiences[AUDIENCE]) == 3
    app.answer_delay_seconds = 0.0
    assert all(o.ok for o in dest.write(Operation.UPSERT, people(0, 3)))  # sent again, as the next run would
    dest.close(success=True)
    sessions = [u["session"] for u in app.uploads]
    assert sessions[1]["session_id"] != sessions[0]["session_id"] and sessions[1]["batch_seq"] == 1
    assert len(app.audiences[AUDIENCE]) == 3 and app.session_problems() == []


def test_a_lost_answer_mid_session_leaves_that_session_and_sends_on_in_a_new_one(clean_sandbox: Any) -> None:
    """Whether the unanswered batch counts in its session is unknown, so the session takes no more batches (Meta
    expires it); the rest of the operation goes in a session of its own, with exact counts."""
    app = clean_sandbox.app("meta")
    app.lost_answers.append(502)
    dest = meta(clean_sandbox, batch_size=2, by_op={Operation.UPSERT: 4})
    assert not any(o.ok or o.permanent for o in dest.write(Operation.UPSERT, people(0, 2)))
    assert all(o.ok for o in dest.write(Operation.UPSERT, people(2, 2)))
    dest.close(success=True)
    lost, rest = (u["session"] for u in app.uploads)
    assert (rest["batch_seq"], rest["last_batch_flag"], rest["estimated_num_total"]) == (1, True, 2)
    assert app.session_problems() == [f"session {lost['session_id']} was never ended with last_batch_flag"]
    assert len(app.audiences[AUDIENCE]) == 4


def test_a_dropped_connection_fails_the_rows_retryably_without_sending_again(clean_sandbox: Any, control: Any) -> None:
    control("meta", drop_next=1)
    dest = meta(clean_sandbox)
    outcomes = dest.write(Operation.UPSERT, people(0, 2))
    assert {(o.code, o.permanent) for o in outcomes} == {("no_response", False)}
    assert clean_sandbox.app("meta").stats["requests"] == 1
    assert all(o.ok for o in dest.write(Operation.UPSERT, people(0, 2)))


def test_a_refused_session_fails_its_rows_retryably_and_the_next_batch_opens_another(
    clean_sandbox: Any, monkeypatch: Any
) -> None:
    """Should a session be refused anyway (a batch_seq repeated, a session already ended), its rows are not
    refused: they are sent again, in a new session."""
    ids = iter([41, 42])
    monkeypatch.setattr(meta_custom_audiences, "secrets", SimpleNamespace(randbelow=lambda _: next(ids)))
    ended = {"session_id": 42, "batch_seq": 1, "last_batch_flag": True}
    body = {
        "access_token": SANDBOX_CREDENTIALS[META_ACCESS_TOKEN],
        "payload": {"schema": ["EMAIL"], "data": [[sha256_hex("other@example.com")]]},
        "session": ended,
    }
    assert requests.post(f"{clean_sandbox.url}/meta/v21.0/{AUDIENCE}/users", json=body, timeout=5).ok
    dest = meta(clean_sandbox)
    outcomes = dest.write(Operation.UPSERT, people(0, 2))
    assert {(o.code, o.permanent) for o in outcomes} == {("session_refused", False)}
    assert all(o.ok for o in dest.write(Operation.UPSERT, people(0, 2)))
    assert clean_sandbox.app("meta").uploads[-1]["session"]["session_id"] == 43


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


def test_each_operation_session_estimates_and_ends_with_its_own_planned_rows(clean_sandbox: Any) -> None:
    """Given each operation's rows, a removal pass of full batches ends on its last batch: no extra request."""
    dest = meta(clean_sandbox, 8, batch_size=2, by_op={Operation.REMOVE: 4, Operation.UPSERT: 4})
    for op, start in ((Operation.REMOVE, 0), (Operation.REMOVE, 2), (Operation.UPSERT, 4), (Operation.UPSERT, 6)):
        assert all(o.ok for o in dest.write(op, people(start, 2)))
    dest.close(success=True)
    app = clean_sandbox.app("meta")
    sent = [(u["method"], u["session"]["estimated_num_total"], u["session"]["last_batch_flag"]) for u in app.uploads]
    assert sent == [("DELETE", 4, False), ("DELETE", 4, True), ("POST", 4, False), ("POST", 4, True)]
    assert app.session_problems() == []


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


# Through the engine: the sync `ad_audience_meta` (mirror, batches of 3) of the reliability suite's project.


def ad_audience_env(root: Path, sandbox: Any, emails: dict[str, str]) -> SyncEnv:
    env = make_env(root, sandbox, audience=0, messages=0)
    set_ad_audience(env, emails)
    return env


def set_ad_audience(env: SyncEnv, emails: dict[str, str]) -> None:
    env.sql("delete from analytics.ad_audience")
    for customer, email in emails.items():
        env.sql("insert into analytics.ad_audience values (?, ?)", [customer, email])


def ad_members(sandbox: Any) -> set[str]:
    """The hashed emails in the audience."""
    return {dict(member)["EMAIL"] for member in sandbox.app("meta").audiences.get(META_AUDIENCE_ID, set())}


def test_a_mirror_run_sizes_each_session_by_its_own_operation(clean_sandbox: Any, tmp_path: Path) -> None:
    """2 removals and a retirement (3 rows, one full batch), then 5 adds and a change (6 rows, two batches)."""
    emails = {f"c{i}": f"c{i}@example.com" for i in range(6)}
    env = ad_audience_env(tmp_path, clean_sandbox, emails)
    env.run("ad_audience_meta")
    del emails["c0"], emails["c1"]
    emails |= {"c3": "c3.new@example.com"} | {f"c{i}": f"c{i}@example.com" for i in range(6, 11)}
    set_ad_audience(env, emails)
    app = clean_sandbox.app("meta")
    app.uploads.clear()

    result = env.run("ad_audience_meta")

    assert (result.status, result.planned.remove, result.planned.add + result.planned.change) == ("success", 3, 6)
    sent = [
        (u["method"], u["rows"], u["session"]["estimated_num_total"], u["session"]["last_batch_flag"])
        for u in app.uploads
    ]
    assert sent == [("DELETE", 3, 3, True), ("POST", 3, 6, False), ("POST", 3, 6, True)]
    assert app.session_problems() == []
    assert ad_members(clean_sandbox) == {sha256_hex(email) for email in emails.values()}


def test_members_whose_answer_was_lost_are_recorded_next_run_and_removed_when_they_leave(
    clean_sandbox: Any, tmp_path: Path
) -> None:
    env = ad_audience_env(tmp_path, clean_sandbox, {"c0": "c0@example.com", "c1": "c1@example.com"})
    clean_sandbox.app("meta").lost_answers.append(502)

    lost = env.run("ad_audience_meta")

    assert (lost.status, lost.failed) == ("failed", 2)
    assert env.sql("select code, permanent from tidings.row_errors") == [("http_502", False)] * 2
    assert ad_members(clean_sandbox) == {sha256_hex("c0@example.com"), sha256_hex("c1@example.com")}
    assert (env.run("ad_audience_meta").sent, env.sql("select count(*) from tidings.row_errors")) == (2, [(0,)])
    set_ad_audience(env, {"c1": "c1@example.com"})  # c0 opts out
    assert env.run("ad_audience_meta").removed == 1
    assert ad_members(clean_sandbox) == {sha256_hex("c1@example.com")}
