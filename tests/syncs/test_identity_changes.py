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
"""

DESTINATIONS = """
    meta_ads:
      type: meta_custom_audiences
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/meta/v21.0"
      access_token_env: TIDINGS_META_ACCESS_TOKEN
      max_retries: 0
    mailchimp:
      type: mailchimp
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/mailchimp/3.0"
      api_key_env: TIDINGS_MAILCHIMP_API_KEY
"""


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

    assert (retried.planned.change, retried.planned.remove, retried.removed, retried.failed) == (0, 1, 1, 0)
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
