"""Identifier normalization and hashing: provider rules, and equality with Meta's own SDK."""

from __future__ import annotations

from datetime import date

import pytest
from facebook_business.adobjects.helpers.customaudiencemixin import CustomAudienceMixin

from syncs import identity
from syncs.destinations.meta_custom_audiences import hashed_row

# (schema key, raw value, country) vectors in the shapes warehouses hold them; ASCII, where Meta's SDK
# applies every documented rule itself.
META_VECTORS = [
    ("EMAIL", "  John.Doe@Example.COM ", None),
    ("EMAIL", "alice+news@example.org", None),
    ("PHONE", "+1 (650) 253-0000", None),
    ("PHONE", "+44 20 7031 3000", None),
    ("PHONE", "+33 6 12 34 56 78", None),
    ("FN", "  Mary-Ann ", None),
    ("LN", "O'Brien", None),
    ("LN", "Smith Jr.", None),
    ("CT", "San Francisco", None),
    ("CT", "St. Louis", None),
    ("ST", "CA", None),
    ("ZIP", "94107-1234", "US"),
    ("ZIP", "94107", "US"),
    ("ZIP", "sw1a1aa", "GB"),
    ("COUNTRY", "US", None),
    ("COUNTRY", " gb ", None),
    ("DOBY", "1984", None),
    ("GEN", "Female", None),
    ("GEN", "M", None),
    ("EXTERN_ID", "Cust-0042", None),
]


def sdk_hash(key: str, value: str) -> str:
    payload = CustomAudienceMixin.format_params([key], [[value]], is_raw=True)["payload"]
    return payload["data"][0][0]


@pytest.mark.parametrize(("key", "raw", "country"), META_VECTORS)
def test_meta_hashes_equal_the_sdk_byte_for_byte(key: str, raw: str, country: str | None) -> None:
    fields = {key: raw} if country is None else {key: raw, "COUNTRY": country}
    assert hashed_row([key], fields) == [sdk_hash(key, raw)]


def test_meta_multi_key_row_equals_the_sdk() -> None:
    schema = ["EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "ST", "COUNTRY", "DOBY", "GEN", "EXTERN_ID"]
    raw = ["A.B@Example.com", "+1 650 253 0000", "Ann", "Lee", "94107", "Oakland", "CA", "US", "1990", "f", "c-1"]
    expected = CustomAudienceMixin.format_params(schema, [raw], is_raw=True)["payload"]["data"][0]
    assert hashed_row(schema, dict(zip(schema, raw, strict=True))) == expected


def test_meta_rules_the_sdk_leaves_to_the_caller() -> None:
    # Meta's docs: phones carry the country code, ZIPs have no spaces, US ZIPs keep five digits, and
    # names keep non-ASCII letters in UTF-8 (the SDK drops them; we follow the documentation).
    assert identity.meta_phone("(650) 253-0000", "US") == "16502530000"
    assert identity.meta_zip("SW1A 1AA", "GB") == "sw1a1aa"
    assert identity.meta_zip("941071234", "US") == "94107"
    assert identity.meta_name("José") == "josé"
    assert identity.meta_doby(date(1984, 5, 17)) == "1984"


def test_a_nine_digit_zip_without_a_country_is_a_us_zip_plus_4() -> None:
    """Meta: US ZIP codes keep their first 5 digits. Nine digits with no country is a ZIP+4 written without its
    hyphen; a country that says otherwise keeps the value whole."""
    assert [identity.meta_zip(v) for v in ("123456789", "12345 6789", "12345-6789")] == ["12345"] * 3
    assert identity.meta_zip("123456789", " ") == "12345"  # a blank country is no country
    assert identity.meta_zip("123456789", "BR") == "123456789"
    assert identity.meta_zip("1234567890") == "1234567890"  # not US-shaped
    schema = ["ZIP", "COUNTRY"]
    assert hashed_row(["ZIP"], {"ZIP": "123456789"}) == [identity.sha256_hex("12345")]
    assert hashed_row(schema, {"ZIP": "123456789", "COUNTRY": "KR"})[0] == identity.sha256_hex("123456789")


def test_meta_state_names_are_not_mapped_to_codes_as_the_sdk_does_not() -> None:
    """Meta's SDK keeps only a state's letters (`[^a-zA-Z]` removed), so "California" hashes as "california":
    mapping it to "ca" would break byte-for-byte equality with the SDK, so ST stays as the SDK has it."""
    assert hashed_row(["ST"], {"ST": "California"}) == [sdk_hash("ST", "California")]
    assert identity.meta_state("California") == "california"


def test_hex_sha256_of_a_published_vector() -> None:
    assert identity.sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("value", ["", None, "no-at-sign", "two@@example.com", "a@b", "spaces in@example.com"])
def test_malformed_emails_are_none(value: object) -> None:
    assert identity.email(value) is None


@pytest.mark.parametrize(("value", "country"), [("12", "US"), ("not a phone", None), ("6502530000", None), ("", "US")])
def test_unusable_phones_are_none(value: str, country: str | None) -> None:
    assert identity.phone_e164(value, country) is None


def test_phones_in_e164() -> None:
    assert identity.phone_e164("(650) 253-0000", "us") == "+16502530000"
    assert identity.phone_e164("06 12 34 56 78", "FR") == "+33612345678"
    assert identity.phone_e164("+44 20 7031 3000", "US") == "+442070313000"


def test_google_rules() -> None:
    assert identity.google_email(" John.Doe@GoogleMail.com ") == "johndoe@googlemail.com"
    assert identity.google_email("john.doe@gmail.com") == "johndoe@gmail.com"
    assert identity.google_email("john.doe@example.com") == "john.doe@example.com"
    assert identity.google_phone("(650) 253-0000", "US") == "+16502530000"
    assert identity.google_first_name("  Mary   Ann ") == "mary ann"
    assert identity.google_last_name("O'Brien-Smith") == "obriensmith"
    assert identity.google_country("us") == "US"
    assert identity.google_postal_code(" SW1A  1AA ") == "SW1A 1AA"


def test_google_first_and_last_names_are_normalized_alike() -> None:
    """Google's address rules: lower case, spaces trimmed and collapsed, no punctuation (OfflineUserAddressInfo says
    so of last names; Data Manager's AddressInfo of names), no prefix such as Mrs. in a first name nor suffix such as
    Jr. in a last name (Data Manager's AddressInfo).
    First names kept their punctuation: `Mary-Ann` and `Maryann` hashed apart while `O'Brien` and `OBrien` did not."""
    assert identity.google_first_name(" Mary-Ann ") == identity.google_last_name(" Mary-Ann ") == "maryann"
    assert identity.google_first_name("J.R.  Bob") == identity.google_last_name("J.R.  Bob") == "jr bob"
    assert identity.google_first_name("Mrs. Zoë") == "zoë"
    assert identity.google_last_name("Smith, Jr.") == "smith"
    assert identity.google_last_name("Pérez III") == "pérez"
    # Composed as UTF-8 text usually is (NFC), whether the warehouse stored the accent apart or not.
    assert identity.google_first_name("Jose\u0301") == identity.google_first_name("Jos\u00e9") == "jos\u00e9"
    assert identity.google_last_name("Pe\u0301rez") == "p\u00e9rez"
    # A lone title is the name itself, and a title goes from its own end only.
    assert [identity.google_first_name(v) for v in ("Dr.", "Ann Dr", "...")] == ["dr", "ann dr", None]
    assert [identity.google_last_name(v) for v in ("Jr", "Jr Smith")] == ["jr", "jr smith"]


def test_country_codes_must_be_known_regions() -> None:
    assert identity.country_code("DE") == "de"
    assert identity.country_code("XX") is None
    assert identity.country_code("UK") is None  # not ISO 3166 (GB): unknown, never guessed


def test_three_letter_codes_and_country_names_become_two_letter_codes() -> None:
    """Models often carry `USA` or `Germany`: read as no country, they dropped Meta's COUNTRY and a national-format
    phone, and sent a German address to the mail house as US."""
    values = ["USA", "deu", "u.s.", "Germany", "united kingdom", "Viet Nam", "Atlantis", "", None]
    assert [identity.country_code(v) for v in values] == ["us", "de", "us", "de", "gb", "vn", None, None, None]
    assert identity.meta_phone("(415) 555-2671", "USA") == identity.meta_phone("(415) 555-2671", "US")
    assert identity.meta_phone("(415) 555-2671", "USA") is not None


def test_gender_and_birth_year() -> None:
    assert [identity.meta_gender(v) for v in ("F", "male", "x", None)] == ["f", "m", None, None]
    assert identity.meta_doby("1984-05-17") == "1984"
    assert identity.meta_doby("84") is None


def test_mailchimp_subscriber_hash_is_md5_of_lower_case() -> None:
    # Mailchimp's documented example: md5("urist.mcvankab@freddiesjokes.com").
    assert identity.subscriber_hash("Urist.McVankab@FreddiesJokes.com") == "62eeb292278cc15f5817cb78f7790b08"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123 North Main Street, Apt. 4", "123 N MAIN ST APT 4"),
        ("123 1/2 Main Street", "123 1/2 MAIN ST"),  # a fraction is part of the primary number
        ("123-45 Queens Blvd", "123-45 QUEENS BLVD"),  # hyphenated primary numbers keep the hyphen
        ("94-1234 Kahala St.", "94-1234 KAHALA ST"),
        ("Suite 4-B, 12/A", "STE 4 B 12 A"),  # elsewhere hyphens and slashes go
        (" ", None),
    ],
)
def test_usps_delivery_lines(raw: str, expected: str | None) -> None:
    assert identity.usps_line(raw) == expected


def test_usps_names_cities_and_states_keep_their_words_without_punctuation() -> None:
    names = ["Mary Street", "John  West", "Ann Court", "Ann O'Neil"]
    assert [identity.usps_text(n) for n in names] == ["MARY STREET", "JOHN WEST", "ANN COURT", "ANN O NEIL"]
    assert identity.usps_text("St. Paul") == "ST PAUL"
    assert [identity.usps_state(s) for s in ("West  Virginia", "mn", "Minn.")] == ["WV", "MN", "MINN"]
    assert identity.usps_state("British Columbia", "CA") == "BRITISH COLUMBIA"
    assert identity.usps_state("Georgia", "GE") == "GEORGIA"  # only US state names become codes


def test_usps_postal_codes() -> None:
    assert identity.usps_zip("55101 1234") == "55101-1234"
    assert identity.usps_zip("5510") is None
    assert identity.usps_zip("k1a  0b1", "CA") == "K1A 0B1"


def test_postal_codes_outside_the_us_keep_their_own_form() -> None:
    """Only US ZIPs get the USPS treatment: a Brazilian CEP lost its hyphen (`01310 100`), as printed."""
    assert identity.usps_zip("01310-100", "BR") == "01310-100"
    assert identity.usps_zip("01.310-100", "BR") == "01310-100"  # the dot of the older written form goes
    assert identity.usps_zip(" 100-0001 ", "JP") == "100-0001"
    assert identity.usps_zip("sw1a   1aa", "GB") == "SW1A 1AA"
    assert identity.usps_zip("k1a-0b1", "CA") == "K1A-0B1"  # as written: no country's format is guessed
    assert [identity.usps_zip(v, "DE") for v in (" - ", "", None)] == [None, None, None]
    assert identity.usps_zip("01310-100") is None  # no country is the US, and that is no ZIP
