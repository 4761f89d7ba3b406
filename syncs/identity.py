"""Normalization and hashing of customer identifiers, per each provider's published rules.

Pure functions: each takes a raw value and returns the normalized text, or None when nothing usable is
left (the caller turns that into a row error or simply omits the key). Hashes are lower-case hex SHA-256
of the UTF-8 normalized text.

Meta (Custom Audiences multi-key schema) follows Meta's customer-list rules, which the facebook-business SDK
implements; for ASCII values with phones in international format, our hashes equal the SDK's byte for byte
(tests/destinations/test_identity.py).
Where Meta's documentation asks for more than the SDK does, we follow the documentation: letters outside
A-Z in names and cities are kept (UTF-8, "special characters in UTF-8 format") where the SDK drops them,
spaces inside ZIP codes are removed, US ZIP codes keep their first five digits (a ZIP+4 written without its
hyphen and without a country included), and phones get their country code from the customer's country when
written in national format. ST is kept as the SDK keeps it (letters only, lower case): a state written out
(`California`) is not turned into its code, as the SDK does not.

Google Customer Match hashes first and last names alike: lower case, no punctuation, spaces trimmed and collapsed,
without the prefix (Mrs.) or suffix (Jr.) Google asks to leave out.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import date, datetime
from functools import lru_cache

import phonenumbers
import pycountry

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_META_STRIP = " \t\r\n\0\x0b."  # what Meta's SDK strips from both ends of every multi-key value
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_COUNTRY = re.compile(r"^[a-z]{2}$")
_US_ZIP = re.compile(r"^\d{5}(-?\d{4})?$")
# What Google asks to leave out of names: a prefix such as Mrs. (first name), a suffix such as Jr. (last name).
_NAME_PREFIXES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr"})
_NAME_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "phd"})  # not "md": also short for Muhammad


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _letters(text: str) -> str:
    """Only letters (any script), lower-cased: no spaces, digits or punctuation."""
    return "".join(ch for ch in unicodedata.normalize("NFC", text).lower() if ch.isalpha())


# Generic -----------------------------------------------------------------------------------------------


def email(value: object) -> str | None:
    """Trimmed, lower-cased, and shaped like an address (something@domain.tld); else None."""
    text = _text(value).strip(_META_STRIP).lower()
    return text if _EMAIL.match(text) else None


def phone_e164(value: object, country: object = None) -> str | None:
    """E.164 (`+<country code><number>`) when the number is valid; national numbers use `country` (alpha-2)."""
    text = _text(value).strip()
    if not text:
        return None
    region = country_code(country)
    try:
        parsed = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def country_code(value: object) -> str | None:
    """ISO 3166-1 alpha-2, lower case, for a region phonenumbers knows; else None. Takes a two-letter code (also
    written `u.s.`), a three-letter one (`USA`, `deu`) or a country's English name (`Germany`, `Viet Nam`)."""
    text = _text(value).strip()
    letters = re.sub(r"[^a-z]", "", text.lower())
    code = letters if _COUNTRY.match(letters) else _country_by_name(text) or _country_by_name(letters)
    return code if code and code.upper() in phonenumbers.SUPPORTED_REGIONS else None


@lru_cache(maxsize=1024)
def _country_by_name(text: str) -> str | None:
    """pycountry's lookup (alpha-3, numeric, name, official name; case-insensitive), cached: rows repeat countries."""
    try:
        return pycountry.countries.lookup(text).alpha_2.lower() if text else None
    except LookupError:
        return None


def birth_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(_text(value).strip()[:10])
    except ValueError:
        return None


# Meta Custom Audiences (multi-key schema) --------------------------------------------------------------


def meta_email(value: object) -> str | None:
    return email(value)


def meta_phone(value: object, country: object = None) -> str | None:
    """Digits only, with the country code, no leading zeros or symbols."""
    e164 = phone_e164(value, country)
    return e164.removeprefix("+") if e164 else None


def meta_name(value: object) -> str | None:
    """FN / LN / CT: lower case, letters only (UTF-8), no spaces or punctuation."""
    return _letters(_text(value).strip(_META_STRIP)) or None


meta_city = meta_name


def meta_state(value: object) -> str | None:
    """ST: lower case, letters only, as Meta's SDK has it: send the 2-letter code (a name is not mapped to one)."""
    return _letters(_text(value).strip(_META_STRIP)) or None


def meta_zip(value: object, country: object = None) -> str | None:
    """ZIP: lower case without spaces; in the US the first five digits (ZIP+4 dropped)."""
    # Whitespace goes first: a control character Python counts as whitespace (U+001F) would otherwise shield a NUL
    # or a dot from the strip, and normalizing the result again would change it.
    text = re.sub(r"\s", "", _text(value)).strip(_META_STRIP).lower()
    # With no country, a value shaped like a US ZIP (5 digits, or ZIP+4 with or without its hyphen) is taken as
    # one: a ZIP+4 stored without its hyphen is common, 9-digit all-digit postcodes elsewhere are rare (Brazil's
    # CEP has 8 digits, Iran's postcode 10). A country, when given, decides: a non-US one keeps all the digits.
    if country_code(country) == "us" or (not _text(country).strip() and _US_ZIP.match(text)):
        text = text.split("-")[0][:5]
        return text if re.match(r"^\d{5}$", text) else None
    return text or None


def meta_country(value: object) -> str | None:
    return country_code(value)


def meta_doby(value: object) -> str | None:
    born = birth_date(value)
    if born is not None:
        return f"{born.year:04d}"
    digits = re.sub(r"\D", "", _text(value))
    return digits if len(digits) == 4 else None


def meta_gender(value: object) -> str | None:
    """GEN: `f` or `m` (first letter of female/male, any case)."""
    first = _text(value).strip(_META_STRIP).lower()[:1]
    return first if first in ("f", "m") else None


def meta_extern_id(value: object) -> str | None:
    """EXTERN_ID is sent unhashed; trimmed and lower-cased as Meta's SDK does for every multi-key value."""
    text = _text(value).strip(_META_STRIP).lower()
    return text or None


# Google Customer Match -------------------------------------------------------------------------------


def google_email(value: object) -> str | None:
    """Trimmed and lower-cased; for gmail.com / googlemail.com, periods in the local part removed."""
    normalized = email(value)
    if normalized is None:
        return None
    local, domain = normalized.rsplit("@", 1)
    if domain in _GMAIL_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def google_phone(value: object, country: object = None) -> str | None:
    """E.164 with the leading `+` (Google hashes the E.164 form)."""
    return phone_e164(value, country)


def _google_name_words(value: object) -> list[str]:
    """Lower case, punctuation removed (`O'Brien` -> `obrien`), split at whitespace. Composed (NFC) first, as
    `_letters` does: a name stored decomposed (`e` + U+0301) hashes as the same name composed (`é`)."""
    text = unicodedata.normalize("NFC", _text(value)).lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return text.split()


def google_first_name(value: object) -> str | None:
    """Lower case, no punctuation, spaces trimmed and collapsed; a leading title (Mrs., Dr.) dropped."""
    words = _google_name_words(value)
    while len(words) > 1 and words[0] in _NAME_PREFIXES:
        words.pop(0)
    return " ".join(words) or None


def google_last_name(value: object) -> str | None:
    """Lower case, no punctuation, spaces trimmed and collapsed; a trailing suffix (Jr., III, PhD) dropped."""
    words = _google_name_words(value)
    while len(words) > 1 and words[-1] in _NAME_SUFFIXES:
        words.pop()
    return " ".join(words) or None


def google_country(value: object) -> str | None:
    """Unhashed ISO 3166-1 alpha-2, upper case as Google's examples send it."""
    code = country_code(value)
    return code.upper() if code else None


def google_postal_code(value: object) -> str | None:
    """Unhashed, trimmed; spaces inside kept (UK/CA postcodes) as Google accepts them."""
    text = " ".join(_text(value).split())
    return text or None


# Mailchimp ---------------------------------------------------------------------------------------------


def subscriber_hash(address: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address."""
    return hashlib.md5(address.lower().encode("utf-8"), usedforsecurity=False).hexdigest()


# USPS (mail-house files) ---------------------------------------------------------------------------------

# USPS Publication 28 abbreviations for the words that most often appear spelled out.
USPS_ABBREVIATIONS = {
    "STREET": "ST",
    "AVENUE": "AVE",
    "BOULEVARD": "BLVD",
    "DRIVE": "DR",
    "ROAD": "RD",
    "LANE": "LN",
    "COURT": "CT",
    "PLACE": "PL",
    "CIRCLE": "CIR",
    "TERRACE": "TER",
    "HIGHWAY": "HWY",
    "PARKWAY": "PKWY",
    "SQUARE": "SQ",
    "TRAIL": "TRL",
    "WAY": "WAY",
    "SUITE": "STE",
    "APARTMENT": "APT",
    "BUILDING": "BLDG",
    "FLOOR": "FL",
    "ROOM": "RM",
    "UNIT": "UNIT",
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
    "NORTHEAST": "NE",
    "NORTHWEST": "NW",
    "SOUTHEAST": "SE",
    "SOUTHWEST": "SW",
}


# Publication 28 Appendix B: the two-letter codes of the states, DC and the territories.
USPS_STATES = {
    "ALABAMA": "AL", "ALASKA": "AK", "ARIZONA": "AZ", "ARKANSAS": "AR", "CALIFORNIA": "CA", "COLORADO": "CO",
    "CONNECTICUT": "CT", "DELAWARE": "DE", "DISTRICT OF COLUMBIA": "DC", "FLORIDA": "FL", "GEORGIA": "GA",
    "HAWAII": "HI", "IDAHO": "ID", "ILLINOIS": "IL", "INDIANA": "IN", "IOWA": "IA", "KANSAS": "KS", "KENTUCKY": "KY",
    "LOUISIANA": "LA", "MAINE": "ME", "MARYLAND": "MD", "MASSACHUSETTS": "MA", "MICHIGAN": "MI", "MINNESOTA": "MN",
    "MISSISSIPPI": "MS", "MISSOURI": "MO", "MONTANA": "MT", "NEBRASKA": "NE", "NEVADA": "NV", "NEW HAMPSHIRE": "NH",
    "NEW JERSEY": "NJ", "NEW MEXICO": "NM", "NEW YORK": "NY", "NORTH CAROLINA": "NC", "NORTH DAKOTA": "ND",
    "OHIO": "OH", "OKLAHOMA": "OK", "OREGON": "OR", "PENNSYLVANIA": "PA", "RHODE ISLAND": "RI",
    "SOUTH CAROLINA": "SC", "SOUTH DAKOTA": "SD", "TENNESSEE": "TN", "TEXAS": "TX", "UTAH": "UT", "VERMONT": "VT",
    "VIRGINIA": "VA", "WASHINGTON": "WA", "WEST VIRGINIA": "WV", "WISCONSIN": "WI", "WYOMING": "WY",
    "AMERICAN SAMOA": "AS", "GUAM": "GU", "NORTHERN MARIANA ISLANDS": "MP", "PUERTO RICO": "PR",
    "VIRGIN ISLANDS": "VI",
}  # fmt: skip
# The punctuation Publication 28 keeps on a delivery line: the hyphen of a hyphenated primary number (Queens
# `112-10`, Hawaii `94-1234`; Appendix D1) and the slash of a fractional address (`123 1/2`).
_USPS_KEPT = re.compile(r"(^\d+(?:-\d+)+\b|\b\d+/\d+\b)")


def _usps_plain(text: str) -> str:
    """Upper case, any character but a letter or digit replaced by a space, spaces collapsed."""
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text.upper()).split())


def usps_text(value: object) -> str | None:
    """Recipient name or city: upper case, no punctuation, spaces collapsed; no abbreviations (MARY STREET)."""
    return _usps_plain(_text(value)) or None


def usps_line(value: object) -> str | None:
    """Delivery address line: upper case, standard abbreviations (STREET -> ST), punctuation removed except the
    hyphen of a hyphenated primary number and the slash of a fraction."""
    parts = _USPS_KEPT.split(" ".join(_text(value).upper().split()))  # the kept marks at odd positions
    text = " ".join(part if i % 2 else _usps_plain(part) for i, part in enumerate(parts))
    return " ".join(USPS_ABBREVIATIONS.get(word, word) for word in text.split()) or None


def usps_state(value: object, country: object = "US") -> str | None:
    """Upper case, spaces collapsed; in the US a state (or DC, a territory) written out becomes its code."""
    text = usps_text(value)
    if text and (country_code(country) or "us") == "us":
        return USPS_STATES.get(text, text)
    return text


def usps_zip(value: object, country: object = "US") -> str | None:
    """US: `12345` or ZIP+4 `12345-6789` (the only punctuation kept). Elsewhere the postcode's own form: upper case,
    spaces collapsed, hyphens kept (Brazil `01310-100`, Japan `100-0001`), other marks removed."""
    if (country_code(country) or "us") != "us":
        kept = "".join(ch for ch in _text(value).upper() if ch.isalnum() or ch.isspace() or ch == "-")
        return " ".join(kept.split()).strip(" -") or None
    digits = re.sub(r"\D", "", _text(value))
    if len(digits) == 5:
        return digits
    if len(digits) == 9:
        return f"{digits[:5]}-{digits[5:]}"
    return None
