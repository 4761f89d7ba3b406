"""A mirror to an identity-keyed destination (an ad audience, an ESP list) retires a member's previous identity
when a change gives it other identifiers, so an old email never stays in an audience after the customer moved
on, or opted out."""

from __future__ import annotations

from typing import Any

from syncs.engine import plan_sync
from syncs.identity import meta_phone, sha256_hex

AUDIENCE = "23850000000000077"

PEOPLE_YAML = f"""
models:
  - name: people
    config:
      meta:
        tidings:
          syncs:
            - name: people_meta
              destination: meta_ads
              mode: mirror
              primary_key: customer_id
              target: {{audience_id: "{AUDIENCE}"}}
              mapping: {{EMAIL: email, PHONE: phone, COUNTRY: country}}
              guards: {{max_removal_share: 1.0}}
            - name: people_mailchimp
              destination: mailchimp
              mode: mirror
              primary_key: customer_id
              target: {{list_id: lifecycle, segment_id: "42"}}
              mapping: {{email: email, FNAME: first_name}}
              guards: {{max_removal_share: 1.0}}
            - name: people_google
              destination: google_ads
              mode: mirror
              primary_key: customer_id
              target: {{customer_id: "123-456-7890", user_list_id: people}}
              mapping: {{email: email}}
              guards: {{max_removal_share: 1.0}}
"""

GOOGLE_DESTINATION = """
    google_ads:
      type: google_customer_match
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/google-ads/v21"
      access_token_env: TIDINGS_GOOGLE_ADS_ACCESS_TOKEN
      developer_token_env: TIDINGS_GOOGLE_ADS_DEVELOPER_TOKEN
"""

DESTINATIONS = (
    """
    meta_ads:
      type: meta_custom_audiences
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/meta/v21.0"
      access_token_env: TIDINGS_META_ACCESS_TOKEN
      max_retries: 0
    mailchimp:
      type: mailchimp
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/mailchimp/3.0"
      api_key_env: TIDINGS_MAILCHIMP_API_KEY"""
    + GOOGLE_DESTINATION
)


def with_people(env: Any) -> Any:
    (env.dbt_project_dir / "models" / "_people.yml").write_text(PEOPLE_YAML)
    with env.destinations_file.open("a") as destinations:
        destinations.write(DESTINATIONS)
    env.sql(
        """create table analytics.people as select * from (values
            ('c1', 'ann@example.com', '+1 (415) 555-2671', 'US', 'Ann'),
            ('c2', 'bob@example.com', '+1 (212) 555-0142', 'US', 'Bob')
        ) t(customer_id, email, phone, country, first_name)"""
    )
    return env


def set_people(env: Any, column: str, value: str, customer_id: str) -> None:
    env.sql(f"update analytics.people set {column} = ? where customer_id = ?", [value, customer_id])


def meta_member(email: str, phone: str) -> tuple[tuple[str, str], ...]:
    values = {"COUNTRY": sha256_hex("us"), "EMAIL": sha256_hex(email), "PHONE": sha256_hex(meta_phone(phone, "US"))}
    return tuple(sorted(values.items()))


def audience(env: Any) -> set[tuple[tuple[str, str], ...]]:
    return env.sandbox.app("meta").audiences.get(AUDIENCE, set())


def test_a_new_email_replaces_the_old_one_in_the_audience(sync_env):
    env = with_people(sync_env)
    assert env.run("people_meta").sent == 2
    set_people(env, "email", "ann.new@example.com", "c1")

    preview = plan_sync("people_meta", project=env.project(), warehouse=env.warehouse)
    assert (preview.counts.change, preview.counts.remove) == (1, 1)
    assert sorted(row["action"] for row in preview.preview) == ["change", "retire"]
    result = env.run("people_meta")

    assert (result.status, result.sent, result.removed) == ("success", 1, 1)
    assert audience(env) == {
        meta_member("ann.new@example.com", "+1 (415) 555-2671"),
        meta_member("bob@example.com", "+1 (212) 555-0142"),
    }
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]
    assert env.run("people_meta").planned.remove == 0  # the retirement is done, not repeated

    env.sql("delete from analytics.people where customer_id = 'c1'")  # Ann opts out
    assert env.run("people_meta").removed == 1
    assert audience(env) == {meta_member("bob@example.com", "+1 (212) 555-0142")}


def test_a_change_only_in_case_or_outer_spaces_retires_nothing(sync_env):
    env = with_people(sync_env)
    env.run("people_meta")
    set_people(env, "email", " Ann@Example.COM ", "c1")

    result = env.run("people_meta")

    assert (result.planned.change, result.planned.remove, result.sent) == (1, 0, 1)
    assert meta_member("ann@example.com", "+1 (415) 555-2671") in audience(env)


def test_a_difference_the_destination_normalizes_away_keeps_the_member(sync_env):
    """The phone is the same number after E.164 normalization: the retirement goes first, then the upsert adds
    the member back, so it ends up in the audience."""
    env = with_people(sync_env)
    env.run("people_meta")
    set_people(env, "phone", "14155552671", "c1")

    result = env.run("people_meta")

    assert (result.planned.change, result.planned.remove, result.failed) == (1, 1, 0)
    assert meta_member("ann@example.com", "+1 (415) 555-2671") in audience(env)
    assert len(audience(env)) == 2
    assert [u["method"] for u in env.sandbox.app("meta").uploads[-2:]] == ["DELETE", "POST"]


def test_a_failed_retirement_is_retried_until_the_destination_acknowledges_it(sync_env):
    env = with_people(sync_env)
    env.run("people_meta")
    set_people(env, "email", "ann.new@example.com", "c1")
    env.sandbox.app("meta").faults.update(burst_5xx=1)  # the retirement goes first and fails

    failed = env.run("people_meta")

    assert (failed.status, failed.sent, failed.failed) == ("partial", 1, 1)
    assert meta_member("ann@example.com", "+1 (415) 555-2671") in audience(env)
    [(key, code)] = env.sql("select row_key, code from tidings.row_errors")
    assert key.startswith("c1#retired:") and code.startswith("http_5")

    retried = env.run("people_meta")  # the new email is in state; only the write-ahead knows the old one

    # Ann is sent again after the removal, in case the two addresses were one identity to the destination.
    assert (retried.planned.change, retried.planned.remove, retried.removed, retried.failed) == (1, 1, 1, 0)
    assert audience(env) == {
        meta_member("ann.new@example.com", "+1 (415) 555-2671"),
        meta_member("bob@example.com", "+1 (212) 555-0142"),
    }
    assert env.sql("select count(*) from tidings.row_errors") == [(0,)]
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]


def test_an_esp_segment_follows_a_changed_email(sync_env):
    env = with_people(sync_env)
    env.run("people_mailchimp")
    set_people(env, "email", "ann.new@example.com", "c1")
    set_people(env, "first_name", "Annie", "c2")  # not an identity field: no retirement

    result = env.run("people_mailchimp")

    assert (result.planned.change, result.planned.remove, result.failed) == (2, 1, 0)
    assert env.sandbox.app("mailchimp").segment("lifecycle", "42") == {"ann.new@example.com", "bob@example.com"}


def test_a_crash_after_the_retirement_was_acknowledged_loses_nothing(sync_env):
    env = with_people(sync_env)
    env.run("people_meta")
    set_people(env, "email", "ann.new@example.com", "c1")

    crashed = env.run_in_subprocess("people_meta", TIDINGS_CRASH_BEFORE_COMMIT="1")  # batch 1: the retirement

    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert audience(env) == {meta_member("bob@example.com", "+1 (212) 555-0142")}  # removed, upsert never sent
    resumed = env.run("people_meta")
    assert (resumed.status, resumed.failed) == ("success", 0)
    assert audience(env) == {
        meta_member("ann.new@example.com", "+1 (415) 555-2671"),
        meta_member("bob@example.com", "+1 (212) 555-0142"),
    }
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]
    assert env.run("people_meta").planned.remove == 0


def add_person(env: Any, customer_id: str, email: str) -> None:
    env.sql("insert into analytics.people values (?, ?, '+1 (617) 555-0199', 'US', 'Cy')", [customer_id, email])


def segment(env: Any) -> set[str]:
    return env.sandbox.app("mailchimp").segment("lifecycle", "42")


def test_a_household_email_stays_while_one_customer_still_has_it(sync_env):
    """Two customers share an email the ESP knows as one member: the one who leaves must not take it out of the
    segment for the one who stays. The last one to leave removes it."""
    env = with_people(sync_env)
    add_person(env, "c3", "cy@example.com")
    set_people(env, "email", " ANN@example.com", "c2")  # the same identity once trimmed and lower-cased
    env.run("people_mailchimp")
    assert segment(env) == {"ann@example.com", "cy@example.com"}

    env.sql("delete from analytics.people where customer_id = 'c1'")
    dry = plan_sync("people_mailchimp", project=env.project(), warehouse=env.warehouse)
    assert (dry.counts.remove, dry.skipped) == (0, {"shared_identity": 1})
    left = env.run("people_mailchimp")

    assert (left.status, left.removed, left.skipped) == ("success", 0, 1)
    assert segment(env) == {"ann@example.com", "cy@example.com"}
    assert env.sql("select row_key from tidings.sync_state where sync_name = 'people_mailchimp' order by 1") == [
        ("c2",),
        ("c3",),
    ]
    assert env.run("people_mailchimp").planned.remove == 0  # released for good, not planned again

    env.sql("delete from analytics.people where customer_id = 'c2'")
    assert env.run("people_mailchimp").removed == 1
    assert segment(env) == {"cy@example.com"}


def test_moving_away_from_a_household_email_keeps_it_for_the_others(sync_env):
    env = with_people(sync_env)
    set_people(env, "email", "ann@example.com", "c2")
    env.run("people_mailchimp")
    set_people(env, "email", "ann.work@example.com", "c1")  # c1 moves on; c2 keeps the household address

    result = env.run("people_mailchimp")

    assert (result.planned.change, result.planned.remove, result.skipped, result.failed) == (1, 0, 1, 0)
    assert segment(env) == {"ann@example.com", "ann.work@example.com"}
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]


def test_an_email_passed_to_a_new_customer_in_the_same_run_stays(sync_env):
    """c1 leaves and c3 joins with c1's email: the removal goes first and the add after, so the member stays."""
    env = with_people(sync_env)
    env.run("people_mailchimp")
    env.sql("delete from analytics.people where customer_id = 'c1'")
    add_person(env, "c3", "ann@example.com")

    result = env.run("people_mailchimp")

    assert (result.planned.add, result.planned.remove, result.removed, result.failed) == (1, 1, 1, 0)
    assert segment(env) == {"ann@example.com", "bob@example.com"}


def test_a_removal_sharing_only_part_of_an_ad_identity_is_sent(sync_env):
    """Meta matches on the whole hashed tuple; a leaving customer who shares only the email (another phone) is
    removed, while one sharing the whole tuple is released."""
    env = with_people(sync_env)
    add_person(env, "c3", "ann@example.com")  # Ann's email, another phone
    add_person(env, "c4", "ann@example.com")
    set_people(env, "phone", "+1 (415) 555-2671", "c4")  # Ann's whole identity
    env.run("people_meta")
    assert len(audience(env)) == 3

    env.sql("delete from analytics.people where customer_id in ('c3', 'c4')")
    result = env.run("people_meta")

    assert (result.planned.remove, result.removed, result.skipped) == (1, 1, 1)
    assert audience(env) == {
        meta_member("ann@example.com", "+1 (415) 555-2671"),
        meta_member("bob@example.com", "+1 (212) 555-0142"),
    }


def test_a_household_phone_written_another_way_stays_in_the_ad_audience(sync_env):
    """c3 has Ann's email and her phone in national format: Meta holds both as one member (the same E.164
    number, hashed), so c3 leaving must not remove Ann. A phone that only ends in the same digits is another
    identity, and its removal is sent."""
    env = with_people(sync_env)
    add_person(env, "c3", "ann@example.com")
    set_people(env, "phone", "415.555.2671", "c3")  # Ann's number (COUNTRY US)
    add_person(env, "c4", "ann@example.com")
    set_people(env, "phone", "+1 212 555 2671", "c4")  # another number with the same last seven digits
    env.run("people_meta")
    assert len(audience(env)) == 3

    env.sql("delete from analytics.people where customer_id in ('c3', 'c4')")
    dry = plan_sync("people_meta", project=env.project(), warehouse=env.warehouse)
    assert (dry.counts.remove, dry.skipped) == (1, {"shared_identity": 1})
    result = env.run("people_meta")

    assert (result.status, result.removed, result.skipped) == ("success", 1, 1)
    assert audience(env) == {
        meta_member("ann@example.com", "+1 (415) 555-2671"),
        meta_member("bob@example.com", "+1 (212) 555-0142"),
    }
    assert env.run("people_meta").planned.remove == 0  # released for good


def google_members(env: Any) -> set[str]:
    return env.sandbox.app("google_ads").members("customers/1234567890/userLists/people")


def test_a_gmail_address_with_other_dots_stays_in_the_customer_match_list(sync_env):
    """Google ignores dots in a Gmail address's local part: c3's `annlee@gmail.com` is Ann's `Ann.Lee@gmail.com`
    there, so c3 leaving is released; when Ann leaves too, the address is removed."""
    env = with_people(sync_env)
    set_people(env, "email", "Ann.Lee@gmail.com", "c1")
    add_person(env, "c3", "annlee@gmail.com")
    env.run("people_google")
    assert google_members(env) == {sha256_hex("annlee@gmail.com"), sha256_hex("bob@example.com")}

    env.sql("delete from analytics.people where customer_id = 'c3'")
    left = env.run("people_google")

    assert (left.status, left.removed, left.skipped) == ("success", 0, 1)
    assert google_members(env) == {sha256_hex("annlee@gmail.com"), sha256_hex("bob@example.com")}
    env.sql("delete from analytics.people where customer_id = 'c1'")
    assert env.run("people_google").removed == 1
    assert google_members(env) == {sha256_hex("bob@example.com")}


def test_a_failed_removal_is_released_once_another_member_holds_the_identity(sync_env):
    env = with_people(sync_env)
    env.run("people_meta")
    env.sql("delete from analytics.people where customer_id = 'c1'")
    add_person(env, "c3", "ann@example.com")
    set_people(env, "phone", "+1 (415) 555-2671", "c3")  # Ann's whole identity, new in this run
    env.sandbox.app("meta").faults.update(burst_5xx=1)  # removals go first: c1's fails, c3's add succeeds

    failed = env.run("people_meta")

    assert (failed.sent, failed.failed) == (1, 1)
    assert env.sql("select row_key from tidings.row_errors") == [("c1",)]
    retried = env.run("people_meta")  # c3 is settled with Ann's identity now: c1 is released, not removed

    assert (retried.status, retried.planned.remove, retried.removed, retried.skipped) == ("success", 0, 0, 1)
    assert meta_member("ann@example.com", "+1 (415) 555-2671") in audience(env)
    assert env.sql("select count(*) from tidings.row_errors") == [(0,)]
    assert env.sql("select row_key from tidings.sync_state where sync_name = 'people_meta' order by 1") == [
        ("c2",),
        ("c3",),
    ]


def test_a_clock_gone_back_never_voids_the_write_ahead(sync_env):
    """The last commit is stamped a day ahead of the clock (it went back since). A run that crashed after Meta
    added Ann's new email, before its commit, must still leave the planner knowing that email, so her opt-out
    removes it."""
    env = with_people(sync_env)
    env.run("people_meta")
    env.sql("update tidings.sync_state set synced_at = synced_at + interval 1 day")
    set_people(env, "email", "ann.new@example.com", "c1")

    crashed = env.run_in_subprocess("people_meta", TIDINGS_CRASH_BEFORE_COMMIT="1", TIDINGS_CRASH_AFTER_BATCHES="2")

    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert meta_member("ann.new@example.com", "+1 (415) 555-2671") in audience(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")  # Ann opts out
    result = env.run("people_meta")

    assert (result.status, result.failed) == ("success", 0)
    assert audience(env) == {meta_member("bob@example.com", "+1 (212) 555-0142")}
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]


def rename_people(env: Any, old: str, new: str, *, earlier: str | None = None) -> None:
    models = env.dbt_project_dir / "models" / "_people.yml"
    declared = f"\n              renamed_from: {earlier}" if earlier else ""
    models.write_text(PEOPLE_YAML.replace(f"- name: {old}\n", f"- name: {new}{declared}\n"))


def test_a_late_renamed_from_retires_the_identity_the_earlier_name_left(sync_env):
    """The sync ran under its new name before its earlier name was declared, and a member's email changed in
    between: the audience holds both of her identities, and her earlier one is only in the earlier name's state.
    Carrying it over retires that identity and sends the member again after it, as an identity change does (Bob's
    phone, only written another way, is removed and added back), so her opt-out later takes her out entirely."""
    env = with_people(sync_env)
    env.run("people_meta")
    rename_people(env, "people_meta", "people_ads")
    set_people(env, "email", "ann.new@example.com", "c1")
    set_people(env, "phone", "212.555.0142", "c2")  # Bob's phone written another way: the same identity at Meta
    assert env.run("people_ads").sent == 2  # started afresh: both members again
    assert meta_member("ann@example.com", "+1 (415) 555-2671") in audience(env)

    rename_people(env, "people_meta", "people_ads", earlier="people_meta")
    caught_up = env.run("people_ads")

    assert (caught_up.status, caught_up.removed, caught_up.sent) == ("success", 2, 2)  # retired, then sent again
    assert audience(env) == {
        meta_member("ann.new@example.com", "+1 (415) 555-2671"),
        meta_member("bob@example.com", "+1 (212) 555-0142"),
    }
    env.sql("delete from analytics.people where customer_id = 'c1'")  # Ann opts out
    assert env.run("people_ads").removed == 1
    assert audience(env) == {meta_member("bob@example.com", "+1 (212) 555-0142")}
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]


def test_a_late_renamed_from_retires_the_identity_when_the_new_name_only_wrote_the_member_ahead(sync_env):
    """The new name's first run failed: it holds Ann only in its write-ahead log, with her new address."""
    env = with_people(sync_env)
    env.run("people_meta")
    rename_people(env, "people_meta", "people_ads")
    set_people(env, "email", "ann.new@example.com", "c1")
    env.sandbox.app("meta").faults.update(burst_5xx=1)
    assert env.run("people_ads").status == "failed"
    rename_people(env, "people_meta", "people_ads", earlier="people_meta")

    caught_up = env.run("people_ads")

    assert (caught_up.status, caught_up.removed) == ("success", 1)
    assert meta_member("ann@example.com", "+1 (415) 555-2671") not in audience(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")
    env.run("people_ads")
    assert audience(env) == {meta_member("bob@example.com", "+1 (212) 555-0142")}


def test_a_late_renamed_from_retires_every_address_the_earlier_name_may_have_left(sync_env):
    """After the new name settled Ann's second address, an old deployment ran the earlier name once more and
    failed, leaving her third address written ahead: every address but the current one goes."""
    env = with_people(sync_env)
    env.run("people_meta")
    rename_people(env, "people_meta", "people_ads")
    set_people(env, "email", "ann.b@example.com", "c1")
    env.run("people_ads")
    (env.dbt_project_dir / "models" / "_people.yml").write_text(PEOPLE_YAML)  # the old deployment
    set_people(env, "email", "ann.c@example.com", "c1")
    env.sandbox.app("meta").faults.update(burst_5xx=2)
    assert env.run("people_meta").status == "failed"
    rename_people(env, "people_meta", "people_ads", earlier="people_meta")
    set_people(env, "email", "ann.d@example.com", "c1")

    caught_up = env.run("people_ads")

    assert caught_up.status == "success" and caught_up.removed == 3  # ann@, ann.c@ carried over; ann.b@
    decision = "would remove 1 of 2 members (50%; limit 100%), besides 2 retirements carried over from an earlier name"
    assert decision in caught_up.guard_decisions[0]
    assert audience(env) == {
        meta_member("ann.d@example.com", "+1 (415) 555-2671"),
        meta_member("bob@example.com", "+1 (212) 555-0142"),
    }
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]


def test_a_late_renamed_from_holds_a_retirement_behind_the_earlier_names_google_job(sync_env):
    """The earlier name's job adding Ann's old address is still processing when the carry-over retires that
    address: Google may process the two in either order, so the retirement waits for the job (`add_pending`)."""
    env = with_people(sync_env)
    google = env.sandbox.app("google_ads")
    env.run("people_google")  # its job, adding ann@, is not processed yet
    rename_people(env, "people_google", "people_google_v2")
    set_people(env, "email", "ann.new@example.com", "c1")
    env.run("people_google_v2")
    rename_people(env, "people_google", "people_google_v2", earlier="people_google")

    caught_up = env.run("people_google_v2")

    assert caught_up.error_summary.get("add_pending", 0) >= 1 and caught_up.removed == 0
    google.newest_first = True  # the order least favourable to a removal sent too early
    google_members(env)
    settled = env.run("people_google_v2")  # the earlier job is done: the retirement goes out
    assert settled.removed >= 1
    google_members(env)
    env.sql("delete from analytics.people where customer_id = 'c1'")
    env.run("people_google_v2")
    google_members(env)
    env.run("people_google_v2")
    assert google_members(env) == {sha256_hex("bob@example.com")}


def test_a_late_renamed_from_holds_an_opt_out_behind_the_earlier_names_job_adding_the_same_address(sync_env):
    """Both names hold Ann with the same address, and the earlier name's job adding it is still processing (the
    new name's is done) when she opts out: her removal waits for that job, which would otherwise put her back."""
    env = with_people(sync_env)
    google = env.sandbox.app("google_ads")
    env.run("people_google")
    rename_people(env, "people_google", "people_google_v2")
    env.run("people_google_v2")
    google.finish_newest_job()  # the new name's job is done, the earlier name's still processing
    rename_people(env, "people_google", "people_google_v2", earlier="people_google")
    env.sql("delete from analytics.people where customer_id = 'c1'")

    opted_out = env.run("people_google_v2")

    # Held: her removal and the retirement of her address, and Bob's retirement and change (his address too is in
    # that job: he is removed and sent again once it is done).
    assert opted_out.removed == 0 and opted_out.error_summary == {"add_pending": 4}
    google.newest_first = True
    google_members(env)  # the earlier job is done now
    for _ in range(3):  # removals go; Bob's add waits a run for the job removing his address (`removal_pending`)
        env.run("people_google_v2")
        google_members(env)
    assert google_members(env) == {sha256_hex("bob@example.com")}
    assert env.sql("select count(*) from tidings.pending_members") == [(0,)]


def test_a_failed_retirement_of_an_address_written_another_way_sends_the_member_again(sync_env):
    """Bob's phone is written another way: the same identity at Meta. The retirement of the old spelling fails
    while his re-send succeeds; when the retirement goes out next run, it removes his identity, so he is sent again
    after it."""
    env = with_people(sync_env)
    env.run("people_meta")
    set_people(env, "phone", "212.555.0142", "c2")
    env.sandbox.app("meta").faults.update(burst_5xx=1)  # the first request, the retirement, fails
    first = env.run("people_meta")
    assert (first.removed, first.sent) == (0, 1)

    again = env.run("people_meta")

    assert (again.removed, again.sent) == (1, 1)
    assert meta_member("bob@example.com", "+1 (212) 555-0142") in audience(env)
    assert env.run("people_meta").planned.change == 0
