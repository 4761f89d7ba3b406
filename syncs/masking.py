"""Masking for previews (dry runs, plans, Dagster metadata): enough shape to check a mapping, no raw PII.

Emails become `j***@e***.com`, phones keep their last two digits, names keep their initial, and any other
free text keeps only its first character. Numbers, booleans and short lower-case codes (statuses, stage
names, channels) are shown as they are; dates are shown unless the field looks like a birth date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_PHONE_VALUE = re.compile(r"^\+?[\d\s().-]{7,}$")
_CODE = re.compile(r"^[a-z0-9_.:-]{1,40}$")
_PHONE_FIELDS = ("phone", "mobile", "sms", "tel")
_NAME_FIELDS = ("name", "fname", "lname")
_EXACT_NAME_FIELDS = frozenset({"fn", "ln", "first", "last"})
_BIRTH_FIELDS = ("birth", "dob")
_NOT_PERSONAL_NAMES = frozenset({"message_name", "plan_name", "campaign_name", "list_name", "segment_name"})
_ADDRESS_FIELDS = ("address", "street", "line1", "line2", "postal", "zip", "city")


def mask_email(value: str) -> str:
    local, _, domain = value.partition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:
        host, tld = domain, ""
    return f"{local[:1]}***@{host[:1]}***{dot}{tld}"


def mask_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return "*" * max(len(digits) - 2, 0) + digits[-2:]


def mask_name(value: str) -> str:
    stripped = value.strip()
    return f"{stripped[:1]}." if stripped else ""


def mask_value(field_name: str, value: Any) -> Any:
    """The preview form of one field value."""
    name = field_name.lower()
    if value is None or isinstance(value, bool | int | float | Decimal):
        return value
    if isinstance(value, datetime | date):
        return "****-**-**" if any(part in name for part in _BIRTH_FIELDS) else value.isoformat()
    text = str(value)
    if _EMAIL.match(text.strip()):
        return mask_email(text.strip())
    if any(part in name for part in _PHONE_FIELDS) or _PHONE_VALUE.match(text):
        return mask_phone(text)
    if name not in _NOT_PERSONAL_NAMES and (name in _EXACT_NAME_FIELDS or any(p in name for p in _NAME_FIELDS)):
        return mask_name(text)
    if any(part in name for part in _BIRTH_FIELDS + _ADDRESS_FIELDS):
        return "***"
    if _CODE.match(text):
        return text
    return f"{text[:1]}***"


def mask_row(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: mask_value(name, value) for name, value in fields.items()}
