"""SendGrid connector against its sandbox: async upsert jobs with polling, per-row errors, list removal."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
import requests

from syncs.destinations import sendgrid as sendgrid_module
from syncs.destinations.base import Operation, OutboundRow
from syncs.destinations.sendgrid import SendGridDestination, _parts, _rejection_message
from syncs.sandbox.apps.credentials import SANDBOX_CREDENTIALS, SENDGRID_API_KEY


def sendgrid(sandbox: Any, **settings: Any) -> SendGridDestination:
    cfg = SendGridDestination.Settings(
        base_url=f"{sandbox.url}/sendgrid", api_key_env=SENDGRID_API_KEY, poll_interval_seconds=0.01, **settings
    )
    return SendGridDestination("sendgrid", cfg, SendGridDestination.Target(list_id="renewals"))


def people(n: int) -> list[OutboundRow]:
    return [
        OutboundRow(f"c{i}", {"email": f"Person{i}@Example.com", "first_name": "Ann", "plan_name": "pro"})
        for i in range(n)
    ]


def test_upsert_waits_for_the_import_job(clean_sandbox: Any) -> None:
    outcomes = sendgrid(clean_sandbox).write(Operation.UPSERT, people(3))
    assert all(o.ok for o in outcomes)
    app = clean_sandbox.app("sendgrid")
    assert app.list_members("renewals") == {f"person{i}@example.com" for i in range(3)}
    contact = app.contacts["person0@example.com"]
    assert contact["first_name"] == "Ann" and contact["custom_fields"] == {"plan_name": "pro"}
    assert all(job["polls"] >= 2 for job in app.jobs.values())


def test_a_decimal_goes_to_a_number_field_as_a_number(clean_sandbox: Any) -> None:
    """The warehouse's DECIMAL(18,2) reaches a Number custom field (id `_N`) as a JSON number, not as text;
    a text field keeps the exact digits."""
    rows = people(2)
    rows[0].fields.update(e1_N=Decimal("1250.50"), e5_T=Decimal("1250.50"))
    rows[1].fields.update(e1_N=Decimal("12.00"))
    assert all(o.ok for o in sendgrid(clean_sandbox).write(Operation.UPSERT, rows))
    contacts = clean_sandbox.app("sendgrid").contacts
    assert contacts["person0@example.com"]["custom_fields"] == {"plan_name": "pro", "e1_N": 1250.5, "e5_T": "1250.50"}
    assert contacts["person1@example.com"]["custom_fields"]["e1_N"] == 12
    assert type(contacts["person1@example.com"]["custom_fields"]["e1_N"]) is int


ODD = "a" * 65 + "@example.com"  # shaped like an address, but SendGrid refuses a local part over 64 characters


def test_an_errored_job_fails_only_the_contacts_it_rejects(clean_sandbox: Any) -> None:
    """`errored` is SendGrid's "finished with some errors": the others of the batch are in the list."""
    rows = [*people(4), OutboundRow("odd", {"email": ODD}), OutboundRow("bad", {"email": "x"})]
    outcomes = {o.key: o for o in sendgrid(clean_sandbox).write(Operation.UPSERT, rows)}
    app = clean_sandbox.app("sendgrid")
    assert [job["status"] for job in app.jobs.values()] == ["errored"]
    assert all(outcomes[f"c{i}"].ok for i in range(4))
    assert app.list_members("renewals") == {f"person{i}@example.com" for i in range(4)}
    odd = outcomes["odd"]
    assert (odd.code, odd.permanent, odd.message) == (
        "contact_rejected",
        True,
        "SendGrid rejected this contact: invalid email",
    )
    assert (outcomes["bad"].code, outcomes["bad"].permanent) == ("invalid_email", True)


def test_a_failed_job_fails_each_contact_with_its_reason(clean_sandbox: Any) -> None:
    rows = [OutboundRow("odd", {"email": ODD}), OutboundRow("odder", {"email": "b" + ODD})]
    outcomes = sendgrid(clean_sandbox).write(Operation.UPSERT, rows)
    assert [job["status"] for job in clean_sandbox.app("sendgrid").jobs.values()] == ["failed"]
    assert {(o.code, o.permanent, o.message) for o in outcomes} == {
        ("contact_rejected", True, "SendGrid rejected this contact: invalid email")
    }


def test_a_job_pending_at_the_deadline_fails_retryable(clean_sandbox: Any) -> None:
    outcomes = sendgrid(clean_sandbox, poll_timeout_seconds=0).write(Operation.UPSERT, people(2))
    assert {(o.code, o.permanent) for o in outcomes} == {("job_pending", False)}


def test_a_rejection_reason_that_echoes_values_is_left_out() -> None:
    contact = {"email": "ann@example.com", "first_name": "Annabel", "custom_fields": {"e1_T": "Gold"}}
    assert _rejection_message("invalid email", contact) == "SendGrid rejected this contact: invalid email"
    for echoed in ("ann@example.com is invalid", "phone 4155552671 is invalid", "first_name 'Annabel' too long",
                   "tier Gold is not allowed"):  # fmt: skip
        assert _rejection_message(echoed, contact) == "SendGrid rejected this contact"


def test_an_infinite_custom_field_fails_its_row_only(clean_sandbox: Any) -> None:
    rows = [*people(2), OutboundRow("inf", {"email": "inf@example.com", "score": float("inf")})]
    outcomes = {o.key: o for o in sendgrid(clean_sandbox).write(Operation.UPSERT, rows)}
    assert outcomes["c0"].ok and outcomes["c1"].ok
    assert (outcomes["inf"].code, outcomes["inf"].permanent) == ("non_finite_number", True)
    assert "inf@example.com" not in clean_sandbox.app("sendgrid").contacts


def test_removal_takes_contacts_off_the_list_only(clean_sandbox: Any) -> None:
    dest = sendgrid(clean_sandbox)
    dest.write(Operation.UPSERT, people(3))
    gone = [*people(1), OutboundRow("never", {"email": "never@example.com"})]
    assert all(o.ok for o in dest.write(Operation.REMOVE, gone))
    app = clean_sandbox.app("sendgrid")
    assert app.list_members("renewals") == {"person1@example.com", "person2@example.com"}
    assert "person0@example.com" in app.contacts


def test_a_large_removal_searches_100_addresses_at_a_time(clean_sandbox: Any) -> None:
    """The search takes at most 100 addresses (the sandbox answers more with a 400, as SendGrid does)."""
    dest = sendgrid(clean_sandbox, requests_per_second=50)
    dest.write(Operation.UPSERT, people(250))
    gone = [*people(250), OutboundRow("never", {"email": "never@example.com"})]
    assert all(o.ok for o in dest.write(Operation.REMOVE, gone))
    assert clean_sandbox.app("sendgrid").list_members("renewals") == set()


def test_an_address_the_search_refuses_fails_alone(clean_sandbox: Any) -> None:
    """The search answers 400 for a whole chunk when one address is one it will not take, without saying which:
    the chunk is searched again in halves, the others are removed and that address fails permanently (before,
    its 49 neighbours stayed members, retried and refused again every run)."""
    dest = sendgrid(clean_sandbox, requests_per_second=50)
    dest.write(Operation.UPSERT, people(149))
    app = clean_sandbox.app("sendgrid")
    searches_before = app.stats["requests"] - app.stats["rate_limited"]
    outcomes = {o.key: o for o in dest.write(Operation.REMOVE, [*people(149), OutboundRow("odd", {"email": ODD})])}
    assert all(outcomes[f"c{i}"].ok for i in range(149))
    odd = outcomes["odd"]
    assert (odd.code, odd.permanent) == ("search_refused", True)
    assert ODD not in odd.message
    assert app.list_members("renewals") == set()
    # chunk 1: a search and a DELETE; chunk 2 (50 rows, the refused address last): its refused search, then per
    # halving level the other half's search and DELETE and the refused half's search
    levels = math.ceil(math.log2(50))
    answered = app.stats["requests"] - app.stats["rate_limited"]  # a 429 is re-sent
    assert answered - searches_before == 2 + 1 + levels * 3


def test_a_refusal_no_answered_search_explains_is_retried(clean_sandbox: Any) -> None:
    """When no search of the batch is answered, a 400 may be about the request itself, not the address: the rows
    stay retryable rather than being given up for good."""
    odd_too = "b" * 65 + "@example.com"
    rows = [OutboundRow("odd", {"email": ODD}), OutboundRow("odd_too", {"email": odd_too})]
    outcomes = sendgrid(clean_sandbox, requests_per_second=50).write(Operation.REMOVE, rows)
    assert {(o.key, o.code, o.permanent) for o in outcomes} == {
        ("odd", "search_refused", False),
        ("odd_too", "search_refused", False),
    }


def test_a_search_that_fails_otherwise_reports_nobody_removed(clean_sandbox: Any, control: Any) -> None:
    dest = sendgrid(clean_sandbox, requests_per_second=50, max_retries=1)
    dest.write(Operation.UPSERT, people(3))
    control("sendgrid", burst_5xx=10)
    outcomes = dest.write(Operation.REMOVE, people(3))
    assert {(o.code, o.permanent) for o in outcomes} == {("http_503", False)}
    assert len(clean_sandbox.app("sendgrid").list_members("renewals")) == 3


def test_large_batches_split_at_30000_contacts_and_6_mb() -> None:
    rows = [(OutboundRow(str(i), {}), {"email": f"p{i}@example.com"}) for i in range(30_001)]
    assert [len(p) for p in _parts(rows)] == [30_000, 1]
    fat = [(OutboundRow(str(i), {}), {"email": f"p{i}@example.com", "note": "x" * 300_000}) for i in range(25)]
    assert [len(p) for p in _parts(fat)] == [20, 5]


def test_polling_retries_through_429(clean_sandbox: Any, control: Any) -> None:
    control("sendgrid", burst_429=2, retry_after_seconds=1)
    assert all(o.ok for o in sendgrid(clean_sandbox).write(Operation.UPSERT, people(2)))
    assert clean_sandbox.app("sendgrid").stats["rate_limited"] == 2


def test_wrong_key_is_refused(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(SENDGRID_API_KEY, "SG.wrong")
    outcomes = sendgrid(clean_sandbox).write(Operation.UPSERT, people(1))
    assert {(o.code, o.permanent) for o in outcomes} == {("http_401", False)}


def with_fields(rows: list[OutboundRow], index: int, **fields: Any) -> list[OutboundRow]:
    rows[index].fields.update(fields)
    return rows


def test_a_reserved_field_over_its_limit_fails_its_row_before_sending(clean_sandbox: Any) -> None:
    """SendGrid refuses the whole PUT for one contact over a documented limit: that row fails alone, locally."""
    rows = with_fields(people(10), 4, first_name="N" * 60)
    outcomes = {o.key: o for o in sendgrid(clean_sandbox).write(Operation.UPSERT, rows)}
    assert sum(o.ok for o in outcomes.values()) == 9
    failed = outcomes["c4"]
    assert (failed.code, failed.permanent) == ("field_too_long", True)
    assert failed.message == "first_name is longer than the 50 characters SendGrid allows"
    app = clean_sandbox.app("sendgrid")
    assert app.stats["upserts"] == 1 and "person4@example.com" not in app.contacts


def test_a_contact_the_put_refuses_by_index_fails_alone(clean_sandbox: Any) -> None:
    rows = with_fields(people(10), 3, e1_N="ten")
    outcomes = {o.key: o for o in sendgrid(clean_sandbox).write(Operation.UPSERT, rows)}
    assert all(outcomes[f"c{i}"].ok for i in range(10) if i != 3)
    assert (outcomes["c3"].code, outcomes["c3"].permanent, outcomes["c3"].message) == (
        "contact_rejected",
        True,
        "SendGrid rejected this contact's custom_fields.e1_N: is not a valid Number",
    )
    app = clean_sandbox.app("sendgrid")
    assert app.stats["upserts"] == 2  # the refused PUT, then the other nine
    assert app.list_members("renewals") == {f"person{i}@example.com" for i in range(10) if i != 3}


@pytest.mark.parametrize("bad", [[13], [0, 19]])
def test_contacts_refused_without_their_index_are_found_by_halving(clean_sandbox: Any, bad: list[int]) -> None:
    app = clean_sandbox.app("sendgrid")
    app.errors_name_contacts = False
    rows = people(20)
    for i in bad:
        with_fields(rows, i, e2_D="soon")
    outcomes = {o.key: o for o in sendgrid(clean_sandbox, requests_per_second=50).write(Operation.UPSERT, rows)}
    assert {key for key, o in outcomes.items() if not o.ok} == {f"c{i}" for i in bad}
    assert {(outcomes[f"c{i}"].code, outcomes[f"c{i}"].permanent, outcomes[f"c{i}"].message) for i in bad} == {
        ("contact_rejected", True, "SendGrid rejected this contact's custom_fields.e2_D: is not a valid Date")
    }
    assert app.list_members("renewals") == {f"person{i}@example.com" for i in range(20) if i not in bad}
    assert app.stats["upserts"] <= 1 + len(bad) * 2 * math.ceil(math.log2(20))  # the documented bound


def test_halving_stops_at_the_budget_and_leaves_the_rest_retryable(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(sendgrid_module, "SPLIT_BUDGET", 4)
    app = clean_sandbox.app("sendgrid")
    app.errors_name_contacts = False
    rows = people(8)
    for row in rows:
        row.fields["e1_N"] = "many"
    outcomes = {o.key: o for o in sendgrid(clean_sandbox).write(Operation.UPSERT, rows)}
    assert app.stats["upserts"] == 1 + 4  # halves, then the first quarter, then its two contacts
    assert {(outcomes[key].code, outcomes[key].permanent) for key in ("c0", "c1")} == {("contact_rejected", True)}
    assert {(outcomes[f"c{i}"].code, outcomes[f"c{i}"].permanent, outcomes[f"c{i}"].message) for i in range(2, 8)} == {
        ("http_400", False, sendgrid_module.UNISOLATED)
    }


def test_a_400_about_the_request_itself_is_not_split(clean_sandbox: Any, monkeypatch: Any) -> None:
    dest, calls = sendgrid(clean_sandbox), []

    def refuse(method: str, path: str, **kwargs: Any) -> requests.Response:
        calls.append(path)
        response = requests.Response()
        response.status_code = 400
        response._content = json.dumps({"errors": [{"field": "list_ids", "message": "invalid list id"}]}).encode()
        return response

    monkeypatch.setattr(dest.http, "request", refuse)
    outcomes = dest.write(Operation.UPSERT, people(6))
    assert {(o.code, o.permanent) for o in outcomes} == {("http_400", True)}
    assert len(calls) == 1


def test_the_sandbox_refuses_an_invalid_contact_for_the_whole_request(clean_sandbox: Any) -> None:
    contacts = [{"email": "ann@example.com"}, {"email": "bo@example.com", "city": "C" * 61}]
    response = requests.put(
        f"{clean_sandbox.url}/sendgrid/v3/marketing/contacts",
        json={"list_ids": ["renewals"], "contacts": contacts},
        headers={"Authorization": f"Bearer {SANDBOX_CREDENTIALS[SENDGRID_API_KEY]}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "contacts[1].city", "message": "exceeds the maximum length"}]}
    assert clean_sandbox.app("sendgrid").contacts == {}
