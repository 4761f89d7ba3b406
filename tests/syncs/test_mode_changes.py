"""A sync whose mode changes in place keeps its state: a mirror that was an upsert sync takes over the members
it added, and removes those whose identifiers it knows."""

from __future__ import annotations

from syncs.engine import plan_sync
from tests.syncs.test_sync_names import members

AUDIENCE_MIRROR = "- name: audience_mirror\n              destination: hooks\n              mode: "


def set_mode(env, before: str, after: str) -> None:
    models = env.dbt_project_dir / "models" / "_audiences.yml"
    text = models.read_text()
    assert AUDIENCE_MIRROR + before + "\n" in text
    models.write_text(text.replace(AUDIENCE_MIRROR + before + "\n", AUDIENCE_MIRROR + after + "\n"))


def fields_on_record(env) -> tuple[int, int]:
    """(members in the sync's state, of which with the fields last sent)."""
    (counts,) = env.sql(
        "select count(*), count(row_fields) from tidings.sync_state where sync_name = 'audience_mirror'"
    )
    return counts


def removed_keys(env) -> list[str]:
    return sorted(d["key"] for d in env.webhook().deliveries if d["operation"] == "remove")


def test_a_sync_that_becomes_a_mirror_records_its_members_and_reports_those_it_cannot_remove(sync_env):
    """Upsert keeps no identifiers. Members that left while the sync was an upsert sync cannot be removed: the
    first mirror run says how many and drops them from the state, instead of failing. Members still in the model
    are taken over without a send (the hash shows the destination has the model's fields), a changed one is sent;
    from then on the mirror removes members who leave, with the identifiers sent to them."""
    set_mode(sync_env, "mirror", "upsert")
    assert sync_env.run("audience_mirror").sent == 100
    sync_env.fill_audience(90)  # c00090..c00099 leave while upsert keeps them in the destination
    assert sync_env.run("audience_mirror").sent == 0
    assert fields_on_record(sync_env) == (100, 0)
    sync_env.sql("update analytics.audience set first_name = 'Changed' where customer_id = 'c00003'")
    set_mode(sync_env, "upsert", "mirror")

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
    set_mode(sync_env, "mirror", "upsert")
    sync_env.sql("update analytics.audience set score = 99 where customer_id in ('c00095', 'c00001')")
    assert sync_env.run("audience_mirror").sent == 2
    sync_env.sql("delete from analytics.audience where customer_id >= 'c00090'")
    assert sync_env.run("audience_mirror").removed == 0  # upsert never removes
    set_mode(sync_env, "upsert", "mirror")

    mirror = sync_env.run("audience_mirror")

    assert (mirror.status, mirror.removed, mirror.sent, mirror.skipped) == ("success", 9, 0, 1)
    assert removed_keys(sync_env) == [f"c{i:05d}" for i in range(90, 100) if i != 95]
    assert set(members(sync_env, "audience")) == {f"c{i:05d}" for i in range(90)} | {"c00095"}
    assert fields_on_record(sync_env) == (90, 90)  # c00001, changed by an upsert run, recorded without a send


def test_removing_every_member_of_a_former_upsert_sync_says_it_cannot(sync_env):
    """`--remove-all` reads no model, so nothing records the fields of members an upsert run added: none can be
    removed, and the run says so rather than failing."""
    set_mode(sync_env, "mirror", "upsert")
    sync_env.run("audience_mirror")
    set_mode(sync_env, "upsert", "mirror")

    emptied = sync_env.run("audience_mirror", remove_all=True)

    assert (emptied.status, emptied.removed, emptied.sent, emptied.skipped) == ("success", 0, 0, 100)
    assert emptied.warnings[0].startswith("100 member(s) that left the model were recorded without the identifiers")
    assert len(members(sync_env, "audience")) == 100 and not removed_keys(sync_env)
    assert fields_on_record(sync_env) == (0, 0)
