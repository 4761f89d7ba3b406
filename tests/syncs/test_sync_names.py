"""A sync's state follows it when it is renamed (`renamed_from`), and what a removed sync left can be found and
forgotten (`tidings validate`, `tidings forget`)."""

from __future__ import annotations

import os
import socket
from collections import Counter

import pytest

from syncs.config import ConfigError
from syncs.engine import plan_sync
from tests.syncs.test_cli import cli


def rename(env, old: str, new: str, *, carry_over: bool = True) -> None:
    """Rename a sync in the model YAML, declaring its earlier name or not."""
    models = env.dbt_project_dir / "models" / "_audiences.yml"
    earlier = f"\n              renamed_from: {old}" if carry_over else ""
    text = models.read_text()
    assert f"- name: {old}\n" in text
    models.write_text(text.replace(f"- name: {old}\n", f"- name: {new}{earlier}\n"))


def members(env, topic: str) -> set[str]:
    return set(env.webhook().members.get(topic, {}))


def names_with_state(env) -> set[str]:
    tables = ("sync_state", "row_errors", "pending_members", "message_ledger", "message_acks", "sync_runs")
    return {name for table in tables for (name,) in env.sql(f"select distinct sync_name from tidings.{table}")}


def test_a_renamed_mirror_removes_the_members_who_left_while_it_was_renamed(sync_env):
    first = sync_env.run("audience_mirror")
    assert (first.status, first.sent) == ("success", 100)
    sync_env.fill_audience(90)  # c00090..c00099 drop out (opted out, say) before the renamed sync first runs
    rename(sync_env, "audience_mirror", "audience_members")

    preview = plan_sync("audience_members", project=sync_env.project(), warehouse=sync_env.warehouse)
    result = sync_env.run("audience_members")

    assert (preview.counts.add, preview.counts.remove, preview.counts.unchanged) == (0, 10, 90)
    assert (result.status, result.sent, result.removed) == ("success", 0, 10)
    assert members(sync_env, "audience") == {f"c{i:05d}" for i in range(90)}
    assert [w[:43] for w in preview.warnings] == ["carried over the state of 'audience_mirror'"]
    assert not result.warnings  # the preview carried it over, as the run would have
    assert "audience_mirror" not in names_with_state(sync_env)
    history = sync_env.sql("select run_id from tidings.sync_runs where sync_name = 'audience_members'")
    assert {run for (run,) in history} == {first.run_id, result.run_id}  # the history moved with the state
    assert sync_env.run("audience_members").planned.unchanged == 90


def test_a_sync_renamed_without_its_earlier_name_is_flagged_and_caught_up_once_declared(sync_env, capsys):
    """Without `renamed_from` the new name starts empty: it adds everyone again and cannot remove who left.
    `tidings validate` names the state left behind and both ways out; declaring the name later merges the state,
    and the next run removes the members the first run could not."""
    sync_env.run("audience_mirror")
    sync_env.fill_audience(90)
    rename(sync_env, "audience_mirror", "audience_members", carry_over=False)
    restarted = sync_env.run("audience_members")
    assert (restarted.planned.add, restarted.planned.remove) == (90, 0)
    assert len(members(sync_env, "audience")) == 100  # the ten who left are still in the audience

    assert cli(sync_env, "validate") == 0
    out = capsys.readouterr().out
    assert "warning: state of audience_mirror: 100 member(s)" in out
    assert "renamed_from: audience_mirror" in out and "tidings forget audience_mirror" in out
    assert "c0009" not in out  # counts, never the rows

    rename(sync_env, "audience_members", "audience_members")  # declare the earlier name now
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    models.write_text(models.read_text().replace("renamed_from: audience_members", "renamed_from: audience_mirror"))
    assert cli(sync_env, "validate") == 0
    assert "sync audience_members's next run carries it over" in capsys.readouterr().out
    caught_up = sync_env.run("audience_members")

    assert (caught_up.status, caught_up.removed, caught_up.sent) == ("success", 10, 0)
    assert members(sync_env, "audience") == {f"c{i:05d}" for i in range(90)}
    assert cli(sync_env, "validate") == 0
    assert "warning" not in capsys.readouterr().out


def test_a_renamed_send_once_sync_sends_no_message_twice(sync_env):
    """The run dies after the receiver acknowledged a batch and before the state recorded it; the sync is then
    renamed. The new name sends no sent message again and re-sends the unrecorded ones under the keys they were
    first sent with, so the receiver recognises them."""
    crashed = sync_env.run_in_subprocess(
        "welcome_send", TIDINGS_CRASH_AFTER_BATCHES="1", TIDINGS_CRASH_BEFORE_COMMIT="1"
    )
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert len(sync_env.webhook().sent) == 25
    first_keys = {d["key"]: d["idempotency_key"] for d in sync_env.webhook().deliveries}
    rename(sync_env, "welcome_send", "welcome_emails")

    resumed = sync_env.run("welcome_emails")

    assert (resumed.status, resumed.sent) == ("success", 40)
    webhook = sync_env.webhook()
    assert len(webhook.sent) == 40 and webhook.stats["duplicates"] == 25  # recognised, not delivered again
    assert Counter(d["key"] for d in webhook.deliveries) == Counter({f"welcome:c{i:05d}": 1 for i in range(40)})
    assert all(webhook.sent[key] for key in first_keys.values())
    assert sync_env.run("welcome_emails").sent == 0
    assert sync_env.sql("select distinct sync_name, status from tidings.message_ledger") == [("welcome_emails", "sent")]


def test_an_occurrence_both_names_wrote_ahead_is_counted_once(sync_env):
    """Runs under both names die after the receiver acknowledged a batch (the second, renamed without
    `renamed_from`, delivers those messages again under its own keys: the cost of a rename left undeclared). Once
    the earlier name is declared, each occurrence in doubt keeps one ledger row, the first run's: it is re-sent
    under that key, and recorded sent once."""
    crash = {"TIDINGS_CRASH_AFTER_BATCHES": "1", "TIDINGS_CRASH_BEFORE_COMMIT": "1"}
    assert sync_env.run_in_subprocess("welcome_send", **crash).returncode == 137
    first_keys = {d["key"]: d["idempotency_key"] for d in sync_env.webhook().deliveries}
    rename(sync_env, "welcome_send", "welcome_emails", carry_over=False)
    assert sync_env.run_in_subprocess("welcome_emails", **crash).returncode == 137
    assert sync_env.sql("select count(*) from tidings.message_ledger where status = 'pending'") == [(80,)]
    rename(sync_env, "welcome_emails", "welcome_emails")
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    models.write_text(models.read_text().replace("renamed_from: welcome_emails", "renamed_from: welcome_send"))

    merged = sync_env.run("welcome_emails")

    assert (merged.status, merged.sent) == ("success", 40)
    ledger = sync_env.sql(
        "select occurrence_key, idempotency_key, status from tidings.message_ledger where sync_name = 'welcome_emails'"
    )
    assert sorted(key for key, _, _ in ledger) == [f"welcome:c{i:05d}" for i in range(40)]
    assert {status for _, _, status in ledger} == {"sent"}
    assert all(first_keys[key] == idempotency_key for key, idempotency_key, _ in ledger if key in first_keys)
    assert sync_env.webhook().stats["duplicates"] == 25  # the first run's batch, recognised by its keys
    assert sync_env.run("welcome_emails").sent == 0


def test_state_is_not_carried_over_while_a_run_holds_the_earlier_name(sync_env):
    sync_env.run("audience_mirror")
    sync_env.sql(
        "insert into tidings.sync_locks values ('audience_mirror', 'elsewhere', ?, ?, now())",
        [os.getpid(), socket.gethostname()],
    )
    rename(sync_env, "audience_mirror", "audience_members")

    preview = plan_sync("audience_members", project=sync_env.project(), warehouse=sync_env.warehouse)
    result = sync_env.run("audience_members")

    assert preview.counts.add == 100 and preview.warnings[0].startswith("not counted: a run of 'audience_mirror'")
    assert result.status == "locked" and "'audience_mirror'" in result.message
    assert sync_env.sql("select count(*) from tidings.sync_state where sync_name = 'audience_mirror'") == [(100,)]
    assert sync_env.webhook().stats["delivered"] == 100  # nothing sent by the refused run


def test_forget_deletes_a_removed_syncs_members_only_when_told(sync_env, capsys):
    sync_env.fill_audience(3)
    sync_env.sql("update analytics.audience set email = 'nope' where customer_id = 'c00001'")
    sync_env.run("audience_mirror")

    assert cli(sync_env, "forget", "audience_mirror") == 2  # still declared
    assert "remove its declaration first" in capsys.readouterr().err
    rename(sync_env, "audience_mirror", "audience_members", carry_over=False)
    assert cli(sync_env, "validate") == 0
    assert "`tidings run audience_mirror --remove-all`" in capsys.readouterr().out  # the members are still there
    assert cli(sync_env, "forget", "audience_mirror") == 0
    out = capsys.readouterr().out
    assert "2 member(s), 0 message(s), 1 unsettled, 1 row error(s)" in out and "nothing deleted" in out
    assert "audience_mirror" in names_with_state(sync_env)

    assert cli(sync_env, "forget", "audience_mirror", "--yes") == 0
    assert "forgot audience_mirror: 2 members, 1 unsettled, 1 errors" in capsys.readouterr().out
    for table in ("sync_state", "row_errors", "pending_members"):
        assert sync_env.sql(f"select count(*) from tidings.{table} where sync_name = 'audience_mirror'") == [(0,)]
    history = sync_env.sql("select status, message from tidings.sync_runs where sync_name = 'audience_mirror'")
    assert sorted(status for status, _ in history) == ["forgotten", "partial"]
    assert cli(sync_env, "forget", "audience_mirror", "--yes") == 0
    assert "nothing to forget" in capsys.readouterr().out
    assert cli(sync_env, "validate") == 0
    assert "audience_mirror" not in capsys.readouterr().out


def test_a_sync_declared_again_under_a_forgotten_emptied_name_starts_afresh(sync_env, capsys):
    """Retiring an audience the documented way (`--remove-all`, delete the declaration, `forget`) does not leave the
    name blocked for a new sync declared under it later."""
    sync_env.run("audience_mirror")
    sync_env.run("audience_mirror", remove_all=True)
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    declared = models.read_text()
    rename(sync_env, "audience_mirror", "audience_members", carry_over=False)
    assert cli(sync_env, "validate") == 0
    assert "state of audience_mirror: 0 member(s)" in capsys.readouterr().out  # only the mark is left
    assert cli(sync_env, "forget", "audience_mirror", "--yes") == 0
    assert "forgot audience_mirror: 0 members" in capsys.readouterr().out
    assert cli(sync_env, "validate") == 0
    assert "audience_mirror" not in capsys.readouterr().out
    models.write_text(declared)

    again = sync_env.run("audience_mirror")

    assert (again.status, again.sent) == ("success", 100)
    assert not [decision for decision in again.guard_decisions if "emptied" in decision]


def test_an_emptied_sync_stays_emptied_under_its_new_name(sync_env):
    sync_env.run("audience_mirror")
    emptied = sync_env.run("audience_mirror", remove_all=True)
    rename(sync_env, "audience_mirror", "audience_members")

    renamed = sync_env.run("audience_members")

    assert (renamed.status, renamed.sent) == ("blocked", 0)
    assert f"run {emptied.run_id} of" in renamed.message
    assert sync_env.run("audience_members", add_back=True).sent == 100
    assert "audience_mirror" not in names_with_state(sync_env)


def test_a_forgotten_send_once_name_keeps_its_message_history(sync_env, capsys):
    """The message models read every sync's ledger (already sent, frequency caps): forgetting a removed send_once
    sync must not make its messages look unsent."""
    sync_env.run("welcome_send")
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    declared = models.read_text()
    models.write_text(declared[: declared.index("  - name: messages")])
    assert cli(sync_env, "validate") == 0
    assert "warning: state of welcome_send: 0 member(s), 40 message(s)" in capsys.readouterr().out

    assert cli(sync_env, "forget", "welcome_send", "--yes") == 0
    assert "forgot welcome_send: 0 members" in capsys.readouterr().out

    assert sync_env.sql("select status, count(*) from tidings.message_ledger group by all") == [("sent", 40)]
    assert cli(sync_env, "validate") == 0
    assert "welcome_send" not in capsys.readouterr().out
    models.write_text(declared)  # declared again: nothing is sent twice
    assert sync_env.run("welcome_send").sent == 0


def test_state_of_another_mode_is_not_carried_over(sync_env):
    sync_env.run("audience_upsert")
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    earlier = "- name: audience_mirror\n              renamed_from: audience_upsert_old\n"
    models.write_text(models.read_text().replace("- name: audience_mirror\n", earlier))
    sync_env.sql("update tidings.sync_runs set sync_name = 'audience_upsert_old'")
    sync_env.sql("update tidings.sync_state set sync_name = 'audience_upsert_old'")

    with pytest.raises(ConfigError) as raised:
        sync_env.run("audience_mirror")

    [problem] = raised.value.problems
    assert (problem.field, problem.file) == ("renamed_from", models)
    assert "'audience_upsert_old' last ran in mode upsert, and this sync's mode is mirror" in problem.problem
    assert sync_env.sql("select count(*) from tidings.sync_state where sync_name = 'audience_mirror'") == [(0,)]
    assert sync_env.webhook().stats["delivered"] > 0 and not members(sync_env, "audience")


def test_an_earlier_name_must_not_be_a_declared_sync_nor_claimed_twice(sync_env):
    models = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    text = models.read_text()
    models.write_text(
        text.replace(
            "- name: audience_upsert\n", "- name: audience_upsert\n              renamed_from: audience_export\n"
        )
        .replace("- name: audience_fragile\n", "- name: audience_fragile\n              renamed_from: [old_one]\n")
        .replace("- name: welcome_send\n", "- name: welcome_send\n              renamed_from: old_one\n")
    )
    with pytest.raises(ConfigError) as raised:
        sync_env.project()
    problems = {(p.where, p.field): p.problem for p in raised.value.problems}
    assert (
        "'audience_export' is the name of a declared sync"
        in problems[("model audience, sync audience_upsert", "renamed_from")]
    )
    assert "also listed by sync audience_fragile" in problems[("model messages, sync welcome_send", "renamed_from")]
    assert all(p.file == models for p in raised.value.problems)
