"""Every dbt model, seed and snapshot as a Dagster asset; every dbt test as a blocking asset check.

Assets are grouped by the folder they live in (staging, intermediate, core, lifecycle, segments, messages,
metrics) and carry the model's `meta.owner`. All of them share the `duckdb` pool with the sync assets:
see `orchestration.definitions` for why warehouse writers are serialized.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from orchestration.project import ensure_manifest, tidings_dbt_project

DUCKDB_POOL = "duckdb"


class TidingsDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # fqn is [project, folder, ..., name]; marts are grouped by their business area, not "marts".
        folders = dbt_resource_props["fqn"][1:-1]
        if folders[:1] == ["marts"] and len(folders) > 1:
            return folders[1]
        return folders[0] if folders else dbt_resource_props["resource_type"]

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        owner = dbt_resource_props.get("config", {}).get("meta", {}).get("owner") or dbt_resource_props.get(
            "meta", {}
        ).get("owner")
        return [owner] if owner and "@" in owner else None


TRANSLATOR = TidingsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(
    manifest=ensure_manifest(),
    project=tidings_dbt_project(),
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def tidings_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[object]:
    """`dbt build` of the selected models: runs each model, then its tests, skipping what a failed test feeds."""
    yield from dbt.cli(["build"], context=context).stream()
