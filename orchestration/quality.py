"""Great Expectations suites that gate every model a sync reads.

What a gate asserts, per row of the model joined to `dim_customers`:
- the primary key is present and unique;
- identifiers are well formed (email, E.164 phone) and the one the row's channel needs is present;
- the customer exists, is not globally suppressed and consents to the row's channel (`can_<channel>`);
and, for audiences (mirror/upsert/export syncs), that the row count stays within a band around the size seen
by the last passing gate, so a broken upstream cannot shrink an audience into a mass removal.

The rules are computed in SQL in the warehouse (the per-row channel decides which consent and identifier
apply); Great Expectations validates the resulting frame with its pandas datasource (see STACK_NOTES: the SQL
datasource on DuckDB returns empty results). Only counts leave this module: never a row value, since rows
hold PII. GE is imported inside `validate`, because importing it pulls in scipy and costs seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from syncs import settings

if TYPE_CHECKING:
    import pandas as pd

    from syncs.engine import SyncSpec

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
# Channel -> (dim_customers consent flag, identifier columns of which at least one must be present).
CHANNEL_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "email": ("can_email", ("email",)),
    "sms": ("can_sms", ("phone_e164",)),
    "mail": ("can_mail", ("address_line1",)),
    "direct_mail": ("can_mail", ("address_line1",)),
    "ads": ("can_ads", ("email", "phone_e164")),
}
AUDIENCE_MODES = frozenset({"mirror", "upsert", "export"})


@dataclass(frozen=True)
class GateRules:
    """What the gate of one model checks, derived from the syncs that read it."""

    model: str
    primary_key: tuple[str, ...]
    sync_channels: frozenset[str]
    checks_size: bool

    @classmethod
    def for_model(cls, model: str, syncs: Iterable[SyncSpec]) -> GateRules:
        specs = list(syncs)
        keys = {tuple(spec.primary_key) for spec in specs}
        primary_key = min(keys, key=len) if keys else ("customer_id",)
        return cls(
            model=model,
            primary_key=primary_key,
            sync_channels=frozenset(spec.channel for spec in specs),
            checks_size=any(spec.mode.value in AUDIENCE_MODES for spec in specs),
        )


@dataclass(frozen=True)
class SizeBand:
    baseline: int | None
    max_shrink: float
    max_growth: float

    def bounds(self) -> tuple[int, int] | None:
        if not self.baseline:
            return None
        return int(self.baseline * (1 - self.max_shrink)), int(self.baseline * (1 + self.max_growth)) + 1


@dataclass
class QualityReport:
    model: str
    row_count: int
    failures: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.passed:
            return f"{self.model}: {len(self.checked)} expectations passed on {self.row_count} rows"
        return f"{self.model} blocked: " + "; ".join(self.failures)


def load_gate_frame(warehouse: Path, rules: GateRules) -> pd.DataFrame:
    """The model's key and identifier columns plus, per row, the consent and identifier verdicts."""
    schema = settings.models_schema()
    # Not read_only: DuckDB refuses a second configuration for a file this process already has open (the engine's).
    with duckdb.connect(str(warehouse)) as con:
        columns = {
            name
            for (name,) in con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [schema, rules.model],
            ).fetchall()
        }
        if not columns:
            raise LookupError(f"model {schema}.{rules.model} is not in the warehouse {warehouse}: build it first")
        sql = _gate_sql(schema, rules, columns)
        return con.execute(sql).df()


def _gate_sql(schema: str, rules: GateRules, columns: set[str]) -> str:
    selected = [*rules.primary_key, *(c for c in ("email", "phone_e164") if c in columns)]
    channel = "m.channel" if "channel" in columns else None
    verdicts: list[str] = []
    if channel:
        verdicts += [
            f"{_by_channel(channel, lambda flag, _: f'coalesce(d.{flag}, false)')} as channel_consent",
            f"{_by_channel(channel, lambda _, ids: _any_present(ids, columns))} as channel_identifier",
        ]
    else:
        for name in sorted(rules.sync_channels & CHANNEL_RULES.keys()):
            flag, ids = CHANNEL_RULES[name]
            verdicts += [
                f"coalesce(d.{flag}, false) as consent_{name}",
                f"{_any_present(ids, columns)} as identifier_{name}",
            ]
    select_list = ", ".join([*(f'm."{c}"' for c in dict.fromkeys(selected)), *verdicts])
    return (
        f"select {select_list}, d.customer_id is not null as known_customer, "
        "coalesce(d.is_globally_suppressed, false) as globally_suppressed "
        f'from "{schema}"."{rules.model}" m left join "{schema}".dim_customers d on d.customer_id = m.customer_id'
    )


def _by_channel(channel: str, rule: Callable[[str, tuple[str, ...]], str]) -> str:
    cases = " ".join(f"when '{name}' then {rule(flag, ids)}" for name, (flag, ids) in CHANNEL_RULES.items())
    return f"case {channel} {cases} else false end"


def _any_present(identifiers: Sequence[str], columns: set[str]) -> str:
    present = [f'm."{c}" is not null' for c in identifiers if c in columns]
    return f"({' or '.join(present)})" if present else "false"


def validate(frame: pd.DataFrame, rules: GateRules, band: SizeBand) -> QualityReport:
    """Run the model's expectation suite on `frame` (from `load_gate_frame`)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = context.suites.add(gx.ExpectationSuite(name=f"{rules.model}_gate"))
    described: list[str] = []

    def expect(expectation: gxe.Expectation, meaning: str) -> None:
        expectation.meta = {"meaning": meaning}
        suite.add_expectation(expectation)
        described.append(meaning)

    for key in rules.primary_key:
        expect(gxe.ExpectColumnValuesToNotBeNull(column=key), f"{key} is null")
    if len(rules.primary_key) == 1:
        expect(gxe.ExpectColumnValuesToBeUnique(column=rules.primary_key[0]), f"{rules.primary_key[0]} repeats")
    else:
        expect(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(rules.primary_key)), "primary key repeats")
    if "email" in frame.columns:
        expect(gxe.ExpectColumnValuesToMatchRegex(column="email", regex=EMAIL_PATTERN), "malformed email")
    if "phone_e164" in frame.columns:
        expect(gxe.ExpectColumnValuesToMatchRegex(column="phone_e164", regex=E164_PATTERN), "malformed phone")
    expect(gxe.ExpectColumnValuesToBeInSet(column="known_customer", value_set=[True]), "customer not in dim_customers")
    expect(gxe.ExpectColumnValuesToBeInSet(column="globally_suppressed", value_set=[False]), "suppressed customer")
    for column in frame.columns:
        if column.startswith(("channel_consent", "consent_")):
            expect(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[True]), "no consent for the channel")
        elif column.startswith(("channel_identifier", "identifier_")):
            expect(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[True]), "identifier missing for channel")
    bounds = band.bounds() if rules.checks_size else None
    if bounds:
        expect(
            gxe.ExpectTableRowCountToBeBetween(min_value=bounds[0], max_value=bounds[1]),
            f"audience size outside {bounds[0]}..{bounds[1]} (last passing size {band.baseline})",
        )

    batch = (
        context.data_sources.add_pandas("warehouse")
        .add_dataframe_asset(rules.model)
        .add_batch_definition_whole_dataframe("whole_model")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result = batch.validate(suite)
    report = QualityReport(model=rules.model, row_count=len(frame), checked=described)
    for outcome in result.results:
        if not outcome.success:
            meaning = outcome.expectation_config.meta["meaning"]
            count = outcome.result.get("unexpected_count")
            observed = outcome.result.get("observed_value")
            detail = f"{count} rows" if count is not None else f"observed {observed}"
            report.failures.append(f"{meaning} ({detail})")
    return report
