"""Work Google Customer Match processes after the run (a job runs at close; Google applies it hours later and may
fail it): before a later run plans, the engine reads the status of earlier runs' jobs and sends a failed run's
adds and removals again, so a failure at Google neither leaves members out nor keeps opted-out ones in."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from syncs import state
from syncs.destinations.google_customer_match import GoogleCustomerMatchDestination
from syncs.identity import sha256_hex
from tests.destinations.runs import opened_runs
from tests.syncs.test_cli import cli
from tests.syncs.test_identity_changes import GOOGLE_DESTINATION

USER_LIST = "customers/1234567890/userLists/people"

PEOPLE_YAML = """
models:
  - name: people
    config:
      meta:
        tidings:
          syncs:
            - name: people_google
              destination: google_ads
              mode: mirror
              primary_key: customer_id
              target: {customer_id: "123-456-7890", user_list_id: people}
              mapping: {email: email}
              guards: {max_removal_share: 1.0}
            - name: people_google_upsert
              destination: google_ads
              mode: upsert
              primary_key: customer_id
              target: {customer_id: "123-456-7890", user_list_id: people}
              mapping: {email: email}
            - name: people_google_guarded
              destination: google_ads
              mode: mirror
              primary_key: customer_id
              target: {customer_id: "123-456-7890", user_list_id: guarded}
              mapping: {email: email}
              guards: {max_removal_share: 0.5}
            - name: people_google_one_by_one
              destination: google_ads_one_by_one
              mode: mirror
              primary_key: customer_id
              target: {customer_id: "123-456-7890", user_list_id: people}
              mapping: {email: email}
              guards: {max_removal_share: 1.0}
  - name: contacts
    config:
      meta:
        tidings:
          syncs:
            - name: contacts_google
              destination: google_ads
              mode: mirror
              primary_key: customer_id
              target: {customer_id: "123-456-7890", user_list_id: contacts}
              mapping: {email: email, phone: phone, country_code: country}
              guards: {max_removal_share: 1.0}
"""

ONE_BY_ONE_DESTINATION = """
    google_ads_one_by_one:
      type: google_customer_match
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/google-ads/v21"
      access_token_env: TIDINGS_GOOGLE_ADS_ACCESS_TOKEN
      developer_token_env: TIDINGS_GOOGLE_ADS_DEVELOPER_TOKEN
      batch_size: 1
      max_retries: 0
"""


@pytest.fixture
def env(sync_env: Any) -> Any:
    (sync_env.dbt_project_dir / "models" / "_people.yml").write_text(PEOPLE_YAML)
    with sync_env.destinations_file.open("a") as destinations:
        destinations.write(GOOGLE_DESTINATION + ONE_BY_ONE_DESTINATION)
    sync_env.sql(
        """create table analytics.people as select * from (values
            ('c1', 'ann@example.com'), ('c2', 'bob@example.com'), ('c3', 'cy@example.com')
        ) t(customer_id, email)"""
    )
    return sync_env


def google(env: Any) -> Any:
    return env.sandbox.app("google_ads")


def members(env: Any) -> set[str]:
    """The user list once Google has processed every job that ran."""
    return google(env).members(USER_LIST)


def hashed(*emails: str) -> set[str]:
    return {sha256_hex(email) for email in emails}


def unconfirmed(env: Any) -> tuple[int, int]:
    return (
        env.sql("select count(*) from tidings.unconfirmed_deliveries")[0][0],
        env.sql("select count(*) from tidings.unconfirmed_removals")[0][0],
    )


def removing_ann(env: Any) -> Any:
    """Ann is in the list, then leaves: the run that removes her, whose job Google has not processed yet."""
    env.run("people_google")
    members(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")
    return env.run("people_google")


@pytest.mark.parametrize("sync", ["people_google", "people_google_upsert"])
def test_members_of_a_job_google_failed_are_sent_again(env: Any, sync: str) -> None:
    assert env.run(sync).sent == 3
    google(env).failing_jobs["create"] = 1
    assert members(env) == hashed("ann@example.com")  # the job failed after applying part of its operations
    dry = env.run(sync, dry_run=True)
    assert dry.planned.change == 0 and unconfirmed(env) == (1, 0)  # a dry run changes no state: it does not check

    again = env.run(sync)

    assert (again.status, again.sent, again.planned.change) == ("success", 3, 3)
    [warning] = again.warnings
    assert "Google failed an offline user data job (UNKNOWN)" in warning and "3 members and 0 removals" in warning
    assert warning in again.message
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")
    settled = env.run(sync)
    assert (settled.planned.change, settled.warnings, unconfirmed(env)) == (0, [], (0, 0))


def test_a_removal_google_failed_is_sent_again(env: Any) -> None:
    """Ann opts out; Google fails the job removing her: she must not stay in the audience."""
    assert removing_ann(env).removed == 1
    assert unconfirmed(env) == (1, 1)
    google(env).failing_jobs["remove"] = 1
    assert sha256_hex("ann@example.com") in members(env)

    again = env.run("people_google")

    assert (again.status, again.removed, again.sent) == ("success", 1, 0)
    assert "0 members and 1 removals" in again.warnings[0]
    assert members(env) == hashed("bob@example.com", "cy@example.com")
    assert env.run("people_google").warnings == [] and unconfirmed(env) == (0, 0)


def test_a_member_back_in_the_model_after_a_failed_removal_is_added(env: Any) -> None:
    removing_ann(env)
    google(env).failing_jobs["remove"] = 1
    members(env)
    env.sql("insert into analytics.people values ('c1', 'ann@example.com')")

    again = env.run("people_google")

    assert (again.sent, again.removed, again.planned.add) == (1, 0, 1)
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")


def test_a_retired_identity_google_failed_to_remove_is_retired_again(env: Any) -> None:
    """Ann moves to a new address: the run retires the old one in its remove job, which Google fails."""
    env.run("people_google")
    members(env)
    env.sql("update analytics.people set email = 'ann.new@example.com' where customer_id = 'c1'")
    moved = env.run("people_google")
    assert (moved.sent, moved.removed) == (1, 1)
    google(env).failing_jobs["remove"] = 1
    assert hashed("ann@example.com", "ann.new@example.com") <= members(env)

    again = env.run("people_google")

    assert again.status == "success" and again.removed == 1
    assert members(env) == hashed("ann.new@example.com", "bob@example.com", "cy@example.com")


def test_a_job_still_running_is_checked_again_warned_after_a_day_and_dropped_after_a_week(env: Any) -> None:
    env.run("people_google")  # the sandbox keeps the job RUNNING for three status reads

    quiet = env.run("people_google")
    assert (quiet.warnings, unconfirmed(env)) == ([], (1, 0))
    env.sql("update tidings.unconfirmed_deliveries set recorded_at = recorded_at - interval 30 hour")
    late = env.run("people_google")
    assert late.warnings and "still being processed after 30 hours" in late.warnings[0]
    env.sql("update tidings.unconfirmed_deliveries set recorded_at = recorded_at - interval 7 day")
    dropped = env.run("people_google")

    assert "still pending at the destination after 8 days: no longer checked" in dropped.warnings[0]
    assert unconfirmed(env) == (0, 0)


def test_a_job_google_does_not_report_is_a_warning_every_run_until_it_is_dropped(env: Any) -> None:
    env.run("people_google")
    google(env).jobs.clear()

    [warning] = env.run("people_google").warnings
    assert warning.endswith("could not be checked; its members' opposite operations wait for it up to 2 days")
    assert unconfirmed(env) == (1, 0)
    env.sql("update tidings.unconfirmed_deliveries set recorded_at = recorded_at - interval 8 day")
    dropped = env.run("people_google")
    assert "still unknown at the destination after 8 days: no longer checked" in dropped.warnings[0]
    assert unconfirmed(env) == (0, 0)


def test_a_job_whose_status_google_did_not_give_still_holds_an_opposite_operation(env: Any) -> None:
    """Unknown is not done: while Google does not say, Ann's add waits for the job removing her."""
    google(env).newest_first = True
    removing_ann(env)
    removal_job = google(env).jobs.popitem()  # the status search does not find it
    env.sql("insert into analytics.people values ('c1', 'ann@example.com')")

    held = env.run("people_google")

    assert (held.sent, held.error_summary) == (0, {"removal_pending": 1})
    google(env).jobs.update([removal_job])
    members(env)
    assert env.run("people_google").sent == 1
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")


def test_a_retry_of_rows_in_error_keeps_holding_them(env: Any) -> None:
    google(env).newest_first = True
    removing_ann(env)
    env.sql("insert into analytics.people values ('c1', 'ann@example.com')")
    assert env.run("people_google").error_summary == {"removal_pending": 1}

    retried = env.run("people_google", only_rows_in_error=True)

    assert (retried.sent, retried.error_summary) == (0, {"removal_pending": 1})
    members(env)
    assert env.run("people_google").sent == 1
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")


def test_a_failed_job_waits_for_its_sibling_still_running(env: Any) -> None:
    """Ann moves to a new address; Google fails the job retiring the old one while the job adding the new one still
    runs. Ann then opts out: her removal waits for the add, and the failed run is sent again once it is done."""
    google(env).newest_first = True
    env.run("people_google")
    members(env)
    env.sql("update analytics.people set email = 'ann.new@example.com' where customer_id = 'c1'")
    env.run("people_google")
    retire_job = next(job for job in google(env).jobs.values() if job["verb"] == "remove")
    retire_job["status"] = "FAILED"  # processed nothing
    env.sql("delete from analytics.people where customer_id = 'c1'")

    held = env.run("people_google")

    assert (held.removed, held.error_summary) == (0, {"add_pending": 1})
    assert held.warnings[0].endswith("it is planned again once the rest of that work is done")
    members(env)  # Google adds ann.new
    redone = env.run("people_google")
    assert (redone.status, redone.removed) == ("success", 2) and "1 members and 1 removals" in redone.warnings[0]
    assert members(env) == hashed("bob@example.com", "cy@example.com")


@pytest.mark.parametrize("back_before_the_failure_is_seen", [False, True])
def test_a_member_back_with_another_address_after_a_failed_removal_has_the_old_one_retired(
    env: Any, back_before_the_failure_is_seen: bool
) -> None:
    removing_ann(env)
    env.sql("insert into analytics.people values ('c1', 'ann.other@example.com')")
    if back_before_the_failure_is_seen:  # the removal job still runs: the new address shares nothing with it
        assert env.run("people_google").sent == 1
    google(env).failing_jobs["remove"] = 1
    members(env)  # Ann's removal failed: her old address is still in the list

    again = env.run("people_google")

    assert again.removed == 1 and "1 removals" in again.warnings[0]
    assert members(env) == hashed("ann.other@example.com", "bob@example.com", "cy@example.com")
    assert env.run("people_google").planned.remove == 0


def test_a_failed_retirement_of_an_address_the_member_holds_again_is_not_sent(env: Any) -> None:
    """Ann moved to a new address and the job retiring the old one failed; by the time this is seen, a later run
    holds her with the old address again (simulated in state): re-doing the retirement would take her out."""
    env.run("people_google")
    members(env)
    [(row_hash, fields)] = env.sql("select row_hash, row_fields from tidings.sync_state where row_key = 'c1'")
    env.sql("update analytics.people set email = 'ann.new@example.com' where customer_id = 'c1'")
    env.run("people_google")
    google(env).failing_jobs["remove"] = 1
    members(env)
    env.sql("update analytics.people set email = 'ann@example.com' where customer_id = 'c1'")
    env.sql(
        "update tidings.sync_state set row_hash = ?, row_fields = ?, destination_ref = 'a later job' "
        "where row_key = 'c1'",
        [row_hash, fields],
    )

    again = env.run("people_google")

    assert "0 members and 0 removals" in again.warnings[0]
    assert (again.removed, again.planned.change) == (0, 0)
    assert hashed("ann@example.com") <= members(env)


def test_a_member_removed_by_a_job_still_processing_is_added_back_once_it_is_done(env: Any) -> None:
    """Ann leaves, then comes back while Google still processes the job removing her: adding her now could be
    undone by that job (the sandbox processes the newest job first), so the add waits for it."""
    google(env).newest_first = True
    assert removing_ann(env).removed == 1  # its job stays RUNNING for three status reads
    env.sql("insert into analytics.people values ('c1', 'ann@example.com')")

    held = env.run("people_google")

    assert (held.status, held.sent, held.error_summary) == ("failed", 0, {"removal_pending": 1})
    assert members(env) == hashed("bob@example.com", "cy@example.com")  # Google finishes the removal
    added = env.run("people_google")
    assert (added.status, added.sent) == ("success", 1)
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")


def test_a_new_customer_taking_an_address_a_job_still_removes_is_added_once_it_is_done(env: Any) -> None:
    """Ann closes her account and signs up again as a new customer (another key) while Google still processes the
    job removing her address: the new customer's add could be undone by that job, so it waits for it too."""
    google(env).newest_first = True
    assert removing_ann(env).removed == 1  # its job stays RUNNING for three status reads
    env.sql("insert into analytics.people values ('c9', ' Ann@Example.com')")

    held = env.run("people_google")

    assert (held.sent, held.error_summary) == (0, {"removal_pending": 1})
    assert members(env) == hashed("bob@example.com", "cy@example.com")  # Google finishes the removal
    added = env.run("people_google")
    assert (added.status, added.sent) == ("success", 1)
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")


def test_a_member_sharing_one_identifier_with_a_removal_in_flight_is_not_held(env: Any) -> None:
    """Colleagues share the switchboard phone. One leaves: her removal (email and phone) is not released, as no
    one keeps her whole identity. A new colleague is not held behind it: with steady churn such removals would
    always be in flight, and every new colleague would wait for good."""
    contacts = "customers/1234567890/userLists/contacts"
    env.sql(
        """create table analytics.contacts as select * from (values
            ('c1', 'ann@example.com', '+1 415 555 0100', 'US'), ('c2', 'bob@example.com', '+1 415 555 0100', 'US')
        ) t(customer_id, email, phone, country)"""
    )
    google(env).newest_first = True
    env.run("contacts_google")
    google(env).members(contacts)
    env.sql("delete from analytics.contacts where customer_id = 'c1'")
    assert env.run("contacts_google").removed == 1  # its job stays RUNNING for three status reads
    env.sql("insert into analytics.contacts values ('c3', 'cy@example.com', '+1 415 555 0100', 'US')")

    joined = env.run("contacts_google")

    assert (joined.sent, joined.error_summary) == (1, {})


def test_a_member_added_by_a_job_still_processing_is_removed_once_it_is_done(env: Any, monkeypatch: Any) -> None:
    """Ann opts out while Google still processes the job adding her: a removal now could be processed first and
    leave her in the audience, so the removal waits for that job, and then goes out. Her fields are read once,
    though both her state and the job's record name them."""
    google(env).newest_first = True
    env.run("people_google")  # its job stays RUNNING for three status reads
    env.sql("delete from analytics.people where customer_id = 'c1'")
    opened = opened_runs(monkeypatch, GoogleCustomerMatchDestination)

    held = env.run("people_google")

    assert (held.removed, held.error_summary) == (0, {"add_pending": 1})
    assert len(opened[0].added_in_flight) == 1
    monkeypatch.undo()
    members(env)  # Google finishes the add job
    removed = env.run("people_google")
    assert (removed.status, removed.removed) == ("success", 1)
    assert members(env) == hashed("bob@example.com", "cy@example.com")


def test_a_retirement_and_its_change_wait_for_a_job_still_adding_the_old_address(env: Any) -> None:
    """Ann moves while the job adding her old address still runs: its retirement waits, and so does the change, so
    her state keeps naming that job and the next run still holds the retirement."""
    google(env).newest_first = True
    env.run("people_google")
    env.sql("update analytics.people set email = 'ann.new@example.com' where customer_id = 'c1'")

    held = env.run("people_google")

    assert (held.sent, held.removed, held.error_summary) == (0, 0, {"add_pending": 2})
    assert env.run("people_google").error_summary == {"add_pending": 2}  # the job still runs
    members(env)
    moved = env.run("people_google")
    assert (moved.status, moved.sent, moved.removed) == ("success", 1, 1)
    assert members(env) == hashed("ann.new@example.com", "bob@example.com", "cy@example.com")


def test_removals_redone_after_a_failure_do_not_count_against_the_removal_guard(env: Any) -> None:
    """Their run was allowed to remove them; blocking every later run would leave opted-out members in the list."""
    guarded = "customers/1234567890/userLists/guarded"
    env.run("people_google_guarded")
    google(env).members(guarded)
    env.sql("delete from analytics.people where customer_id in ('c1', 'c2')")
    assert env.run("people_google_guarded").status == "blocked"
    assert env.run("people_google_guarded", allow_large_removal=True).removed == 2
    google(env).failing_jobs["remove"] = 1
    assert len(google(env).members(guarded)) == 2  # the failed job removed one of the two

    again = env.run("people_google_guarded")

    assert (again.status, again.removed) == ("success", 2)
    assert "passed: max_removal_share: only 2 removals sent again as the destination failed them" in (
        again.guard_decisions
    )
    assert google(env).members(guarded) == hashed("cy@example.com")


def test_a_retirement_whose_replacement_was_held_is_redone(env: Any) -> None:
    """Ann's phone changes: the retirement of (email, old phone) goes, the add of (email, new phone) shares the email
    and waits; Google fails the retirement. Her settled state still shows the old phone, but her write-ahead entry
    is newer: the retirement is sent again."""
    contacts = "customers/1234567890/userLists/contacts"
    env.sql(
        """create table analytics.contacts as select * from (values
            ('c1', 'ann@example.com', '+1 415 555 0100', 'US'), ('c2', 'bob@example.com', '+1 415 555 0101', 'US')
        ) t(customer_id, email, phone, country)"""
    )
    env.run("contacts_google")
    google(env).members(contacts)
    env.sql("update analytics.contacts set phone = '+1 415 555 0199' where customer_id = 'c1'")
    changed = env.run("contacts_google")
    assert (changed.removed, changed.error_summary) == (1, {"removal_pending": 1})
    google(env).failing_jobs["remove"] = 1
    google(env).members(contacts)

    again = env.run("contacts_google")

    assert again.removed == 1 and "1 removals" in again.warnings[0]
    google(env).members(contacts)
    env.run("contacts_google")  # the add waited for the removal of the run before
    google(env).members(contacts)
    phones = {value for kind, value in google(env).user_lists[contacts] if kind == "hashedPhoneNumber"}
    assert phones == {sha256_hex("+14155550199"), sha256_hex("+14155550101")}


def test_a_failed_removal_of_a_member_a_dead_run_wrote_ahead_is_a_retirement(env: Any) -> None:
    """Ann leaves (her removal will fail), comes back with another address in a run that dies after its job ran,
    and leaves again: both addresses go."""
    removing_ann(env)
    env.sql("insert into analytics.people values ('c1', 'ann.other@example.com')")
    died = env.run_in_subprocess("people_google", TIDINGS_CRASH_AFTER_BATCHES="1", TIDINGS_CRASH_BEFORE_COMMIT="1")
    assert died.returncode == 137, died.stderr
    google(env).failing_jobs["remove"] = 1
    assert members(env) == hashed("ann@example.com", "ann.other@example.com", "bob@example.com", "cy@example.com")
    env.sql("delete from analytics.people where customer_id = 'c1'")

    again = env.run("people_google")

    assert (again.status, again.removed) == ("success", 2)
    assert members(env) == hashed("bob@example.com", "cy@example.com")


def test_a_status_search_google_refuses_is_a_warning(env: Any, monkeypatch: Any) -> None:
    env.run("people_google")
    monkeypatch.setattr(google(env), "developer_token", "revoked")

    refused = env.run("people_google")

    assert refused.status == "success" and unconfirmed(env) == (1, 0)
    assert "could not be checked: Google's status search failed (HTTP 403)" in refused.warnings[0]


def test_a_failed_job_still_waiting_for_its_sibling_after_a_week_is_redone_not_dropped(env: Any) -> None:
    env.run("people_google")
    members(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")  # Ann opts out
    env.sql("insert into analytics.people values ('c4', 'dan@example.com')")
    env.run("people_google")
    removal, adding = (job for job in google(env).jobs.values() if job["status"] == "RUNNING")
    removal["status"], adding["polls"] = "FAILED", -1_000  # the add job never finishes
    env.sql("update tidings.unconfirmed_deliveries set recorded_at = recorded_at - interval 8 day")

    late = env.run("people_google")

    assert "after 8 days, and Google failed an offline user data job (UNKNOWN)" in late.warnings[0]
    assert late.removed == 1 and unconfirmed(env)[0] == 1  # this run's own removal job
    assert sha256_hex("ann@example.com") not in members(env)


def test_a_job_google_does_not_report_stops_holding_an_opt_out_after_two_days(env: Any) -> None:
    google(env).newest_first = True
    env.run("people_google")
    google(env).jobs.clear()
    env.sql("delete from analytics.people where customer_id = 'c1'")
    assert env.run("people_google").error_summary == {"add_pending": 1}
    env.sql("update tidings.unconfirmed_deliveries set recorded_at = recorded_at - interval 50 hour")

    released = env.run("people_google")

    assert (released.status, released.removed) == ("success", 1)
    assert released.warnings[0].endswith("its members' opposite operations no longer wait for it")


def test_a_row_a_run_in_flight_failed_holds_its_removal_only_until_that_work_is_done(env: Any) -> None:
    """Ann's add was held in a run whose job (adding Dan) still runs, and again in the next run; she leaves. Which
    rows a run failed is not known once a later run failed them again, so her removal waits for that job: a delay,
    never a member left in the list."""
    removing_ann(env)  # the job runs for three status reads
    env.sql("insert into analytics.people values ('c1', 'ann@example.com'), ('c4', 'dan@example.com')")
    assert env.run("people_google").error_summary == {"removal_pending": 1}  # Dan goes, Ann waits
    assert env.run("people_google").error_summary == {"removal_pending": 1}
    env.sql("delete from analytics.people where customer_id = 'c1'")

    assert env.run("people_google").error_summary == {"add_pending": 1}
    members(env)
    gone = env.run("people_google")
    assert (gone.status, gone.removed) == ("success", 1)
    assert members(env) == hashed("bob@example.com", "cy@example.com", "dan@example.com")


def test_the_remove_job_of_a_run_whose_create_job_could_not_run_is_in_flight(env: Any) -> None:
    """Ann opts out and Dan joins; Google runs the remove job but refuses to run the create job. Ann's removal is
    acknowledged under its job; when she opts back in before Google processed it, her add waits for it."""
    google(env).newest_first = True
    env.run("people_google")
    members(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")
    env.sql("insert into analytics.people values ('c4', 'dan@example.com')")
    google(env).refused_runs["create"] = 1

    partial = env.run("people_google")

    assert (partial.status, partial.removed, partial.error_summary) == ("partial", 1, {"http_400": 1})
    assert unconfirmed(env) == (1, 1)
    env.sql("insert into analytics.people values ('c1', 'ann@example.com')")
    assert env.run("people_google").error_summary == {"removal_pending": 1}  # Dan goes now
    members(env)
    assert env.run("people_google").sent == 1
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com", "dan@example.com")


def test_a_failed_part_is_not_dropped_while_the_status_search_fails(env: Any, monkeypatch: Any) -> None:
    env.run("people_google")
    members(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")
    env.sql("insert into analytics.people values ('c4', 'dan@example.com')")
    env.run("people_google")
    removal, adding = (job for job in google(env).jobs.values() if job["status"] == "RUNNING")
    removal["status"], adding["polls"] = "FAILED", -1_000
    env.sql("update tidings.unconfirmed_deliveries set recorded_at = recorded_at - interval 8 day")
    with monkeypatch.context() as revoked:
        revoked.setattr(google(env), "developer_token", "revoked")
        kept = env.run("people_google")
    assert "could not be checked: Google's status search failed (HTTP 403)" in kept.warnings[0]
    assert unconfirmed(env)[0] == 1

    redone = env.run("people_google")

    assert "Google failed an offline user data job (UNKNOWN)" in redone.warnings[0] and redone.removed == 1
    assert sha256_hex("ann@example.com") not in members(env)


def test_a_member_of_a_dead_run_whose_row_a_later_run_failed_waits_for_that_runs_job(env: Any) -> None:
    """A run adds Ann in a job and dies before committing; the next run fails Ann's row (Google refuses its job);
    Ann leaves: the dead run's job may still add her, so her removal waits for it."""
    google(env).newest_first = True
    env.sql("delete from analytics.people where customer_id = 'c1'")
    env.run("people_google")
    members(env)
    env.sql("insert into analytics.people values ('c1', 'ann@example.com')")
    died = env.run_in_subprocess("people_google", TIDINGS_CRASH_AFTER_BATCHES="1", TIDINGS_CRASH_BEFORE_COMMIT="1")
    assert died.returncode == 137, died.stderr
    google(env).refused_runs["create"] = 1
    assert env.run("people_google").error_summary == {"http_400": 1}
    env.sql("delete from analytics.people where customer_id = 'c1'")

    assert env.run("people_google").error_summary == {"add_pending": 1}
    members(env)
    assert env.run("people_google").removed == 1
    assert members(env) == hashed("bob@example.com", "cy@example.com")


def test_remove_all_says_until_google_has_confirmed_every_removal(env: Any) -> None:
    """Emptying a list: a run that ends `success` has only handed Google its jobs. Each run says how many runs'
    work is unconfirmed; a later run sends again what Google failed, and the one after finds nothing left."""
    env.run("people_google")
    members(env)
    google(env).failing_jobs["remove"] = 1

    first = env.run("people_google", remove_all=True)
    assert (first.status, first.removed) == ("success", 3)
    assert any(
        w.startswith("1 run(s) of this sync have work the destination has not confirmed") for w in first.warnings
    )
    assert members(env)  # Google failed the job, having applied part of it

    again = env.run("people_google", remove_all=True)
    assert (again.status, again.removed) == ("success", 3)
    assert members(env) == set()
    done = env.run("people_google", remove_all=True)
    assert done.removed == 0 and not any("not confirmed" in w for w in done.warnings)
    assert unconfirmed(env) == (0, 0)


def test_forgetting_a_removed_google_sync_counts_the_work_google_has_not_confirmed(env: Any, capsys: Any) -> None:
    """Ann's removal is in a job Google has not processed: `tidings forget` counts it among the unsettled work it
    gives up, beside the run it belongs to."""
    removing_ann(env)
    assert unconfirmed(env) == (1, 1)  # the run's jobs, and Ann's removal in them
    models = env.dbt_project_dir / "models" / "_people.yml"
    models.write_text(models.read_text().replace("- name: people_google\n", "- name: people_google_now\n"))

    assert cli(env, "forget", "people_google") == 0
    assert "2 member(s), 0 message(s), 2 unsettled, 0 row error(s)" in capsys.readouterr().out
    assert cli(env, "forget", "people_google", "--yes") == 0
    assert "forgot people_google: 2 members, 2 unsettled, 0 errors" in capsys.readouterr().out
    assert unconfirmed(env) == (0, 0)


def point_people_google_at(env: Any, user_list: str) -> None:
    models = env.dbt_project_dir / "models" / "_people.yml"
    declared = "- name: people_google\n              destination: google_ads\n              mode: mirror\n"
    text = models.read_text()
    start = text.index(declared)
    target = text.index("user_list_id: ", start)
    end = text.index("}", target)
    models.write_text(f"{text[:target]}user_list_id: {user_list}{text[end:]}")


def test_a_list_emptied_for_a_move_is_left_once_google_has_confirmed_its_removals(env: Any) -> None:
    """Moving an audience to another list: until Google confirms the old list's removal job (and the sync would
    send again what it failed), the state still owes the old list, so the sync cannot point elsewhere yet."""
    env.run("people_google")
    members(env)
    assert env.run("people_google", remove_all=True).removed == 3
    point_people_google_at(env, "people_b")

    early = env.run("people_google", add_back=True)

    assert early.status == "blocked" and early.sent == 0
    assert "holds 0 member(s) and 1 run(s) of work not confirmed yet" in early.message
    point_people_google_at(env, "people")
    members(env)  # Google processes the removal job
    confirmed = env.run("people_google", remove_all=True)
    assert confirmed.removed == 0 and not any("not confirmed" in w for w in confirmed.warnings)
    assert unconfirmed(env) == (0, 0)
    point_people_google_at(env, "people_b")
    moved = env.run("people_google", add_back=True)
    assert (moved.status, moved.sent) == ("success", 3)
    assert google(env).members("customers/1234567890/userLists/people_b") == hashed(
        "ann@example.com", "bob@example.com", "cy@example.com"
    )
    assert members(env) == set()


def die_running_jobs(env: Any, verb: str, *, ran: bool) -> None:
    """A run of `people_google` whose process dies waiting for the `:run` of its `verb` job (having run every job
    before it), which Google runs (`ran`) or never received."""
    google(env).held_runs[verb] = ran
    child = env.start_in_subprocess("people_google")
    try:
        assert google(env).run_held.wait(timeout=60), env.child_stderr.read_text()
        child.kill()
        child.wait(timeout=60)
    finally:
        google(env).release_held_runs()


def die_before_settling(env: Any) -> None:
    """A run of `people_google` that ran its job and died before committing its members (only written ahead)."""
    died = env.run_in_subprocess("people_google", TIDINGS_CRASH_AFTER_BATCHES="1", TIDINGS_CRASH_BEFORE_COMMIT="1")
    assert died.returncode == 137, died.stderr


def die_waiting_for_the_create_run(env: Any) -> None:
    """A run of `people_google` that died waiting for the answer to its job's `:run`, which Google ran."""
    die_running_jobs(env, "create", ran=True)


@pytest.mark.parametrize("die", [die_before_settling, die_waiting_for_the_create_run])
def test_a_member_a_dead_runs_job_adds_is_removed_only_once_that_job_is_done(env: Any, die: Any) -> None:
    """The run dies before committing its members, after its job's `:run` or waiting for its answer. Ann opts out
    before Google processed that job: the job is on record, so her removal waits for it instead of racing it
    (processed first, the removal would leave her in the audience)."""
    google(env).newest_first = True
    die(env)
    assert unconfirmed(env) == (1, 0) and env.sql("select count(*) from tidings.sync_state") == [(0,)]
    env.sql("delete from analytics.people where customer_id = 'c1'")

    held = env.run("people_google")

    assert (held.sent, held.removed, held.error_summary) == (2, 0, {"add_pending": 1})
    members(env)
    assert env.run("people_google").removed == 1
    assert members(env) == hashed("bob@example.com", "cy@example.com")


def test_a_run_that_died_between_its_two_jobs_holds_the_removal_that_ran(env: Any) -> None:
    """Ann leaves and Dan joins; the run dies after running the remove job, before the create job's `:run`. Ann
    comes back before Google processed her removal: her add waits for it, and once Google has it done the run is
    sent again, since its create job never ran."""
    google(env).newest_first = True
    env.run("people_google")
    members(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")
    env.sql("insert into analytics.people values ('c4', 'dan@example.com')")
    die_running_jobs(env, "create", ran=False)
    assert unconfirmed(env) == (1, 1)
    env.sql("insert into analytics.people values ('c1', 'ann@example.com')")

    held = env.run("people_google")

    assert (held.sent, held.error_summary) == (1, {"removal_pending": 1})  # Dan goes now
    assert "Google never ran an offline user data job" in held.warnings[0]
    assert members(env) == hashed("bob@example.com", "cy@example.com", "dan@example.com")
    again = env.run("people_google")
    assert (again.status, again.sent, again.removed) == ("success", 1, 0)
    assert "its 0 members and 0 removals still current are planned again" in again.warnings[0]
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com", "dan@example.com")
    assert unconfirmed(env) == (1, 0)  # the job adding Ann back, until the next run confirms it


def test_a_run_that_cannot_record_its_jobs_runs_none(env: Any, monkeypatch: Any) -> None:
    """The jobs are recorded before Google is asked to run them: when that record cannot be written, no job runs,
    and the next run sends every member."""

    def warehouse_fails(*args: Any, **kwargs: Any) -> None:
        raise duckdb.IOException("disk full")

    with monkeypatch.context() as failing, pytest.raises(duckdb.IOException):
        failing.setattr(state, "record_handover", warehouse_fails)
        env.run("people_google")

    assert env.sql("select status from tidings.sync_runs") == [("failed",)]
    assert {job["status"] for job in google(env).jobs.values()} == {"PENDING"}
    assert unconfirmed(env) == (0, 0)
    assert env.run("people_google").sent == 3
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")


def test_a_removal_whose_answer_was_lost_holds_the_members_return_like_one_acknowledged(env: Any) -> None:
    """Ann and Bob leave; the answer to the request adding one removal to the job is lost, so that row fails, but
    Google has it and the job runs with the other. Both come back before Google processed the job: both adds wait
    for it (sent now, the one whose removal failed could be undone by that job)."""
    google(env).newest_first = True
    env.run("people_google_one_by_one")
    members(env)
    env.sql("delete from analytics.people where customer_id in ('c1', 'c2')")
    google(env).lost_answers["addOperations"] = 1
    lost = env.run("people_google_one_by_one")
    assert (lost.removed, lost.error_summary) == (1, {"http_503": 1})
    assert unconfirmed(env) == (1, 2)
    env.sql("insert into analytics.people values ('c1', 'ann@example.com'), ('c2', 'bob@example.com')")

    held = env.run("people_google_one_by_one")

    assert (held.sent, held.error_summary) == (0, {"removal_pending": 2})
    assert members(env) == hashed("cy@example.com")
    assert env.run("people_google_one_by_one").sent == 2
    assert members(env) == hashed("ann@example.com", "bob@example.com", "cy@example.com")


def test_a_first_address_stays_held_after_its_member_moved_left_and_came_back(env: Any) -> None:
    """Ann's first address is in a job Google still processes. She moves (that address's retirement waits), leaves
    (the removal of her new address goes, and her state with it) and comes back with a third address: the first
    one's retirement still waits for the job adding it, and her third address with it. Sent at once, Google could
    process the retirement first, and the job would leave an address she no longer has in the list."""
    google(env).newest_first = True
    env.run("people_google")
    env.sql("update analytics.people set email = 'ann.new@example.com' where customer_id = 'c1'")
    assert env.run("people_google").error_summary == {"add_pending": 2}
    env.sql("delete from analytics.people where customer_id = 'c1'")
    env.run("people_google")
    env.sql("insert into analytics.people values ('c1', 'ann.third@example.com')")

    back = env.run("people_google")

    assert (back.sent, back.error_summary) == (0, {"add_pending": 2})  # her new address goes with the retirement
    for _ in range(2):
        members(env)
        env.run("people_google")
    assert members(env) == hashed("ann.third@example.com", "bob@example.com", "cy@example.com")
