"""Guards decide, from a plan alone, whether a run may proceed. Every decision is written down (in the run
result and history), including the ones that let the run through."""

from __future__ import annotations

from dataclasses import dataclass, field

from syncs.config import SyncSpec
from syncs.destinations.base import Mode
from syncs.planner import Plan
from syncs.state import ADD_BACK_GUARD, REMOVE_ALL_GUARD


@dataclass
class GuardVerdict:
    blocked: bool = False
    decisions: list[str] = field(default_factory=list)

    def block(self, decision: str) -> None:
        self.blocked = True
        self.decisions.append(f"blocked: {decision}")

    def allow(self, decision: str) -> None:
        self.decisions.append(f"passed: {decision}")


# A mirror emptied with `--remove-all` stays so, also if its mode changes to upsert in the meantime.
EMPTIED_MODES = frozenset({Mode.MIRROR, Mode.UPSERT})


def evaluate(
    sync: SyncSpec,
    plan: Plan,
    *,
    allow_large_removal: bool = False,
    remove_all: bool = False,
    emptied_by: str | None = None,
    add_back: bool = False,
) -> GuardVerdict:
    """`emptied_by`: the `--remove-all` run that last emptied this mirror, unless a run added members back since."""
    verdict = GuardVerdict()
    if remove_all:  # asked for by name: emptying the audience is the point, not a broken upstream
        verdict.allow(f"{REMOVE_ALL_GUARD}: removing all {plan.counts.remove} members, as asked; the model is not read")
        return verdict
    _minimum_audience(sync, plan, verdict)
    if sync.mode in EMPTIED_MODES:
        _emptied(plan, verdict, emptied_by, add_back)
    if sync.mode is Mode.MIRROR:
        _empty_source(plan, verdict)
        _removal_share(sync, plan, verdict, allow_large_removal)
    return verdict


def _emptied(plan: Plan, verdict: GuardVerdict, emptied_by: str | None, add_back: bool) -> None:
    """A mirror emptied on purpose stays empty: between `--remove-all` and deleting the sync's declaration, a
    scheduled run would add the model's members back. Only a run asked to (`--add-back`) does."""
    if emptied_by is None:
        return
    sending = plan.counts.add + plan.counts.change
    if add_back:
        verdict.allow(f"{ADD_BACK_GUARD}: sending {sending} members after {emptied_by} emptied the audience, as asked")
    elif sending:
        verdict.block(
            f"emptied: {emptied_by} removed every member (`--remove-all`), and this run would send {sending} back; "
            f"delete the sync's declaration to retire it, or `tidings run {plan.sync_name} --add-back` to fill the "
            "audience again"
        )
    else:
        verdict.allow(f"emptied: {emptied_by} removed every member (`--remove-all`); this run sends none back")


def _minimum_audience(sync: SyncSpec, plan: Plan, verdict: GuardVerdict) -> None:
    minimum = sync.guards.min_rows
    if minimum <= 0:
        return
    if plan.current_rows < minimum:
        verdict.block(f"min_rows: the model has {plan.current_rows} rows, fewer than the minimum of {minimum}")
    else:
        verdict.allow(f"min_rows: {plan.current_rows} rows >= {minimum}")


def _empty_source(plan: Plan, verdict: GuardVerdict) -> None:
    """An empty model almost always means a broken upstream, never 'remove everyone'. Not overridable. Members a
    run would only drop from state, unable to remove them (`unrecorded_identity`), count too."""
    leaving = plan.counts.remove + plan.skipped.get("unrecorded_identity", 0)
    if plan.current_rows == 0 and leaving > 0:
        verdict.block(
            f"empty_source: the model has no rows; refusing to remove all {leaving} members "
            f"(fix the model; to empty the audience on purpose, `tidings run {plan.sync_name} --remove-all`)"
        )


def _removal_share(sync: SyncSpec, plan: Plan, verdict: GuardVerdict, allow_large_removal: bool) -> None:
    """Removals sent again because the destination failed them (`Plan.redone_removals`) passed the guard of the run
    that made them, and retirements carried over from a renamed sync's earlier name (`Plan.carried_removals`) come
    from its state, not the model: they are named, not counted."""
    besides = ", ".join(
        text
        for count, text in (
            (plan.redone_removals, f"{plan.redone_removals} removals sent again as the destination failed them"),
            (plan.carried_removals, f"{plan.carried_removals} retirements carried over from an earlier name"),
        )
        if count
    )
    members = plan.mirror_members
    removals = plan.counts.remove - plan.redone_removals - plan.carried_removals
    if removals == 0 and besides:
        verdict.allow(f"max_removal_share: only {besides}")
    if removals == 0 or not members:
        return
    share, limit = removals / members, sync.guards.max_removal_share
    summary = f"would remove {removals} of {members} members ({share:.0%}; limit {limit:.0%})"
    if besides:
        summary += f", besides {besides}"
    if share <= limit:
        verdict.allow(f"max_removal_share: {summary}")
    elif allow_large_removal:
        verdict.allow(f"max_removal_share: {summary}, allowed by --allow-large-removal")
    else:
        verdict.block(f"max_removal_share: {summary}; rerun with --allow-large-removal if intended")
