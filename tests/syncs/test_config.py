"""Configuration errors name the file, the model, the field and the fix, and every problem is reported."""

from __future__ import annotations

import pytest

from syncs.config import ConfigError
from syncs.engine import load_project

MODEL = """
models:
  - name: seg_winback
    config:
      meta:
        tidings:
          syncs:
            - name: winback_hooks
              destination: {destination}
              mode: {mode}
              primary_key: {primary_key}
              target: {target}
              mapping: {mapping}
{extra}
    columns:
      - name: customer_id
      - name: email
      - name: first_name
"""


def declare(**overrides: str) -> str:
    values = {
        "destination": "hooks",
        "mode": "mirror",
        "primary_key": "customer_id",
        "target": "{topic: winback}",
        "mapping": "{email: email, first_name: first_name}",
        "extra": "",
    }
    return MODEL.format(**{**values, **overrides})


def problems_for(write_project, model_yaml: str, destinations: str | None = None) -> ConfigError:
    project_dir, destinations_file = write_project(model_yaml, *([destinations] if destinations else []))
    with pytest.raises(ConfigError) as raised:
        load_project(project_dir, destinations_file, profile="sandbox")
    return raised.value


def test_a_valid_declaration_loads(write_project, monkeypatch):
    monkeypatch.setenv("TIDINGS_SANDBOX_URL", "http://127.0.0.1:9")
    project_dir, destinations_file = write_project(declare(extra="              schedule: '0 7 * * *'"))
    project = load_project(project_dir, destinations_file, profile="sandbox")
    sync = project.syncs["winback_hooks"]
    assert (sync.model, sync.destination_type, sync.channel, sync.primary_key) == (
        "seg_winback",
        "webhook",
        "webhook",
        ["customer_id"],
    )
    assert sync.guards.max_removal_share == 0.2
    assert project.destinations["hooks"].settings.base_url == "http://127.0.0.1:9/webhook/events"


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"destination": "mailchimp_prod"}, "destination", "unknown destination 'mailchimp_prod'"),
        ({"primary_key": "user_id"}, "primary_key", "'user_id' is not a column of seg_winback"),
        ({"mapping": "{email: e_mail}"}, "mapping.email", "'e_mail' is not a column of seg_winback"),
        ({"mode": "export"}, "mode", "webhook does not support mode export"),
        ({"mode": "sometimes"}, "mode", "Input should be"),
        ({"target": "{topic: x, list_id: y}"}, "target.list_id", "unknown field"),
        ({"target": "{}"}, "target.topic", "required field is missing"),
        ({"extra": '              where: "email in (select email from raw.crm)"'}, "where", "subqueries"),
        ({"extra": "              schedule: daily"}, "schedule", "5-field cron"),
        ({"extra": "              colour: blue"}, "colour", "unknown field"),
    ],
)
def test_sync_declaration_errors_name_file_model_field_and_fix(write_project, overrides, field, fragment):
    error = problems_for(write_project, declare(**overrides))
    message = str(error)
    assert "_models.yml" in message and "model seg_winback" in message
    assert f"field '{field}'" in message and fragment in message and "Fix:" in message


def test_duplicate_sync_names_are_rejected(write_project):
    twice = declare() + declare().replace("models:\n", "").replace("seg_winback", "seg_other")
    error = problems_for(write_project, twice)
    assert "sync name already used by model seg_winback" in str(error)


def test_a_literal_secret_is_rejected_with_the_env_var_fix(write_project):
    destinations = """
    profiles:
      sandbox:
        hooks:
          type: webhook
          base_url: http://127.0.0.1:9/webhook/events
          secret: s3cr3t-value
    """
    error = problems_for(write_project, declare(), destinations)
    message = str(error)
    assert "destinations.yml" in message and "destination hooks" in message and "field 'secret'" in message
    assert "secret_env" in message and "s3cr3t-value" not in message


def test_destination_settings_are_validated_by_the_connector(write_project):
    destinations = """
    profiles:
      sandbox:
        hooks:
          type: webhook
          base_url: http://127.0.0.1:9/webhook/events
          secret_env: X
          batch_size: many
          colour: blue
        mystery:
          type: carrier_pigeon
    """
    message = str(problems_for(write_project, declare(), destinations))
    assert "field 'batch_size'" in message and "field 'colour': unknown field" in message
    assert "unknown destination type 'carrier_pigeon'" in message and "webhook" in message


def test_unset_variable_without_default_and_unknown_profile(write_project, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    destinations = """
    profiles:
      sandbox:
        hooks:
          type: webhook
          base_url: ${NOT_SET_ANYWHERE}/events
          secret_env: X
    """
    project_dir, destinations_file = write_project(declare(), destinations)
    with pytest.raises(ConfigError, match="environment variable NOT_SET_ANYWHERE is not set"):
        load_project(project_dir, destinations_file, profile="sandbox")
    with pytest.raises(ConfigError, match="profile 'production' is not defined"):
        load_project(project_dir, destinations_file, profile="production")


def test_fields_the_destination_requires_must_be_mapped(write_project):
    destinations = """
    profiles:
      sandbox:
        mailchimp:
          type: mailchimp
          base_url: http://127.0.0.1:9/mailchimp/3.0
          api_key_env: TIDINGS_MAILCHIMP_API_KEY
    """
    model = declare(destination="mailchimp", target="{list_id: lifecycle}", mapping="{FNAME: first_name}")
    message = str(problems_for(write_project, model, destinations))
    assert "field 'mapping': mailchimp requires fields ['email']" in message and "email: <column>" in message
