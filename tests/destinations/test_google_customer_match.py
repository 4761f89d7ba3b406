"""Google Customer Match connector against its sandbox: the job flow, hashing, partial failures, auth."""

from __future__ import annotations

import hashlib
from typing import Any

from syncs.destinations.base import Operation, OutboundRow
from syncs.destinations.google_customer_match import GoogleCustomerMatchDestination, user_identifiers
from syncs.sandbox.apps.credentials import GOOGLE_ADS_ACCESS_TOKEN, GOOGLE_ADS_DEVELOPER_TOKEN

USER_LIST = "customers/1234567890/userLists/top_clv"


def google(sandbox: Any, **settings: Any) -> GoogleCustomerMatchDestination:
    cfg = GoogleCustomerMatchDestination.Settings(
        base_url=f"{sandbox.url}/google-ads/v21",
        access_token_env=GOOGLE_ADS_ACCESS_TOKEN,
        developer_token_env=GOOGLE_ADS_DEVELOPER_TOKEN,
        login_customer_id="111-222-3333",
        poll_interval_seconds=0.01,
        **settings,
    )
    target = GoogleCustomerMatchDestination.Target(customer_id="123-456-7890", user_list_id="top_clv")
    return GoogleCustomerMatchDestination("google_ads", cfg, target)


def people(n: int) -> list[OutboundRow]:
    return [
        OutboundRow(
            f"c{i}",
            {
                "email": f"First.Last{i}@gmail.com",
                "phone": "+1 650 253 0000",
                "first_name": "Ann",
                "last_name": "Lee",
                "country_code": "us",
                "postal_code": "94107",
            },
        )
        for i in range(n)
    ]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_identifiers_follow_googles_normalization() -> None:
    identifiers = user_identifiers(people(1)[0].fields)
    assert identifiers == [
        {"hashedEmail": sha("firstlast0@gmail.com")},
        {"hashedPhoneNumber": sha("+16502530000")},
        {
            "addressInfo": {
                "hashedFirstName": sha("ann"),
                "hashedLastName": sha("lee"),
                "countryCode": "US",
                "postalCode": "94107",
            }
        },
    ]


def test_job_flow_adds_then_removes_members(clean_sandbox: Any) -> None:
    dest = google(clean_sandbox)
    assert all(o.ok for o in dest.write(Operation.UPSERT, people(3)))
    app = clean_sandbox.app("google_ads")
    assert app.members(USER_LIST) == {sha(f"firstlast{i}@gmail.com") for i in range(3)}
    [job] = [j for j in app.jobs.values() if j["status"] == "SUCCESS"]
    assert job["polls"] >= 2  # the client polled until the job finished
    assert all(o.ok for o in dest.write(Operation.REMOVE, people(1)))
    assert app.members(USER_LIST) == {sha(f"firstlast{i}@gmail.com") for i in (1, 2)}


def test_partial_failure_maps_to_the_row(clean_sandbox: Any, monkeypatch: Any) -> None:
    import syncs.destinations.google_customer_match as module

    real = module.user_identifiers

    def corrupt_second(fields: dict[str, Any]) -> list[dict[str, Any]]:
        found = real(fields)
        return [{"hashedEmail": "NOT-A-HASH"}] if fields["email"].startswith("First.Last1@") else found

    monkeypatch.setattr(module, "user_identifiers", corrupt_second)
    outcomes = {o.key: o for o in google(clean_sandbox).write(Operation.UPSERT, people(3))}
    assert outcomes["c0"].ok and outcomes["c2"].ok
    assert (outcomes["c1"].code, outcomes["c1"].permanent) == ("invalid_sha256_format", True)


def test_rows_without_identifiers_fail_alone(clean_sandbox: Any) -> None:
    rows = [*people(1), OutboundRow("bad", {"email": "nope", "first_name": "Ann"})]
    outcomes = {o.key: o for o in google(clean_sandbox).write(Operation.UPSERT, rows)}
    assert outcomes["c0"].ok and outcomes["bad"].code == "no_identifier"


def test_headers_are_enforced(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(GOOGLE_ADS_DEVELOPER_TOKEN, "wrong")
    outcomes = google(clean_sandbox).write(Operation.UPSERT, people(2))
    assert {(o.code, o.permanent) for o in outcomes} == {("http_403", False)}
    monkeypatch.setenv(GOOGLE_ADS_ACCESS_TOKEN, "wrong")
    assert {o.code for o in google(clean_sandbox).write(Operation.UPSERT, people(1))} == {"http_401"}


def test_every_step_retries_through_faults(clean_sandbox: Any, control: Any) -> None:
    control("google_ads", error_rate=0.3, seed=3)
    assert all(o.ok for o in google(clean_sandbox, max_retries=8).write(Operation.UPSERT, people(2)))
    assert clean_sandbox.app("google_ads").stats["faults_5xx"] > 0


def test_poll_timeout_leaves_rows_for_the_next_run(clean_sandbox: Any) -> None:
    outcomes = google(clean_sandbox, poll_timeout_seconds=0).write(Operation.UPSERT, people(1))
    assert {(o.code, o.permanent) for o in outcomes} == {("job_pending", False)}
