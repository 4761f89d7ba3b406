"""A sync whose mode changes in place keeps its state: a mirror that was an upsert sync takes over the members
it added, and removes those whose identifiers it knows."""

from __future__ import annotations

from syncs.engine import plan_sync
from tests.syncs.test_identity_changes import segment, set_people, with_people
from tests.syncs.test_sync_names import members

# (models YAML file, the sync's declaration up to its mode) of the syncs whose mode the tests change
AUDIENCE_MIRROR = ("_audiences.yml", "- name: audience_mirror\n              destination: hooks\n")
PEOPLE_MAILCHIMP = ("_people.yml", "- name: people_mailchimp\n              destination: mailchimp\n")


def set_mode(env, sync: tuple[str, str], before: str, after: str) -> None:
    models_file, declaration = sync
    models = env.dbt_project_dir / "models" / models_file
    text = models.read_text()
    declared = f"{declaration}              mode: {before}\n"
    assert declared in text
    models.write_text(text.replace(declared, f"{declaration}              mode: {after}\n"))


def fields_on_record(env, sync: str = "audience_mirror") -> tuple[int, int]:
    """(members in the sync's state, of which with the fields last sent)."""
    (counts,) = env.sql("select count(*), count(row_fields) from tidings.sync_state where sync_name = ?", [sync])
    return counts


def removed_keys(env) -> list[str]:
    return sorted(d["key"] for d in env.webhook().deliveries if d["operation"] == "remove")


def test_a_sync_that_becomes_a_mirror_records_its_members_and_reports_those_it_cannot_remove(sync_env):
    """Upsert keeps no identifiers. Members that left while the sync was an upsert sync cannot be removed: the
    first mirror run says how many and drops them from the state, instead of failing. Members still in the model
    are taken over without a send (the hash shows the destination has the model's fields), a changed one is sent;
    from then on the mirror removes members who leave, with the identifiers sent to them."""
    set_mode(sync_env, AUDIENCE_MIRROR, "mirror", "upsert")
    assert sync_env.run("audience_mirror").sent == 100
    sync_env.fill_audience(90)  # c00090..c00099 leave while upsert keeps them in the destination
    assert sync_env.run("audience_mirror").sent == 0
    assert fields_on_record(sync_env) == (100, 0)
    sync_env.sql("update analytics.audience set first_name = 'Changed' where customer_id = 'c00003'")
    set_mode(sync_env, AUDIENCE_MIRROR, "upsert", "mirror")

    preview = plan_sync("audience_mirror", project=sync_env.project(), warehouse=sync_env.warehouse)
    assert (preview.counts.add, preview.counts.change, preview.counts.remove) == (0, 1, 0)
    assert (preview.counts.unchanged, preview.skipped) == (89, {"unrecorded_identity": 10})
    assert preview.warnings[0].startswith("10 member(s) that left the model were recorded without the identifiers")
    assert fields_on_record(sync_env) == (100, 0)  # a preview writes nothing

    taken_over = sync_env.run("audience_mirror")

    assert (taken_over.status, taken_over.sent, taken_over.removed, taken_over.failed) == ("success", 1, 0, 0)
    assert taken_over.skipped == 10 and taken_over.warnings == preview.warnings
    assert "remove them there" in taken_over.message
    assert len(members(sync_env, "audience")) == 100  # the ten stay in the destination, as the warning says
    assert fields_on_record(sync_env) == (90, 90)
    assert sync_env.run("audience_mirror").planned.unchanged == 90 and not removed_keys(sync_env)

    sync_env.fill_audience(85)
    gone = sync_env.run("audience_mirror")
    assert (gone.status, gone.removed, gone.warnings) == ("success", 5, [])
    assert removed_keys(sync_env) == [f"c{i:05d}" for i in range(85, 90)]
    removal = next(d for d in sync_env.webhook().deliveries if d["operation"] == "remove")
    assert removal["fields"]["email"] == f"{removal['key'].replace('c', 'user')}@example.com"


def test_a_mirror_that_ran_as_upsert_for_a_while_still_removes_the_members_it_knows(sync_env):
    """Fields recorded by the mirror stay through upsert runs that leave a member unchanged, so members who left
    meanwhile are removed once the sync is a mirror again; a member an upsert run changed has no fields on record."""
    sync_env.run("audience_mirror")
    set_mode(sync_env, AUDIENCE_MIRROR, "mirror", "upsert")
    sync_env.sql("update analytics.audience set score = 99 where customer_id in ('c00095', 'c00001')")
    assert sync_env.run("audience_mirror").sent == 2
    sync_env.sql("delete from analytics.audience where customer_id >= 'c00090'")
    assert sync_env.run("audience_mirror").removed == 0  # upsert never removes
    set_mode(sync_env, AUDIENCE_MIRROR, "upsert", "mirror")

    mirror = sync_env.run("audience_mirror")

    assert (mirror.status, mirror.removed, mirror.sent, mirror.skipped) == ("success", 9, 0, 1)
    assert removed_keys(sync_env) == [f"c{i:05d}" for i in range(90, 100) if i != 95]
    assert set(members(sync_env, "audience")) == {f"c{i:05d}" for i in range(90)} | {"c00095"}
    assert fields_on_record(sync_env) == (90, 90)  # c00001, changed by an upsert run, recorded without a send


def test_removing_every_member_of_a_former_upsert_sync_says_it_cannot(sync_env):
    """`--remove-all` reads no model, so nothing records the fields of members an upsert run added: none can be
    removed, and the run says so rather than failing."""
    set_mode(sync_env, AUDIENCE_MIRROR, "mirror", "upsert")
    sync_env.run("audience_mirror")
    set_mode(sync_env, AUDIENCE_MIRROR, "upsert", "mirror")

    emptied = sync_env.run("audience_mirror", remove_all=True)

    assert (emptied.status, emptied.removed, emptied.sent, emptied.skipped) == ("success", 0, 0, 100)
    assert emptied.warnings[0].startswith("100 member(s) that left the model were recorded without the identifiers")
    assert len(members(sync_env, "audience")) == 100 and not removed_keys(sync_env)
    assert fields_on_record(sync_env) == (0, 0)


def test_a_member_taken_over_keeps_a_household_email_another_member_leaves(sync_env):
    """The member a takeover records holds the shared email in this very run, though its state learns the fields
    only when the run delivers: the leaving member's removal is released, not sent."""
    env = with_people(sync_env)
    set_people(env, "email", "ann@example.com", "c2")
    env.run("people_mailchimp")
    set_mode(env, PEOPLE_MAILCHIMP, "mirror", "upsert")
    set_people(env, "first_name", "Bobby", "c2")
    assert env.run("people_mailchimp").sent == 1  # c2's fields are no longer on record
    set_mode(env, PEOPLE_MAILCHIMP, "upsert", "mirror")
    env.sql("delete from analytics.people where customer_id = 'c1'")

    result = env.run("people_mailchimp")

    assert (result.status, result.removed, result.skipped) == ("success", 0, 1)  # released as a shared identity
    assert segment(env) == {"ann@example.com"}


def test_a_takeover_warns_that_changed_members_may_keep_an_earlier_identity(sync_env):
    """A member changed before the mirror's first run has no identifiers on record to retire: if its email
    changed, the earlier one stays in the destination, and the run says so."""
    env = with_people(sync_env)
    set_mode(env, PEOPLE_MAILCHIMP, "mirror", "upsert")
    env.run("people_mailchimp")
    set_mode(env, PEOPLE_MAILCHIMP, "upsert", "mirror")
    set_people(env, "email", "ann.new@example.com", "c1")

    taken_over = env.run("people_mailchimp")

    assert (taken_over.status, taken_over.sent) == ("success", 1)
    assert taken_over.warnings == [
        "1 changed member(s) had no identifiers on record (sent in upsert mode): if their identifiers changed, the "
        "previous ones are not removed and stay in the destination; remove them there"
    ]
    assert segment(env) == {"ann@example.com", "ann.new@example.com", "bob@example.com"}
    assert not env.run("people_mailchimp").warnings  # recorded now: later changes retire as usual


def test_an_empty_model_does_not_drop_a_takeover_s_members(sync_env):
    """Members a mirror cannot remove are still under the empty-source guard: a broken upstream must not drop
    the whole audience from state."""
    set_mode(sync_env, AUDIENCE_MIRROR, "mirror", "upsert")
    sync_env.run("audience_mirror")
    set_mode(sync_env, AUDIENCE_MIRROR, "upsert", "mirror")
    sync_env.sql("delete from analytics.audience")

    blocked = sync_env.run("audience_mirror")

    assert blocked.status == "blocked" and "refusing to remove all 100 members" in blocked.message
    assert fields_on_record(sync_env) == (100, 0)


def test_a_retry_after_a_takeover_keeps_a_household_email_too(sync_env):
    """A retry plans only the rows in error, and the members the takeover records with them: the one who stays
    keeps the shared email the leaving member's removal would take."""
    env = with_people(sync_env)
    set_people(env, "email", "ann@example.com", "c2")
    env.run("people_mailchimp")
    set_mode(env, PEOPLE_MAILCHIMP, "mirror", "upsert")
    set_people(env, "first_name", "Bobby", "c2")
    env.run("people_mailchimp")
    set_mode(env, PEOPLE_MAILCHIMP, "upsert", "mirror")
    env.sql(
        "insert into tidings.row_errors select sync_name, row_key, row_hash, 'earlier', 'http_503', 'unavailable', "
        "false, 1, now(), now() from tidings.sync_state where sync_name = 'people_mailchimp' and row_key = 'c1'"
    )
    env.sql("delete from analytics.people where customer_id = 'c1'")

    retry = env.run("people_mailchimp", only_rows_in_error=True)

    assert (retry.status, retry.removed, retry.skipped) == ("success", 0, 1)
    assert segment(env) == {"ann@example.com"}
    assert fields_on_record(env, "people_mailchimp") == (1, 1)
    assert not env.run("people_mailchimp").planned.change


def test_resending_every_member_after_a_takeover_warns_of_no_change(sync_env):
    env = with_people(sync_env)
    set_mode(env, PEOPLE_MAILCHIMP, "mirror", "upsert")
    env.run("people_mailchimp")
    set_mode(env, PEOPLE_MAILCHIMP, "upsert", "mirror")

    resent = env.run("people_mailchimp", resend_all=True)

    assert (resent.status, resent.sent, resent.warnings) == ("success", 2, [])
