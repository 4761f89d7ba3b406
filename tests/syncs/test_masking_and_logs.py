"""Previews and logs show the shape of data, never the data."""

from __future__ import annotations

import json
import logging
from datetime import date
from decimal import Decimal

import pytest

from syncs.logs import format_event, get_logger, log_event
from syncs.masking import mask_row


def test_mask_row_hides_personal_data_but_keeps_codes_and_numbers():
    masked = mask_row(
        {
            "email": "jane.doe@example.com",
            "PHONE": "+14155550123",
            "first_name": "Jane",
            "FN": "jane",
            "address_line1": "1 Main St",
            "date_of_birth": date(1990, 5, 17),
            "signup_date": date(2026, 1, 2),
            "lifecycle_stage": "trial_ending",
            "message_name": "winback_30d",
            "lifetime_revenue": Decimal("120.50"),
            "payload": '{"coupon": "JANE10"}',
            "missing": None,
        }
    )
    assert masked == {
        "email": "j***@e***.com",
        "PHONE": "*********23",
        "first_name": "J.",
        "FN": "j.",
        "address_line1": "***",
        "date_of_birth": "****-**-**",
        "signup_date": "2026-01-02",
        "lifecycle_stage": "trial_ending",
        "message_name": "winback_30d",
        "lifetime_revenue": Decimal("120.50"),
        "payload": "{***",
        "missing": None,
    }


def test_log_lines_are_key_value_or_json_and_refuse_containers(monkeypatch, caplog):
    line = format_event("run.finished", {"run_id": "r1", "sent": 3, "message": "two words"}, as_json=False)
    assert line == 'event=run.finished run_id=r1 sent=3 message="two words"'
    as_json = format_event("run.finished", {"run_id": "r1", "dry_run": False}, as_json=True)
    assert json.loads(as_json) == {"event": "run.finished", "run_id": "r1", "dry_run": False}
    with pytest.raises(TypeError, match="must be a scalar"):
        format_event("batch", {"fields": {"email": "jane@example.com"}}, as_json=False)

    monkeypatch.setenv("TIDINGS_LOG_FORMAT", "json")
    with caplog.at_level(logging.INFO, logger="tidings"):
        log_event(get_logger("test"), "ping", run_id="r2")
    assert json.loads(caplog.records[-1].getMessage()) == {"event": "ping", "run_id": "r2"}


def test_a_run_logs_counts_and_never_row_values(sync_env, caplog):
    sync_env.sql("update analytics.audience set email = 'broken-address' where customer_id = 'c00003'")
    with caplog.at_level(logging.DEBUG):
        sync_env.run("audience_mirror")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "event=run.finished" in text and "sent=99" in text
    assert "@example.com" not in text and "broken-address" not in text and "Name1" not in text
