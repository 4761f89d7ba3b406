"""Google Customer Match connector against its sandbox: one job per run and operation type, run at close;
hashing, partial failures, lost answers, auth."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from syncs.destinations.base import DeferredOutcome, Mode, Operation, OutboundRow, RowOutcome, RunInfo
from syncs.destinations.google_customer_match import GoogleCustomerMatchDestination, user_identifiers
from syncs.http import DestinationHTTPError
from syncs.sandbox.apps import google_ads
from syncs.sandbox.apps.credentials import GOOGLE_ADS_ACCESS_TOKEN, GOOGLE_ADS_DEVELOPER_TOKEN, SANDBOX_CREDENTIALS

USER_LIST = "customers/1234567890/userLists/top_clv"


def google(sandbox: Any, **settings: Any) -> GoogleCustomerMatchDestination:
    cfg = GoogleCustomerMatchDestination.Settings(
        base_url=f"{sandbox.url}/google-ads/v21",
        access_token_env=GOOGLE_ADS_ACCESS_TOKEN,
        developer_token_env=GOOGLE_ADS_DEVELOPER_TOKEN,
        login_customer_id="111-222-3333",
        requests_per_second=40,
        **settings,
    )
    target = GoogleCustomerMatchDestination.Target(customer_id="123-456-7890", user_list_id="top_clv")
    return GoogleCustomerMatchDestination("google_ads", cfg, target)


def people(n: int, start: int = 0) -> list[OutboundRow]:
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
        for i in range(start, start + n)
    ]


def emails(n: int, start: int = 0) -> list[OutboundRow]:
    return [OutboundRow(f"c{i}", {"email": f"person{i}@example.com"}) for i in range(start, start + n)]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def deliver(
    dest: GoogleCustomerMatchDestination, *batches: tuple[Operation, list[OutboundRow]], success: bool = True
) -> tuple[list[RowOutcome], DeferredOutcome]:
    """One run as the runner drives it: open, the batches in order, close. The rows `write` answered (the
    failures) and the one outcome `close` gives every other row."""
    dest.open(RunInfo("run-1", "top_clv_google", Mode.MIRROR))
    answered = [outcome for op, rows in batches for outcome in dest.write(op, rows)]
    return answered, dest.close(success=success)


def jobs(sandbox: Any) -> list[dict[str, Any]]:
    return list(sandbox.app("google_ads").jobs.values())


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


def test_first_and_last_names_are_hashed_alike() -> None:
    """A first name kept its punctuation where a last name lost it (`mrs. mary-ann` was hashed): both now follow
    Google's address rules, and leave out the title Google asks to leave out."""
    fields = {
        "first_name": " Mrs. Mary-Ann ",
        "last_name": "O'Brien-Smith, Jr.",
        "country_code": "US",
        "postal_code": "94107",
    }
    [identifier] = user_identifiers(fields)
    assert identifier["addressInfo"]["hashedFirstName"] == sha("maryann")
    assert identifier["addressInfo"]["hashedLastName"] == sha("obriensmith")


def test_a_run_adds_every_batch_to_one_job_and_runs_it_once_without_waiting(clean_sandbox: Any) -> None:
    """The sandbox keeps a job RUNNING for a few status reads: the run acknowledges its rows once the job runs,
    without waiting for Google to process it."""
    dest = google(clean_sandbox)
    batches = [(Operation.UPSERT, emails(n, start)) for start, n in ((0, 10_000), (10_000, 10_000), (20_000, 5_000))]

    answered, closing = deliver(dest, *batches)

    assert answered == [] and closing.ok
    [job] = jobs(clean_sandbox)
    assert (job["verb"], len(job["operations"]), job["status"], job["polls"]) == ("create", 25_000, "RUNNING", 0)
    assert closing.destination_ref == next(iter(clean_sandbox.app("google_ads").jobs))
    assert len(clean_sandbox.app("google_ads").members(USER_LIST)) == 25_000


def test_removals_and_adds_go_to_separate_jobs_run_at_close(clean_sandbox: Any) -> None:
    assert deliver(google(clean_sandbox), (Operation.UPSERT, people(3)))[1].ok
    dest = google(clean_sandbox)
    dest.open(RunInfo("run-1", "top_clv_google", Mode.MIRROR))
    assert dest.write(Operation.REMOVE, people(1)) == []
    assert dest.write(Operation.UPSERT, emails(2, start=10)) == []
    assert [j["status"] for j in jobs(clean_sandbox)] == ["RUNNING", "PENDING", "PENDING"]  # nothing runs yet

    closing = dest.close(success=True)

    _, removal, adds = jobs(clean_sandbox)
    assert closing.ok and (removal["verb"], adds["verb"]) == ("remove", "create")
    assert (removal["status"], adds["status"]) == ("RUNNING", "RUNNING")
    assert removal["ran"] < adds["ran"]
    app = clean_sandbox.app("google_ads")
    assert app.members(USER_LIST) == {sha(f"firstlast{i}@gmail.com") for i in (1, 2)} | {
        sha(f"person{i}@example.com") for i in (10, 11)
    }


def test_an_add_sharing_an_identifier_with_a_removal_of_the_run_waits_for_the_next_run(clean_sandbox: Any) -> None:
    """Google may process the remove job after the create job: the add would be undone. It goes next run."""
    assert deliver(google(clean_sandbox), (Operation.UPSERT, people(1)))[1].ok
    moved = OutboundRow("c9", {"email": "First.Last0@gmail.com"})  # c0 leaves, c9 joins with its email

    answered, closing = deliver(google(clean_sandbox), (Operation.REMOVE, people(1)), (Operation.UPSERT, [moved]))

    assert [(o.key, o.code, o.permanent) for o in answered] == [("c9", "removal_pending", False)]
    assert closing.ok and [j["verb"] for j in jobs(clean_sandbox)] == ["create", "remove"]
    assert clean_sandbox.app("google_ads").members(USER_LIST) == set()
    answered, closing = deliver(google(clean_sandbox), (Operation.UPSERT, [moved]))
    assert answered == [] and closing.ok
    assert clean_sandbox.app("google_ads").members(USER_LIST) == {sha("firstlast0@gmail.com")}


def test_rows_google_rejects_fail_alone(clean_sandbox: Any, monkeypatch: Any) -> None:
    import syncs.destinations.google_customer_match as module

    real = module.user_identifiers

    def corrupt_second(fields: dict[str, Any]) -> list[dict[str, Any]]:
        found = real(fields)
        return [{"hashedEmail": "NOT-A-HASH"}] if fields["email"].startswith("First.Last1@") else found

    monkeypatch.setattr(module, "user_identifiers", corrupt_second)
    answered, closing = deliver(google(clean_sandbox), (Operation.UPSERT, people(3)))

    assert [(o.key, o.code, o.permanent) for o in answered] == [("c1", "invalid_sha256_format", True)]
    assert closing.ok
    assert clean_sandbox.app("google_ads").members(USER_LIST) == {sha(f"firstlast{i}@gmail.com") for i in (0, 2)}


def test_rows_without_identifiers_fail_alone(clean_sandbox: Any) -> None:
    rows = [*people(1), OutboundRow("bad", {"email": "nope", "first_name": "Ann"})]
    answered, closing = deliver(google(clean_sandbox), (Operation.UPSERT, rows))
    assert [(o.key, o.code) for o in answered] == [("bad", "no_identifier")] and closing.ok


def test_a_batch_of_rejected_rows_leaves_nothing_to_run(clean_sandbox: Any) -> None:
    rows = [OutboundRow("bad", {"email": "nope"})]
    answered, closing = deliver(google(clean_sandbox), (Operation.UPSERT, rows))
    assert [o.code for o in answered] == ["no_identifier"] and closing.ok and jobs(clean_sandbox) == []


def test_headers_are_enforced(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv(GOOGLE_ADS_DEVELOPER_TOKEN, "wrong")
    answered, _ = deliver(google(clean_sandbox), (Operation.UPSERT, people(2)))
    assert {(o.code, o.permanent) for o in answered} == {("http_403", False)}
    monkeypatch.setenv(GOOGLE_ADS_ACCESS_TOKEN, "wrong")
    answered, _ = deliver(google(clean_sandbox), (Operation.UPSERT, people(1)))
    assert {o.code for o in answered} == {"http_401"}


def test_a_refused_run_fails_the_rows_for_the_next_run(clean_sandbox: Any) -> None:
    dest = google(clean_sandbox)
    dest.open(RunInfo("run-1", "top_clv_google", Mode.MIRROR))
    assert dest.write(Operation.UPSERT, people(2)) == []
    clean_sandbox.app("google_ads").developer_token = "revoked"
    try:
        closing = dest.close(success=True)
    finally:
        clean_sandbox.app("google_ads").developer_token = SANDBOX_CREDENTIALS[GOOGLE_ADS_DEVELOPER_TOKEN]
    assert (closing.ok, closing.code, closing.permanent) == (False, "http_403", False)
    assert [j["status"] for j in jobs(clean_sandbox)] == ["PENDING"]


def test_a_job_that_cannot_be_run_stops_the_jobs_after_it(clean_sandbox: Any) -> None:
    """The next run does not know of a failed run's jobs: none may add members behind its back."""
    assert deliver(google(clean_sandbox), (Operation.UPSERT, people(2)))[1].ok
    dest = google(clean_sandbox)
    dest.open(RunInfo("run-2", "top_clv_google", Mode.MIRROR))
    assert dest.write(Operation.REMOVE, people(1)) == [] and dest.write(Operation.UPSERT, emails(1)) == []
    run = dest._run
    removal = next(name for name, job in clean_sandbox.app("google_ads").jobs.items() if job["verb"] == "remove")
    dest._run = lambda job: DeferredOutcome.failure("http_503", "refused") if job == removal else run(job)

    closing = dest.close(success=True)

    assert (closing.ok, closing.code) == (False, "http_503")
    assert [job["status"] for job in jobs(clean_sandbox)][1:] == ["PENDING", "PENDING"]
    assert closing.by_op == {} and closing.acknowledged_refs() == []


def test_the_rows_of_a_job_that_ran_are_acknowledged_when_the_next_cannot_run(clean_sandbox: Any) -> None:
    assert deliver(google(clean_sandbox), (Operation.UPSERT, people(2)))[1].ok
    clean_sandbox.app("google_ads").refused_runs["create"] = 1

    _, closing = deliver(google(clean_sandbox), (Operation.REMOVE, people(1)), (Operation.UPSERT, emails(1)))

    _, removal, adds = jobs(clean_sandbox)
    assert (removal["status"], adds["status"]) == ("RUNNING", "PENDING")
    name = next(name for name, job in clean_sandbox.app("google_ads").jobs.items() if job is removal)
    assert (closing.ok, closing.code, closing.for_op(Operation.UPSERT).ok) == (False, "http_400", False)
    assert closing.for_op(Operation.REMOVE) == DeferredOutcome.success(destination_ref=name)
    assert closing.acknowledged_refs() == [name]


def test_a_run_request_left_unanswered_counts_as_run_and_its_check_finds_it_never_ran(clean_sandbox: Any) -> None:
    """No answer to `:run`, then no status: the rows are acknowledged and the job recorded, so later runs hold
    against it; the later check finds it PENDING (never run) and the run is sent again."""
    dest = google(clean_sandbox)
    dest.open(RunInfo("run-1", "top_clv_google", Mode.MIRROR))
    assert dest.write(Operation.UPSERT, people(2)) == []
    request = dest.http.request

    def unanswered(method: str, path: str, **kwargs: Any) -> Any:
        if path.endswith(":run"):
            raise DestinationHTTPError(method, path, None, "connection reset")
        return request(method, path, **kwargs)

    dest.http.request = unanswered
    dest._statuses = lambda jobs: "HTTP 503"

    closing = dest.close(success=True)

    [job] = jobs(clean_sandbox)
    assert closing.ok and job["status"] == "PENDING"
    check = google(clean_sandbox).check_later([closing.destination_ref])[closing.destination_ref]
    assert (check.state, check.reason) == (
        "failed",
        "Google never ran an offline user data job (its run request went unanswered, or never went out)",
    )


def test_every_step_retries_through_faults(clean_sandbox: Any, control: Any) -> None:
    control("google_ads", error_rate=0.3, seed=3)
    answered, closing = deliver(google(clean_sandbox, max_retries=8), (Operation.UPSERT, people(2)))
    assert answered == [] and closing.ok
    assert clean_sandbox.app("google_ads").stats["faults_5xx"] > 0


def test_a_lost_answer_to_run_does_not_fail_the_rows(clean_sandbox: Any) -> None:
    """The client re-sends the run; Google refuses it, the job having started; the job's status confirms."""
    app = clean_sandbox.app("google_ads")
    app.lost_answers["run"] = 1

    answered, closing = deliver(google(clean_sandbox), (Operation.UPSERT, people(2)))

    assert answered == [] and closing.ok
    assert app.lost_answers["run"] == 0 and [j["status"] for j in jobs(clean_sandbox)] == ["RUNNING"]
    assert app.members(USER_LIST) == {sha(f"firstlast{i}@gmail.com") for i in range(2)}


def test_a_lost_answer_to_add_operations_is_harmless(clean_sandbox: Any) -> None:
    """The repeated request adds the same members again: the list is the same."""
    app = clean_sandbox.app("google_ads")
    app.lost_answers["addOperations"] = 1

    answered, closing = deliver(google(clean_sandbox), (Operation.UPSERT, people(2)))

    assert answered == [] and closing.ok
    [job] = jobs(clean_sandbox)
    assert len(job["operations"]) == 4
    assert app.members(USER_LIST) == {sha(f"firstlast{i}@gmail.com") for i in range(2)}


def test_a_failed_run_runs_no_job(clean_sandbox: Any) -> None:
    """Its rows are not acknowledged: the next run sends them again, in a new job. The unrun job is never
    processed."""
    answered, closing = deliver(google(clean_sandbox), (Operation.UPSERT, people(2)), success=False)

    assert answered == [] and (closing.ok, closing.code, closing.permanent) == (False, "run_aborted", False)
    assert [j["status"] for j in jobs(clean_sandbox)] == ["PENDING"]
    assert clean_sandbox.app("google_ads").members(USER_LIST) == set()


def test_later_checks_read_every_earlier_jobs_status_in_one_search(clean_sandbox: Any) -> None:
    """A ref names a run's jobs: failed when one failed (with Google's reason), pending while one runs, done when
    all succeeded, unknown when Google does not know one."""
    app = clean_sandbox.app("google_ads")
    assert deliver(google(clean_sandbox), (Operation.UPSERT, people(2)))[1].ok
    done = next(reversed(app.jobs))
    assert deliver(google(clean_sandbox), (Operation.REMOVE, people(1)), (Operation.UPSERT, emails(1, start=20)))[1].ok
    two_jobs = " ".join(list(app.jobs)[1:])
    app.failing_jobs["remove"] = 1
    app.members(USER_LIST)  # the first and the create job succeed, the remove job fails
    assert deliver(google(clean_sandbox), (Operation.UPSERT, emails(1, start=30)))[1].ok
    running = next(reversed(app.jobs))
    unknown = "customers/1234567890/offlineUserDataJobs/404"
    searches = app.stats["requests"]

    checks = google(clean_sandbox).check_later([done, two_jobs, running, unknown])

    assert app.stats["requests"] == searches + 1
    assert {ref: check.state for ref, check in checks.items()} == {
        done: "done",
        two_jobs: "failed",
        running: "pending",
        unknown: "unknown",
    }
    assert checks[two_jobs].reason == "Google failed an offline user data job (UNKNOWN)"
    app.jobs[two_jobs.split()[1]]["status"] = "RUNNING"  # the failed job's sibling has not finished
    assert google(clean_sandbox).check_later([two_jobs])[two_jobs].state == "pending"


def test_later_checks_take_a_failed_search_as_unknown_and_say_why(clean_sandbox: Any, control: Any) -> None:
    assert deliver(google(clean_sandbox), (Operation.UPSERT, people(1)))[1].ok
    ref = next(iter(clean_sandbox.app("google_ads").jobs))
    control("google_ads", error_rate=1.0)
    check = google(clean_sandbox, max_retries=0).check_later([ref])[ref]
    assert check.state == "unknown" and check.reason.startswith("Google's status search failed (")


@pytest.mark.parametrize(
    "answer", [{"results": [{}]}, {"results": [{"offlineUserDataJob": {"resourceName": "x"}}]}, ["results"], None]
)
def test_later_checks_take_an_answer_of_another_shape_as_unknown(clean_sandbox: Any, answer: Any) -> None:
    """None stands for a body that is not JSON."""
    ref = "customers/1234567890/offlineUserDataJobs/1"
    dest = google(clean_sandbox)

    def body() -> Any:
        if answer is None:
            raise ValueError("not JSON")
        return answer

    dest.http.request = lambda *args, **kwargs: SimpleNamespace(ok=True, status_code=200, json=body)
    check = dest.check_later([ref])[ref]
    assert (check.state, check.reason) == ("unknown", "Google's status search failed (an answer of another shape)")


def test_the_sandbox_holds_google_to_its_job_contract(clean_sandbox: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(google_ads, "MAX_IDENTIFIERS_PER_REQUEST", 40)  # Google's is 100,000
    base = f"{clean_sandbox.url}/google-ads/v21/customers/1234567890"
    headers = {
        "Authorization": f"Bearer {SANDBOX_CREDENTIALS[GOOGLE_ADS_ACCESS_TOKEN]}",
        "developer-token": SANDBOX_CREDENTIALS[GOOGLE_ADS_DEVELOPER_TOKEN],
    }

    def post(path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{base}{path}", json=body, headers=headers, timeout=10)

    def error_code(response: requests.Response) -> str:
        return response.json()["error"]["details"][0]["errors"][0]["errorCode"]["offlineUserDataJobError"]

    spec = {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": {"userList": USER_LIST}}
    job = post("/offlineUserDataJobs:create", {"job": spec}).json()["resourceName"].split("/", 2)[2]
    member = {"userIdentifiers": [{"hashedEmail": sha("a@example.com")}]}
    too_many = [{"create": {"userIdentifiers": [{"hashedEmail": sha(f"{i}@x.com")}] * 20}} for i in range(3)]

    assert error_code(post(f"/{job}:addOperations", {"operations": too_many})) == "TOO_MANY_USER_IDENTIFIERS"
    assert post(f"/{job}:addOperations", {"operations": [{"create": member}]}).ok
    mixed = post(f"/{job}:addOperations", {"operations": [{"remove": member}]})
    assert (mixed.status_code, error_code(mixed)) == (400, "CONFLICTING_OPERATION")
    assert post(f"/{job}:run", {}).ok
    for refused in (post(f"/{job}:run", {}), post(f"/{job}:addOperations", {"operations": [{"create": member}]})):
        assert (refused.status_code, error_code(refused)) == (400, "JOB_ALREADY_STARTED")
    query = {
        "query": f"SELECT offline_user_data_job.status FROM offline_user_data_job WHERE "
        f"offline_user_data_job.resource_name = 'customers/1234567890/{job}'"
    }
    statuses = [
        post("/googleAds:search", query).json()["results"][0]["offlineUserDataJob"]["status"]
        for _ in range(google_ads.RUNNING_POLLS + 1)
    ]
    assert statuses == ["RUNNING"] * google_ads.RUNNING_POLLS + ["SUCCESS"]
