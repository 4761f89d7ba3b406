"""A mirror or upsert sync pointed at another destination or target keeps no state that belongs to the old one:
its runs are blocked until its members are moved (`--remove-all`, then `--add-back`) or it starts afresh at the
new place (`--retarget`)."""

from __future__ import annotations

from tests.syncs.test_cli import cli
from tests.syncs.test_sync_names import members, rename


def point_at(env, sync: str, before: str, after: str) -> None:
    """Change the webhook topic (the target) of `sync` in the model YAML."""
    models = env.dbt_project_dir / "models" / "_audiences.yml"
    text = models.read_text()
    declared = f"- name: {sync}\n"
    start = text.index(declared)
    end = text.index(f"target: {{topic: {before}}}", start)
    models.write_text(text[:end] + f"target: {{topic: {after}}}" + text[end + len(f"target: {{topic: {before}}}") :])


def places(env) -> dict[str, str]:
    return dict(env.sql("select sync_name, place from tidings.sync_places"))


def test_a_mirror_pointed_at_another_target_is_blocked_until_its_members_are_moved(sync_env, capsys):
    """Its state says the old topic holds 100 members: a run to the new one would send only changed members and
    remove the leavers from where they never were, leaving them (opt-outs included) in the old one."""
    assert sync_env.run("audience_mirror").sent == 100
    assert '"topic": "audience"' in places(sync_env)["audience_mirror"]
    point_at(sync_env, "audience_mirror", "audience", "audience_b")
    sync_env.fill_audience(90)  # ten leave, opting out, say

    blocked = sync_env.run("audience_mirror")

    assert (blocked.status, blocked.sent, blocked.removed) == ("blocked", 0, 0)
    assert blocked.guard_decisions[0].startswith("blocked: retargeted: sync 'audience_mirror' now points at hooks")
    assert "100 member(s) sent to hooks (webhook)" in blocked.message
    assert "--remove-all" in blocked.message and "--retarget" in blocked.message
    assert len(members(sync_env, "audience")) == 100 and not members(sync_env, "audience_b")
    assert cli(sync_env, "run", "audience_mirror", "--dry-run") == 3  # a dry run used as a check says so
    assert cli(sync_env, "plan", "audience_mirror") == 0
    assert "blocked: retargeted:" in capsys.readouterr().out
    assert cli(sync_env, "validate") == 0
    assert "warning: runs are blocked: retargeted: sync 'audience_mirror' now points at" in capsys.readouterr().out
    assert sync_env.run("audience_mirror").status == "blocked"  # still: nothing was recorded meanwhile

    point_at(sync_env, "audience_mirror", "audience_b", "audience")
    assert sync_env.run("audience_mirror", remove_all=True).removed == 100
    assert not members(sync_env, "audience")
    point_at(sync_env, "audience_mirror", "audience", "audience_b")
    emptied = sync_env.run("audience_mirror")  # nothing held anywhere: the new place is recorded, the mark stays
    assert emptied.status == "blocked" and "emptied:" in emptied.message
    assert '"topic": "audience_b"' in places(sync_env)["audience_mirror"]
    filled = sync_env.run("audience_mirror", add_back=True)
    assert (filled.status, filled.sent) == ("success", 90)
    assert len(members(sync_env, "audience_b")) == 90 and not members(sync_env, "audience")
    sync_env.fill_audience(89)
    assert sync_env.run("audience_mirror").removed == 1 and len(members(sync_env, "audience_b")) == 89


def test_retarget_starts_afresh_at_the_new_place_and_leaves_the_old_one(sync_env, capsys):
    assert sync_env.run("audience_mirror").sent == 100
    point_at(sync_env, "audience_mirror", "audience", "audience_b")
    sync_env.fill_audience(90)
    assert cli(sync_env, "run", "audience_mirror", "--retarget", "--remove-all") == 2
    assert "retargeting applies to a mirror or upsert sync's plain run" in capsys.readouterr().err
    assert cli(sync_env, "run", "welcome_send", "--retarget") == 2
    assert cli(sync_env, "run", "audience_mirror", "--retarget", "--dry-run") == 0
    assert "passed: retargeted: the state of 100 member(s)" in capsys.readouterr().out
    preview = sync_env.run("audience_mirror", retarget=True, dry_run=True)  # planned as from an empty state
    assert (preview.planned.add, preview.planned.remove, preview.planned.unchanged) == (90, 0, 0)
    assert not members(sync_env, "audience_b")

    assert cli(sync_env, "run", "audience_mirror", "--retarget") == 0

    assert "they stay there; every member is sent to hooks (webhook)" in capsys.readouterr().out
    assert len(members(sync_env, "audience_b")) == 90
    assert len(members(sync_env, "audience")) == 100  # as the warning says: the old place is left as it was
    (held,) = sync_env.sql("select count(*) from tidings.sync_state where sync_name = 'audience_mirror'")
    assert held == (90,)
    again = sync_env.run("audience_mirror", retarget=True)  # nothing moved: a no-op, left in a run config
    assert (again.status, again.planned.unchanged, again.warnings) == ("success", 90, [])
    sync_env.fill_audience(89)
    assert sync_env.run("audience_mirror").removed == 1
    assert len(members(sync_env, "audience_b")) == 89 and len(members(sync_env, "audience")) == 100


def test_a_retarget_its_guards_block_keeps_the_state(sync_env, capsys):
    """A dry run of `--retarget` used as a check gives the real run's verdict, and a blocked run drops nothing."""
    assert sync_env.run("audience_mirror").sent == 100
    point_at(sync_env, "audience_mirror", "audience", "audience_b")
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    models.write_text(models.read_text().replace("{max_removal_share: 0.5}", "{max_removal_share: 0.5, min_rows: 95}"))
    sync_env.fill_audience(90)

    assert cli(sync_env, "run", "audience_mirror", "--retarget", "--dry-run") == 3
    assert "blocked: min_rows: the model has 90 rows" in capsys.readouterr().out
    blocked = sync_env.run("audience_mirror", retarget=True)

    assert (blocked.status, blocked.sent) == ("blocked", 0) and "min_rows" in blocked.message
    (held,) = sync_env.sql("select count(*) from tidings.sync_state where sync_name = 'audience_mirror'")
    assert held == (100,) and '"topic": "audience"' in places(sync_env)["audience_mirror"]
    sync_env.fill_audience(100)
    retargeted = sync_env.run("audience_mirror", retarget=True)
    assert (retargeted.status, retargeted.sent) == ("success", 100)
    assert len(members(sync_env, "audience_b")) == 100


def test_state_recorded_before_places_were_is_taken_to_be_where_the_sync_points(sync_env):
    assert sync_env.run("audience_mirror").sent == 100
    sync_env.sql("delete from tidings.sync_places")  # a warehouse of an earlier version
    sync_env.fill_audience(99)
    assert sync_env.run("audience_mirror").removed == 1
    assert '"topic": "audience"' in places(sync_env)["audience_mirror"]
    point_at(sync_env, "audience_mirror", "audience", "audience_b")
    assert sync_env.run("audience_mirror").status == "blocked"


def test_a_renamed_sync_pointed_elsewhere_is_blocked_and_forget_deletes_the_place(sync_env, capsys):
    assert sync_env.run("audience_mirror").sent == 100
    rename(sync_env, "audience_mirror", "audience_members")
    point_at(sync_env, "audience_members", "audience", "audience_b")

    moved = sync_env.run("audience_members")

    assert moved.status == "blocked" and "100 member(s) sent to hooks (webhook)" in moved.message
    assert set(places(sync_env)) == {"audience_members"}  # carried over with the state
    assert "sync 'audience_members' now points at" in moved.message
    rename(sync_env, "audience_members", "audience_renamed", carry_over=False)
    assert cli(sync_env, "forget", "audience_members", "--yes") == 0
    assert "audience_members" not in places(sync_env)


def test_a_late_renamed_from_keeps_the_place_the_earlier_names_members_were_sent_to(sync_env):
    """The sync ran under its new name, pointed elsewhere, before `renamed_from` was declared: the members carried
    over are the old topic's, so the sync is blocked rather than removing those who left from the new topic."""
    assert sync_env.run("audience_mirror").sent == 100
    rename(sync_env, "audience_mirror", "audience_members", carry_over=False)
    point_at(sync_env, "audience_members", "audience", "audience_b")
    sync_env.fill_audience(90)
    assert sync_env.run("audience_members").sent == 90
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    models.write_text(
        models.read_text().replace(
            "- name: audience_members\n", "- name: audience_members\n              renamed_from: audience_mirror\n"
        )
    )

    carried = sync_env.run("audience_members")

    assert (carried.status, carried.removed) == ("blocked", 0)
    assert 'sent to hooks (webhook) {"topic": "audience"}' in carried.message
    assert len(members(sync_env, "audience")) == 100 and len(members(sync_env, "audience_b")) == 90


def test_an_upsert_sync_is_checked_and_a_send_once_sync_is_not(sync_env):
    """Upsert members stay where they were sent as well; a send_once ledger holds messages, which are never sent
    again wherever the sync points."""
    assert sync_env.run("audience_upsert").sent > 0
    point_at(sync_env, "audience_upsert", "contacts", "contacts_b")
    blocked = sync_env.run("audience_upsert")
    assert blocked.status == "blocked" and "--remove-all" not in blocked.message
    assert "An upsert sync never removes its members; to leave the old place's members there" in blocked.message

    assert sync_env.run("welcome_send").sent == 40
    point_at(sync_env, "welcome_send", "welcome", "welcome_b")
    moved = sync_env.run("welcome_send")
    assert (moved.status, moved.sent) == ("success", 0)
    assert "welcome_send" not in places(sync_env)
