"""Mailchimp connector against its sandbox: batch upserts, segments, archiving, events, auth, retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from syncs.config import ConfigError, load_project
from syncs.destinations import mailchimp as mailchimp_module
from syncs.destinations.base import Operation, OutboundRow, RowOutcome
from syncs.destinations.mailchimp import MailchimpDestination
from syncs.http import DestinationHTTPError
from syncs.identity import subscriber_hash
from syncs.sandbox.apps.credentials import MAILCHIMP_API_KEY
from tests.destinations.runs import send_once_run


def mailchimp(sandbox: Any, settings: dict[str, Any] | None = None, **target: Any) -> MailchimpDestination:
    config = MailchimpDestination.Settings(
        base_url=f"{sandbox.url}/mailchimp/3.0", api_key_env=MAILCHIMP_API_KEY, **(settings or {})
    )
    return MailchimpDestination("mailchimp", config, MailchimpDestination.Target(list_id="lifecycle", **target))


def send_run(
    dest: MailchimpDestination, rows: list[OutboundRow], run_id: str, unsettled: tuple[str, ...] = ()
) -> list[RowOutcome]:
    return send_once_run(dest, "journeys", rows, run_id, unsettled)


def load_sync(tmp_path: Path, mode: str, target: dict[str, Any]) -> None:
    """Load a project whose one model declares one Mailchimp sync (raises ConfigError). YAML is a superset of
    JSON, so the declarations are written as JSON."""
    sync = {
        "name": "welcome_mailchimp",
        "destination": "mailchimp",
        "mode": mode,
        "primary_key": "occurrence_key",
        "target": target,
        "mapping": {"email": "email"},
    }
    model = {"name": "msg_welcome", "config": {"meta": {"tidings": {"syncs": [sync]}}}}
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "_messages.yml").write_text(json.dumps({"models": [model]}))
    settings = {"type": "mailchimp", "base_url": "http://127.0.0.1:9/mailchimp/3.0", "api_key_env": MAILCHIMP_API_KEY}
    destinations = tmp_path / "destinations.yml"
    destinations.write_text(json.dumps({"profiles": {"sandbox": {"mailchimp": settings}}}))
    load_project(tmp_path, destinations, profile="sandbox")


def events_by_key(app: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in app.events:
        key = event["properties"]["idempotency_key"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def people(n: int, *, send: bool = False) -> list[OutboundRow]:
    return [
        OutboundRow(f"c{i}", {"email": f" Person{i}@Example.com ", "FNAME": f"P{i}"}, f"occ-{i}" if send else None)
        for i in range(n)
    ]


def test_mirror_adds_to_segment_in_calls_of_at_most_500(clean_sandbox: Any) -> None:
    outcomes = mailchimp(clean_sandbox, segment_id=42).write(Operation.UPSERT, people(501))
    assert len(outcomes) == 501 and all(o.ok for o in outcomes)
    app = clean_sandbox.app("mailchimp")
    assert app.stats["requests"] == 4  # 2 batch upserts (500 + 1) and 2 segment calls
    assert len(app.members["lifecycle"]) == 501
    assert len(app.segment("lifecycle", "42")) == 501
    member = app.members["lifecycle"][subscriber_hash("person0@example.com")]
    assert member["merge_fields"] == {"FNAME": "P0"} and member["status"] == "subscribed"


def test_mirror_removal_only_untags(clean_sandbox: Any) -> None:
    dest = mailchimp(clean_sandbox, segment_id="42")
    dest.write(Operation.UPSERT, people(3))
    outcomes = dest.write(Operation.REMOVE, people(1))
    assert outcomes[0].ok
    app = clean_sandbox.app("mailchimp")
    assert app.segment("lifecycle", "42") == {"person1@example.com", "person2@example.com"}
    assert app.members["lifecycle"][subscriber_hash("person0@example.com")]["status"] == "subscribed"


def test_removal_without_segment_archives(clean_sandbox: Any) -> None:
    dest = mailchimp(clean_sandbox)
    dest.write(Operation.UPSERT, people(2))
    assert all(o.ok for o in dest.write(Operation.REMOVE, people(2)))
    assert {m["status"] for m in clean_sandbox.app("mailchimp").members["lifecycle"].values()} == {"archived"}
    assert all(o.ok for o in dest.write(Operation.REMOVE, people(1)))  # already gone counts as removed


def test_invalid_emails_fail_per_row_without_pii(clean_sandbox: Any) -> None:
    rows = [*people(2), OutboundRow("bad", {"email": "no-at-sign"}), OutboundRow("none", {"email": None})]
    outcomes = {o.key: o for o in mailchimp(clean_sandbox).write(Operation.UPSERT, rows)}
    assert outcomes["c0"].ok and outcomes["c1"].ok
    for key in ("bad", "none"):
        assert (outcomes[key].code, outcomes[key].permanent) == ("invalid_email", True)
        assert "no-at-sign" not in (outcomes[key].message or "")


def test_row_rejected_by_the_api_maps_to_its_row(clean_sandbox: Any) -> None:
    # Passes our check, fails the sandbox's stricter one (single-letter TLD).
    rows = [*people(1), OutboundRow("odd", {"email": "someone@example.c"})]
    outcomes = {o.key: o for o in mailchimp(clean_sandbox).write(Operation.UPSERT, rows)}
    assert outcomes["c0"].ok
    assert not outcomes["odd"].ok and outcomes["odd"].permanent


def test_send_once_posts_one_event_per_occurrence(clean_sandbox: Any) -> None:
    outcomes = mailchimp(clean_sandbox, event_name="trial_ending").write(Operation.SEND, people(2, send=True))
    assert [(o.ok, o.destination_ref) for o in outcomes] == [
        (True, subscriber_hash(f"person{i}@example.com")) for i in range(2)
    ]
    app = clean_sandbox.app("mailchimp")
    assert events_by_key(app) == {"occ-0": 1, "occ-1": 1} and app.stats["duplicate_events"] == 0
    # events fan out concurrently, so they may arrive in any order
    event = next(e for e in app.events if e["properties"]["idempotency_key"] == "occ-0")
    assert event["name"] == "trial_ending"
    assert event["properties"] == {"FNAME": "P0", "idempotency_key": "occ-0"}


def test_the_sandbox_stores_a_repeated_event_like_mailchimp_and_pages_a_members_events(clean_sandbox: Any) -> None:
    """Mailchimp's events take no idempotency key: a repeat is a second event, and a second journey."""
    dest = mailchimp(clean_sandbox, event_name="trial_ending")
    dest.write(Operation.SEND, people(1, send=True))
    dest.write(Operation.SEND, people(1, send=True))
    app = clean_sandbox.app("mailchimp")
    assert events_by_key(app) == {"occ-0": 2} and app.stats["duplicate_events"] == 1

    path = f"/lists/lifecycle/members/{subscriber_hash('person0@example.com')}/events"
    page = dest.http.request("GET", path, params={"count": 1, "offset": 1}).json()
    assert page["total_items"] == 2 and [e["name"] for e in page["events"]] == ["trial_ending"]
    assert dest.http.request("GET", path, params={"count": 1001}).status_code == 400


def test_an_event_whose_answer_was_lost_is_not_posted_again(clean_sandbox: Any) -> None:
    """Mailchimp stored the event but the answer never came: neither the HTTP retries nor the next run (which
    knows the first may have sent unrecorded) may post it again, or the journey starts twice."""
    app = clean_sandbox.app("mailchimp")
    app.event_answer_delay_seconds = 0.6
    lossy = mailchimp(clean_sandbox, {"timeout_seconds": 0.2, "max_retries": 2}, event_name="welcome")

    lost = send_run(lossy, people(2, send=True), "run-1")

    assert {(o.ok, o.code, o.permanent) for o in lost} == {(False, "no_response", False)}
    assert events_by_key(app) == {"occ-0": 1, "occ-1": 1}
    app.event_answer_delay_seconds = 0.0

    rerun = send_run(mailchimp(clean_sandbox, event_name="welcome"), people(2, send=True), "run-2", ("run-1",))

    assert [(o.ok, o.destination_ref) for o in rerun] == [
        (True, subscriber_hash(f"person{i}@example.com")) for i in range(2)
    ]
    assert events_by_key(app) == {"occ-0": 1, "occ-1": 1} and app.stats["duplicate_events"] == 0


def test_a_rerun_after_a_crash_before_the_commit_posts_only_what_was_not_sent(clean_sandbox: Any) -> None:
    first = send_run(mailchimp(clean_sandbox, event_name="welcome"), people(2, send=True), "run-1")
    # the process died before committing these acknowledgements: the next run re-sends both occurrences

    rerun = send_run(mailchimp(clean_sandbox, event_name="welcome"), people(3, send=True), "run-2", ("run-1",))

    assert all(o.ok for o in rerun) and [o.destination_ref for o in rerun[:2]] == [o.destination_ref for o in first]
    app = clean_sandbox.app("mailchimp")
    assert events_by_key(app) == {"occ-0": 1, "occ-1": 1, "occ-2": 1} and app.stats["duplicate_events"] == 0


def test_earlier_sends_are_found_beyond_the_first_page_of_events(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(mailchimp_module, "EVENTS_PAGE", 2)
    member = {"email": "ann@example.com"}
    occurrences = [OutboundRow(f"c{i}", member, f"occ-{i}") for i in range(5)]
    for row in occurrences:  # one at a time: the member's events hold them in this order
        send_run(mailchimp(clean_sandbox, event_name="welcome"), [row], "run-1")

    rerun = send_run(mailchimp(clean_sandbox, event_name="welcome"), occurrences[::-1], "run-2", ("run-1",))

    assert all(o.ok for o in rerun)
    app = clean_sandbox.app("mailchimp")
    assert len(app.events) == 5 and app.stats["duplicate_events"] == 0


def test_when_the_members_events_cannot_be_read_the_row_waits_unsent(clean_sandbox: Any, monkeypatch: Any) -> None:
    dest = mailchimp(clean_sandbox, event_name="welcome")
    request = dest.http.request

    def reads_time_out(method: str, path: str, **kwargs: Any) -> requests.Response:
        if method == "GET":
            raise DestinationHTTPError(method, path, None, "ReadTimeout")
        return request(method, path, **kwargs)

    monkeypatch.setattr(dest.http, "request", reads_time_out)

    [outcome] = send_run(dest, people(1, send=True), "run-2", ("run-1",))

    assert (outcome.ok, outcome.code, outcome.permanent) == (False, "event_check_failed", False)
    assert clean_sandbox.app("mailchimp").events == []


def test_events_fan_out_within_the_connection_limit(clean_sandbox: Any, control: Any) -> None:
    control("mailchimp", latency_seconds=0.05)
    outcomes = mailchimp(clean_sandbox, event_name="welcome").write(Operation.SEND, people(40, send=True))
    app = clean_sandbox.app("mailchimp")
    assert all(o.ok for o in outcomes) and len(app.events) == 40
    assert 1 < app.stats["peak_in_flight"] <= 10 and app.stats["rate_limited"] == 0


def test_settings_refuse_more_connections_than_mailchimp_allows() -> None:
    with pytest.raises(ValidationError, match="10 simultaneous connections"):
        MailchimpDestination.Settings(api_key_env=MAILCHIMP_API_KEY, concurrency=2, event_concurrency=8)


def test_a_send_once_sync_without_event_name_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_sync(tmp_path, "send_once", {"list_id": "lifecycle"})
    [problem] = refused.value.problems
    assert (problem.file, problem.field) == (tmp_path / "models" / "_messages.yml", "target.event_name")
    assert "event_name: <name>" in problem.fix
    load_sync(tmp_path, "mirror", {"list_id": "lifecycle"})  # only a send names an event
    load_sync(tmp_path, "send_once", {"list_id": "lifecycle", "event_name": "welcome_series"})


def test_an_event_name_mailchimp_would_refuse_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_sync(tmp_path, "send_once", {"list_id": "lifecycle", "event_name": "welcome series"})
    [problem] = refused.value.problems
    assert problem.field == "target.event_name" and "[A-Za-z0-9_-]{2,30}" in problem.problem


def test_send_without_event_name_is_a_configuration_failure(clean_sandbox: Any) -> None:
    outcomes = mailchimp(clean_sandbox).write(Operation.SEND, people(1, send=True))
    assert outcomes[0].code == "missing_event_name"


def test_wrong_api_key_is_refused(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(MAILCHIMP_API_KEY, "wrong-key-us21")
    outcomes = mailchimp(clean_sandbox).write(Operation.UPSERT, people(2))
    assert {(o.code, o.permanent) for o in outcomes} == {("http_401", False)}
    assert clean_sandbox.app("mailchimp").members.get("lifecycle", {}) == {}


def test_retries_through_injected_429_and_5xx(clean_sandbox: Any, control: Any) -> None:
    control("mailchimp", burst_429=1, burst_5xx=1, retry_after_seconds=1)
    outcomes = mailchimp(clean_sandbox, segment_id=1).write(Operation.UPSERT, people(3))
    assert all(o.ok for o in outcomes)
    assert len(clean_sandbox.app("mailchimp").segment("lifecycle", "1")) == 3


def test_base_url_defaults_to_the_keys_data_center() -> None:
    settings = MailchimpDestination.Settings(api_key_env=MAILCHIMP_API_KEY)
    dest = MailchimpDestination("mailchimp", settings, MailchimpDestination.Target(list_id="x"))
    assert dest.http.base_url == "https://us21.api.mailchimp.com/3.0"


def test_a_nan_merge_field_fails_its_row_only(clean_sandbox: Any) -> None:
    """JSON has no NaN: sent as it is, Mailchimp would refuse the whole 500-member call with a 400."""
    rows = [*people(2), OutboundRow("nan", {"email": "nan@example.com", "SCORE": float("nan")})]
    outcomes = {o.key: o for o in mailchimp(clean_sandbox).write(Operation.UPSERT, rows)}
    assert outcomes["c0"].ok and outcomes["c1"].ok
    assert (outcomes["nan"].code, outcomes["nan"].permanent) == ("non_finite_number", True)
    assert len(clean_sandbox.app("mailchimp").members["lifecycle"]) == 2


def test_the_sandbox_refuses_a_body_that_is_not_json(clean_sandbox: Any) -> None:
    dest = mailchimp(clean_sandbox)
    response = dest.http.request(
        "POST", "/lists/lifecycle", data=b'{"members": [{"email_address": "a@example.com", "score": NaN}]}'
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
