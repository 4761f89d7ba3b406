"""A Google Customer Match mirror through random audience changes, killed runs, failed jobs and jobs processed in
either order: once Google has processed every job and the sync has caught up, the user list holds exactly the
model's addresses, so nobody who left stays in it and nobody current is missing.

Google processes a job hours after the run: the sandbox keeps each job RUNNING until a test processes it (all of
them, the newest only, or none between two runs, in the order they ran or newest first). Runs are killed while
they wait for a job's `:run` answer (the job run or not), or after their jobs ran and before their state commit.
Addresses are never passed from one customer to another (a known limit: holds go by member, README). Runs in
this process pass the removal guard (`--allow-large-removal`): retirements and the removals of killed runs count
against a handful of members; killed runs are started without it and may be blocked.
"""

from __future__ import annotations

import random
import textwrap
from typing import Any

import pytest

from syncs.identity import sha256_hex
from tests.reliability.conftest import soak_iterations
from tests.reliability.figures import FIGURES
from tests.reliability.harness import make_env, run_with_crash_hook
from tests.syncs.conftest import SyncEnv
from tests.syncs.test_identity_changes import GOOGLE_DESTINATION

SYNC = "people_google"
USER_LIST = "customers/1234567890/userLists/people"
GOOGLE_SMALL_BATCHES = GOOGLE_DESTINATION + "      batch_size: 2\n"  # several batches per job
PEOPLE_YAML = f"""
models:
  - name: people
    config:
      meta:
        tidings:
          syncs:
            - name: {SYNC}
              destination: google_ads
              mode: mirror
              primary_key: customer_id
              target: {{customer_id: "123-456-7890", user_list_id: people}}
              mapping: {{email: email}}
              guards: {{max_removal_share: 1.0}}
"""
STEPS = 8
MAX_CATCH_UP_RUNS = 8


class Audience:
    """The model (`analytics.people`) and the changes a step makes to it; every address is new or its owner's."""

    def __init__(self, env: SyncEnv, rng: random.Random) -> None:
        self.env, self.rng = env, rng
        self.current: dict[str, str] = {f"c{i}": f"person{i}@example.com" for i in range(4)}
        self.gone: dict[str, str] = {}
        self.touched: list[str] = []  # customers the last step changed
        self.made = len(self.current)
        env.sql("create table analytics.people (customer_id varchar, email varchar)")
        env.sql("insert into analytics.people select * from (values " + self._values(self.current) + ")")

    def change(self) -> None:
        """One to three changes; each undoes one of the last step's at even odds (a member who just joined leaves,
        one who just left comes back): the opposite operation then meets the one still in flight at Google."""
        last, self.touched = self.touched, []
        for _ in range(self.rng.randint(1, 3)):
            if last and self.rng.random() < 0.5:
                key = last.pop(self.rng.randrange(len(last)))
                if key in self.current:
                    self._leave(key)
                else:
                    self._back(key)
            else:
                kind = self.rng.choice(["leave", "back", "join", "move"])
                if kind == "leave" and self.current:
                    self._leave(self.rng.choice(sorted(self.current)))
                elif kind == "back" and self.gone:
                    self._back(self.rng.choice(sorted(self.gone)))
                elif kind == "join":
                    self._join()
                elif kind == "move" and self.current:
                    self._move(self.rng.choice(sorted(self.current)))

    def _leave(self, key: str) -> None:
        if len(self.current) > 2:  # an audience emptied at once is the empty-source guard's business
            self.gone[key] = self.current.pop(key)
            self.env.sql("delete from analytics.people where customer_id = ?", [key])
            self.touched.append(key)

    def _back(self, key: str) -> None:
        self.current[key] = self.gone.pop(key)
        self.env.sql("insert into analytics.people values (?, ?)", [key, self.current[key]])
        self.touched.append(key)

    def _join(self) -> None:
        key = f"c{self.made}"
        self.current[key] = self._new_address()
        self.env.sql("insert into analytics.people values (?, ?)", [key, self.current[key]])
        self.touched.append(key)

    def _move(self, key: str) -> None:
        self.current[key] = self._new_address()
        self.env.sql("update analytics.people set email = ? where customer_id = ?", [self.current[key], key])
        self.touched.append(key)

    def hashed(self) -> set[str]:
        return {sha256_hex(address) for address in self.current.values()}

    def _new_address(self) -> str:
        self.made += 1
        return f"person{self.made}@example.com"

    @staticmethod
    def _values(people: dict[str, str]) -> str:
        return ", ".join(f"('{key}', '{address}')" for key, address in people.items())


def google_env(root: Any, sandbox: Any) -> SyncEnv:
    env = make_env(root, sandbox)
    (env.dbt_project_dir / "models" / "_people.yml").write_text(textwrap.dedent(PEOPLE_YAML))
    with env.destinations_file.open("a") as destinations:
        destinations.write(GOOGLE_SMALL_BATCHES)
    return env


def kill_waiting_for_a_run(env: SyncEnv, verb: str, *, ran: bool) -> None:
    """Start a run and kill it while it waits for the answer to its `verb` job's `:run`, which Google ran or never
    received; a run with no such job ends on its own."""
    google = env.sandbox.app("google_ads")
    google.held_runs[verb] = ran
    child = env.start_in_subprocess(SYNC)
    try:
        while child.poll() is None and not google.run_held.wait(timeout=0.05):
            pass
        killed = child.poll() is None
        child.kill()
        child.wait(timeout=60)
    finally:
        google.held_runs.pop(verb, None)
        google.release_held_runs()
    FIGURES.subprocess_runs += 1
    FIGURES.runs_killed += killed
    FIGURES.sigkill_kills += killed


def one_run(env: SyncEnv, rng: random.Random) -> None:
    """A run as it may go: to its end, or killed at one of the points where Google holds work it has not
    recorded yet."""
    how = rng.choices(["whole", "held_run", "before_commit"], weights=[5, 4, 1])[0]
    if how == "whole":
        env.run(SYNC, allow_large_removal=True)
    elif how == "held_run":
        kill_waiting_for_a_run(env, rng.choice(["create", "remove"]), ran=rng.random() < 0.5)
    else:
        run_with_crash_hook(env, SYNC, after_batches=1, before_commit=True)


def process_jobs(env: SyncEnv, rng: random.Random) -> None:
    """Google processes every job that runs, the newest only, or none yet."""
    google = env.sandbox.app("google_ads")
    google.newest_first = rng.random() < 0.5
    choice = rng.choices(["all", "newest", "none"], weights=[1, 1, 2])[0]
    if choice == "all":
        google.members(USER_LIST)
    elif choice == "newest":
        google.finish_newest_job()


def catch_up(env: SyncEnv) -> None:
    """No more changes or faults: Google processes what runs, and the sync runs until nothing is left to do."""
    google = env.sandbox.app("google_ads")
    google.failing_jobs.clear()
    for _ in range(MAX_CATCH_UP_RUNS):
        google.members(USER_LIST)
        result = env.run(SYNC, allow_large_removal=True)
        FIGURES.recovery_runs += 1
        planned = result.planned
        unconfirmed = env.sql("select count(*) from tidings.unconfirmed_deliveries")[0][0]
        in_error = env.sql("select count(*) from tidings.row_errors")[0][0]
        if result.status == "success" and not (planned.add + planned.change + planned.remove + unconfirmed + in_error):
            return
    pytest.fail(f"the sync did not catch up in {MAX_CATCH_UP_RUNS} runs: {result}")


def converge(env: SyncEnv, rng: random.Random) -> None:
    audience = Audience(env, rng)
    google = env.sandbox.app("google_ads")
    env.run(SYNC)
    for _ in range(STEPS):
        audience.change()
        if rng.random() < 0.25:
            google.failing_jobs[rng.choice(["create", "remove"])] = 1
        one_run(env, rng)
        process_jobs(env, rng)
    catch_up(env)
    held = google.members(USER_LIST)
    FIGURES.rows_checked += len(audience.current) + len(audience.gone)
    FIGURES.stale_members_left += len(held - audience.hashed())
    assert held == audience.hashed(), (
        f"left in the list: {len(held - audience.hashed())}, missing from it: {len(audience.hashed() - held)}"
    )


def test_a_google_audience_converges_through_kills_failed_jobs_and_reordering(tmp_path, clean_sandbox, rng):
    converge(google_env(tmp_path, clean_sandbox), rng)


@pytest.mark.soak
@pytest.mark.parametrize("audience", range(soak_iterations()))
def test_soak_a_google_audience_converges(tmp_path, clean_sandbox, rng, audience):
    """One test per audience (each within the per-test timeout), each with choices of its own under one seed."""
    converge(google_env(tmp_path, clean_sandbox), random.Random(rng.randrange(2**32) + audience))
