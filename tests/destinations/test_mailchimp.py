"""Mailchimp connector against its sandbox: batch upserts, segments, archiving, events, auth, retries."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from syncs.destinations.base import Operation, OutboundRow
from syncs.destinations.mailchimp import MailchimpDestination
from syncs.identity import subscriber_hash
from syncs.sandbox.apps.credentials import MAILCHIMP_API_KEY


def mailchimp(sandbox: Any, **target: Any) -> MailchimpDestination:
    settings = MailchimpDestination.Settings(base_url=f"{sandbox.url}/mailchimp/3.0", api_key_env=MAILCHIMP_API_KEY)
    return MailchimpDestination("mailchimp", settings, MailchimpDestination.Target(list_id="lifecycle", **target))


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


def test_send_once_posts_one_event_per_occurrence_and_is_deduplicated(clean_sandbox: Any) -> None:
    dest = mailchimp(clean_sandbox, event_name="trial_ending")
    first = dest.write(Operation.SEND, people(2, send=True))
    again = dest.write(Operation.SEND, people(2, send=True))
    assert all(o.ok for o in first + again)
    app = clean_sandbox.app("mailchimp")
    assert len(app.events) == 2 and app.stats["duplicate_events"] == 2
    # events fan out concurrently, so they may arrive in any order
    event = next(e for e in app.events if e["properties"]["idempotency_key"] == "occ-0")
    assert event["name"] == "trial_ending"
    assert event["properties"] == {"FNAME": "P0", "idempotency_key": "occ-0"}


def test_events_fan_out_within_the_connection_limit(clean_sandbox: Any, control: Any) -> None:
    control("mailchimp", latency_seconds=0.05)
    outcomes = mailchimp(clean_sandbox, event_name="welcome").write(Operation.SEND, people(40, send=True))
    app = clean_sandbox.app("mailchimp")
    assert all(o.ok for o in outcomes) and len(app.events) == 40
    assert 1 < app.stats["peak_in_flight"] <= 10 and app.stats["rate_limited"] == 0


def test_settings_refuse_more_connections_than_mailchimp_allows() -> None:
    with pytest.raises(ValidationError, match="10 simultaneous connections"):
        MailchimpDestination.Settings(api_key_env=MAILCHIMP_API_KEY, concurrency=2, event_concurrency=8)


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
