"""Loading and validating sync declarations (model YAML) and destinations (destinations.yml).

Syncs are declared next to their model under `config.meta.tidings.syncs` (see docs/contracts.md).
Destinations live in one file of profiles; `TIDINGS_PROFILE` selects one (default `sandbox`):

    profiles:
      sandbox:
        crm_webhook:
          type: webhook
          base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/webhook/events"
          secret_env: TIDINGS_WEBHOOK_SECRET

Strings may use `${VAR}` / `${VAR:-default}`. Secrets are named by `*_env` fields and read by the
connector when a run starts, so validation never needs them. Every problem found is reported at once,
each naming the file, the model, the field and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlglot import exp

from syncs.destinations.base import Destination, DestinationSettings, Mode, SyncTarget, registered_types
from syncs.identity_release import IdentityField, identity_fields_mapped
from syncs.user_sql import UnsafeSQLError, validate_condition

DEFAULT_PROFILE = "sandbox"
SYNC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "private_key", "credential")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")


@dataclass(frozen=True)
class ConfigProblem:
    file: Path
    where: str  # "model seg_x, sync y" or "profile sandbox, destination z"
    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: field '{self.field}': {self.problem}. Fix: {self.fix}"


class ConfigError(ValueError):
    """Invalid sync or destination configuration; the message lists every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid Tidings configuration ({len(problems)} problem(s)):\n{lines}")


class Guards(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_removal_share: float = Field(default=0.2, ge=0, le=1)
    min_rows: int = Field(default=0, ge=0)


class SyncDeclaration(BaseModel):
    """One entry of `config.meta.tidings.syncs` as written in a model's YAML."""

    model_config = ConfigDict(extra="forbid")

    name: str
    destination: str
    mode: Mode
    primary_key: list[str]
    target: dict[str, Any] = Field(default_factory=dict)
    mapping: dict[str, str]
    where: str | None = None
    schedule: str | None = None
    guards: Guards = Field(default_factory=Guards)
    description: str | None = None
    owner: str | None = None
    renamed_from: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not SYNC_NAME.match(value):
            raise ValueError("must be lower-case letters, digits and '_', starting with a letter")
        return value

    @field_validator("renamed_from")
    @classmethod
    def _earlier_names(cls, value: list[str]) -> list[str]:
        if not all(SYNC_NAME.match(name) for name in value):
            raise ValueError("must name the sync's earlier names: lower-case letters, digits and '_'")
        return value

    @field_validator("primary_key", "renamed_from", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("mapping")
    @classmethod
    def _not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("must map at least one destination field to a model column")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and (len(value.split()) != 5 or not all(_CRON_FIELD.match(p) for p in value.split())):
            raise ValueError("must be a 5-field cron expression such as '0 7 * * *'")
        return value


@dataclass(frozen=True)
class DestinationSpec:
    name: str
    type: str
    profile: str
    settings: DestinationSettings
    destination_class: type[Destination]
    source_file: Path

    @property
    def channel(self) -> str:
        return self.destination_class.channel


@dataclass(frozen=True)
class SyncSpec:
    name: str
    model: str
    destination: str
    destination_type: str
    channel: str
    mode: Mode
    primary_key: list[str]
    mapping: dict[str, str]
    target: SyncTarget
    where: str | None  # validated and re-rendered by syncs.user_sql
    schedule: str | None
    guards: Guards
    owner: str | None
    description: str | None
    source_file: Path
    model_columns: tuple[str, ...] = ()  # from the model YAML; empty when the YAML lists no columns
    renamed_from: tuple[str, ...] = ()  # earlier names whose state the sync carries over (`syncs.sync_names`)


@dataclass
class Project:
    syncs: dict[str, SyncSpec]
    destinations: dict[str, DestinationSpec]
    profile: str
    dbt_project_dir: Path
    destinations_file: Path
    models_with_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def sync(self, name: str) -> SyncSpec:
        try:
            return self.syncs[name]
        except KeyError:
            known = ", ".join(sorted(self.syncs)) or "none declared"
            raise KeyError(f"unknown sync {name!r}; declared syncs: {known}") from None

    def identity_rules(self, sync: SyncSpec) -> dict[str, Any]:
        """How the sync's destination identifies a member, as `build_plan` takes it."""
        destination = self.destination_class_of(sync)
        return {
            "identity_fields": destination.identity_fields,
            "case_sensitive_fields": destination.case_sensitive_identity_fields,
            "normalized_kinds": destination.normalized_identity_kinds,
            "sent_identity": destination.sent_identity,
        }

    def mapped_identity_fields(self, sync: SyncSpec) -> list[IdentityField]:
        """The identity fields of the sync's destination that the sync maps (`identity_fields_mapped`)."""
        destination = self.destination_class_of(sync)
        return identity_fields_mapped(
            sorted(sync.mapping), destination.identity_fields, destination.case_sensitive_identity_fields
        )

    def destination_class_of(self, sync: SyncSpec) -> type[Destination]:
        return self.destinations[sync.destination].destination_class

    def destination_for(self, sync: SyncSpec) -> Destination:
        """A connector instance for one run (reads its secrets from the environment now)."""
        spec = self.destinations[sync.destination]
        return spec.destination_class(spec.name, spec.settings, sync.target)


def load_project(dbt_project_dir: Path, destinations_file: Path, profile: str | None = None) -> Project:
    profile = profile or os.environ.get("TIDINGS_PROFILE") or DEFAULT_PROFILE
    problems: list[ConfigProblem] = []
    destinations = _load_destinations(destinations_file, profile, problems)
    syncs, columns = _load_syncs(dbt_project_dir / "models", destinations, destinations_file, problems)
    if problems:
        raise ConfigError(problems)
    return Project(syncs, destinations, profile, dbt_project_dir, destinations_file, columns)


def interpolate(value: Any, source: Path, where: str, field_name: str, problems: list[ConfigProblem]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in strings, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, source, where, f"{field_name}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, source, where, f"{field_name}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group("name"), match.group("default")
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(
                source,
                where,
                field_name,
                f"environment variable {name} is not set",
                f"export {name}, or write ${{{name}:-<default>}}",
            )
        )
        return ""

    return _ENV_REF.sub(substitute, value)


def _load_destinations(path: Path, profile: str, problems: list[ConfigProblem]) -> dict[str, DestinationSpec]:
    document = _read_yaml(path, problems)
    if document is None:
        return {}
    profiles = document.get("profiles") if isinstance(document, dict) else None
    if not isinstance(profiles, dict) or profile not in profiles:
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else "none"
        problems.append(
            ConfigProblem(
                path,
                f"profile {profile}",
                "profiles",
                f"profile {profile!r} is not defined (known: {known})",
                "add it under `profiles:` or set TIDINGS_PROFILE to a defined profile",
            )
        )
        return {}
    declared = profiles[profile] or {}
    types = registered_types()
    specs: dict[str, DestinationSpec] = {}
    for name, raw in declared.items():
        where = f"profile {profile}, destination {name}"
        if not isinstance(raw, dict) or "type" not in raw:
            problems.append(
                ConfigProblem(
                    path,
                    where,
                    "type",
                    "no destination type given",
                    f"add `type:` with one of {', '.join(sorted(types))}",
                )
            )
            continue
        raw = interpolate(raw, path, where, name, problems)
        type_name = raw.pop("type")
        if type_name not in types:
            problems.append(
                ConfigProblem(
                    path,
                    where,
                    "type",
                    f"unknown destination type {type_name!r}",
                    f"use one of {', '.join(sorted(types))}",
                )
            )
            continue
        secrets = [key for key in raw if _looks_secret(key)]
        for key in secrets:
            problems.append(
                ConfigProblem(
                    path,
                    where,
                    key,
                    "a secret is written literally in the file",
                    f"remove it and reference an environment variable instead: `{key}_env: MY_ENV_VAR`",
                )
            )
        if secrets:
            continue
        cls = types[type_name]
        try:
            settings = cls.Settings.model_validate(raw)
        except ValidationError as error:
            problems.extend(_pydantic_problems(error, path, where, "", cls.Settings))
            continue
        specs[name] = DestinationSpec(name, type_name, profile, settings, cls, path)
    return specs


def _looks_secret(key: str) -> bool:
    lowered = key.lower()
    return not lowered.endswith("_env") and any(word in lowered for word in _SECRET_WORDS)


def _load_syncs(
    models_dir: Path,
    destinations: dict[str, DestinationSpec],
    destinations_file: Path,
    problems: list[ConfigProblem],
) -> tuple[dict[str, SyncSpec], dict[str, tuple[str, ...]]]:
    syncs: dict[str, SyncSpec] = {}
    all_columns: dict[str, tuple[str, ...]] = {}
    for path in sorted([*models_dir.rglob("*.yml"), *models_dir.rglob("*.yaml")]):
        document = _read_yaml(path, problems)
        models = document.get("models") if isinstance(document, dict) else None
        for model in models if isinstance(models, list) else []:
            if not isinstance(model, dict) or "name" not in model:
                continue
            columns = tuple(c["name"] for c in model.get("columns") or [] if isinstance(c, dict) and "name" in c)
            if columns:
                all_columns[model["name"]] = columns
            config = model.get("config") or {}
            meta = config.get("meta") or {}
            declared = (meta.get("tidings") or {}).get("syncs") or []
            for index, raw in enumerate(declared):
                spec = _sync_spec(
                    path,
                    model["name"],
                    columns,
                    meta.get("owner"),
                    index,
                    raw,
                    destinations,
                    destinations_file,
                    problems,
                )
                if spec is None:
                    continue
                if spec.name in syncs:
                    problems.append(
                        ConfigProblem(
                            path,
                            f"model {spec.model}, sync {spec.name}",
                            "name",
                            f"sync name already used by model {syncs[spec.name].model} "
                            f"in {syncs[spec.name].source_file}",
                            "give every sync a unique name",
                        )
                    )
                    continue
                syncs[spec.name] = spec
    _check_renames(syncs, problems)
    return syncs, all_columns


def _check_renames(syncs: dict[str, SyncSpec], problems: list[ConfigProblem]) -> None:
    """An earlier name is carried over to one sync, and is no sync's current name: two syncs would share state."""
    claimed: dict[str, SyncSpec] = {}
    for spec in syncs.values():
        where = f"model {spec.model}, sync {spec.name}"
        for earlier in spec.renamed_from:
            if earlier in syncs:
                problems.append(
                    ConfigProblem(
                        spec.source_file,
                        where,
                        "renamed_from",
                        f"{earlier!r} is the name of a declared sync (model {syncs[earlier].model})",
                        "list only names no declared sync has any more: the syncs would share state",
                    )
                )
            elif earlier in claimed:
                problems.append(
                    ConfigProblem(
                        spec.source_file,
                        where,
                        "renamed_from",
                        f"{earlier!r} is also listed by sync {claimed[earlier].name} in {claimed[earlier].source_file}",
                        "list an earlier name under the one sync it became",
                    )
                )
            else:
                claimed[earlier] = spec


def _sync_spec(
    path: Path,
    model: str,
    columns: tuple[str, ...],
    model_owner: str | None,
    index: int,
    raw: Any,
    destinations: dict[str, DestinationSpec],
    destinations_file: Path,
    problems: list[ConfigProblem],
) -> SyncSpec | None:
    label = raw.get("name", f"#{index + 1}") if isinstance(raw, dict) else f"#{index + 1}"
    where = f"model {model}, sync {label}"
    before = len(problems)
    try:
        decl = SyncDeclaration.model_validate(raw)
    except ValidationError as error:
        problems.extend(_pydantic_problems(error, path, where, "", SyncDeclaration))
        return None
    destination = destinations.get(decl.destination)
    if destination is None:
        known = ", ".join(sorted(destinations)) or "none"
        problems.append(
            ConfigProblem(
                path,
                where,
                "destination",
                f"unknown destination {decl.destination!r}",
                f"use one declared in {destinations_file} (known: {known})",
            )
        )
        return None
    cls = destination.destination_class
    if decl.mode not in cls.modes:
        supported = ", ".join(sorted(m.value for m in cls.modes))
        problems.append(
            ConfigProblem(
                path,
                where,
                "mode",
                f"{cls.type_name} does not support mode {decl.mode.value}",
                f"use one of: {supported}",
            )
        )
    _check_fields(path, where, decl, cls, problems)
    if columns:
        _check_columns(path, where, model, decl, columns, problems)
    condition = _checked_condition(path, where, decl, columns, problems)
    try:
        target = cls.Target.model_validate(decl.target)
    except ValidationError as error:
        problems.extend(_pydantic_problems(error, path, where, "target.", cls.Target))
        target = None
    else:
        problems.extend(
            ConfigProblem(path, where, name, problem, fix)
            for name, problem, fix in cls.sync_problems(decl.mode, destination.settings, target)
        )
    if len(problems) > before or target is None:
        return None
    return SyncSpec(
        name=decl.name,
        model=model,
        destination=decl.destination,
        destination_type=destination.type,
        channel=cls.channel,
        mode=decl.mode,
        primary_key=decl.primary_key,
        mapping=decl.mapping,
        target=target,
        where=condition,
        schedule=decl.schedule,
        guards=decl.guards,
        owner=decl.owner or model_owner,
        description=decl.description,
        source_file=path,
        model_columns=columns,
        renamed_from=tuple(decl.renamed_from),
    )


def _check_fields(path: Path, where: str, decl: SyncDeclaration, cls: type[Destination], problems: list) -> None:
    missing = sorted(cls.required_fields - decl.mapping.keys())
    if missing:
        problems.append(
            ConfigProblem(
                path,
                where,
                "mapping",
                f"{cls.type_name} requires fields {missing}",
                f"map each of them to a model column, e.g. `{missing[0]}: <column>`",
            )
        )
    for name in sorted(decl.mapping.keys() & cls.reserved_fields):
        problems.append(
            ConfigProblem(
                path,
                where,
                f"mapping.{name}",
                f"{cls.type_name} fills the field {name!r} itself",
                f"give the mapped field another name than {sorted(cls.reserved_fields)}",
            )
        )
    if not cls.accepts_extra_fields:
        unknown = sorted(decl.mapping.keys() - cls.required_fields - cls.optional_fields)
        allowed = sorted(cls.required_fields | cls.optional_fields)
        for name in unknown:
            problems.append(
                ConfigProblem(
                    path, where, f"mapping.{name}", f"{cls.type_name} has no field {name!r}", f"use one of {allowed}"
                )
            )


def _check_columns(
    path: Path, where: str, model: str, decl: SyncDeclaration, columns: tuple[str, ...], problems: list
) -> None:
    known = {c.lower() for c in columns}
    fix = f"use a column of {model} ({', '.join(columns)}) or add the column to the model"
    for key in decl.primary_key:
        if key.lower() not in known:
            problems.append(ConfigProblem(path, where, "primary_key", f"{key!r} is not a column of {model}", fix))
    for field_name, column in decl.mapping.items():
        if column.lower() not in known:
            problems.append(
                ConfigProblem(path, where, f"mapping.{field_name}", f"{column!r} is not a column of {model}", fix)
            )


def _checked_condition(
    path: Path, where: str, decl: SyncDeclaration, columns: tuple[str, ...], problems: list
) -> str | None:
    """The `where` filter validated against the model's columns (or any column when the YAML lists none)."""
    if decl.where is None:
        return None
    try:
        return validate_condition(decl.where, columns or _columns_in(decl.where))
    except UnsafeSQLError as error:
        problems.append(
            ConfigProblem(path, where, "where", str(error), "write a boolean expression over the model's own columns")
        )
        return None


def _columns_in(condition: str) -> list[str]:
    try:
        return [c.name for c in sqlglot.parse_one(condition, read="duckdb").find_all(exp.Column)]
    except sqlglot.errors.ParseError:
        return []


def _pydantic_problems(
    error: ValidationError, path: Path, where: str, prefix: str, model: type[BaseModel]
) -> list[ConfigProblem]:
    problems = []
    for item in error.errors():
        loc = prefix + ".".join(str(part) for part in item["loc"]) if item["loc"] else prefix.rstrip(".") or "(root)"
        if item["type"] == "extra_forbidden" and len(item["loc"]) == 1:
            allowed = ", ".join(sorted(model.model_fields))
            fix, problem = f"remove it or use a known field ({allowed})", "unknown field"
        elif item["type"] == "extra_forbidden":
            fix, problem = "remove it", "unknown field"
        elif item["type"] == "missing":
            fix, problem = "add this required field", "required field is missing"
        else:
            fix, problem = "correct the value", item["msg"]
        problems.append(ConfigProblem(path, where, loc, problem, fix))
    return problems


def _read_yaml(path: Path, problems: list[ConfigProblem]) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        problems.append(
            ConfigProblem(
                path,
                "file",
                "(file)",
                "file not found",
                "create it or point TIDINGS_DESTINATIONS_FILE / TIDINGS_DBT_PROJECT_DIR at it",
            )
        )
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problems.append(ConfigProblem(path, "file", "(file)", f"not valid YAML{at}", "fix the YAML syntax"))
    return None
