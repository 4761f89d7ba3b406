"""The coarse identity keys (`identity_release.COARSE_IDENTITY_SQL`) pair every two ways of writing an email or a
phone that the ad connectors send as the same identifier: Gmail addresses with other dots, case or outer spaces,
and one number in national, international or punctuated form. A pair the key missed would be a household member's
removal sent (the member stays out of the audience until its next change)."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from syncs.destinations.google_customer_match import GoogleCustomerMatchDestination
from syncs.destinations.meta_custom_audiences import MetaCustomAudiencesDestination
from syncs.identity_release import COARSE_IDENTITY_SQL
from syncs.sql_text import literal

LOCAL_PARTS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=2, max_size=12)
US_NUMBERS = st.integers(min_value=2_000_000, max_value=9_999_999).map(str)
AREA_CODES = st.sampled_from(["212", "415", "617", "650"])
PHONE_FORMATS = (
    "+1 ({area}) {a}-{b}",
    "{area}.{a}.{b}",
    "1-{area}-{a}-{b}",
    "+1{area}{a}{b}",
    "({area}) {a} {b}",
    " {area}/{a}{b} ",
)


def coarse(kind: str, value: str) -> str | None:
    return duckdb.sql(f"select {COARSE_IDENTITY_SQL[kind].format(value=literal(value))}").fetchall()[0][0]


def with_dots(local: str, positions: list[int]) -> str:
    return "".join(ch + ("." if i in positions and i < len(local) - 1 else "") for i, ch in enumerate(local))


@settings(max_examples=60, deadline=None)
@given(LOCAL_PARTS, st.lists(st.integers(0, 11), max_size=3), st.sampled_from(["gmail.com", "googlemail.com"]))
def test_gmail_addresses_google_sends_as_one_share_the_coarse_key(local: str, dots: list[int], domain: str) -> None:
    plain, dotted = f"{local}@{domain}", f"  {with_dots(local, dots).upper()}@{domain.title()} "
    sent = GoogleCustomerMatchDestination.sent_identity
    assert sent({"email": plain}) == sent({"email": dotted})
    assert coarse("email", plain) == coarse("email", dotted)


@settings(max_examples=60, deadline=None)
@given(AREA_CODES, US_NUMBERS, st.sampled_from(PHONE_FORMATS), st.sampled_from(PHONE_FORMATS))
def test_one_number_written_two_ways_shares_the_coarse_key(area: str, number: str, first: str, second: str) -> None:
    a, b = number[:3], number[3:]
    one, other = first.format(area=area, a=a, b=b), second.format(area=area, a=a, b=b)
    meta = MetaCustomAudiencesDestination.sent_identity
    assert meta({"PHONE": one, "COUNTRY": "US"}) == meta({"PHONE": other, "COUNTRY": "US"})
    assert coarse("phone", one) == coarse("phone", other)


def test_other_identities_differ_in_what_the_connectors_send() -> None:
    """The coarse key only proposes pairs: the connectors' identities tell them apart."""
    meta, google = MetaCustomAudiencesDestination.sent_identity, GoogleCustomerMatchDestination.sent_identity
    assert coarse("phone", "+1 212 555 2671") == coarse("phone", "(415) 555-2671")
    assert meta({"PHONE": "+1 212 555 2671", "COUNTRY": "US"}) != meta({"PHONE": "(415) 555-2671", "COUNTRY": "US"})
    assert coarse("email", "j.doe@example.com") == coarse("email", "jdoe@example.com")
    assert google({"email": "j.doe@example.com"}) != google({"email": "jdoe@example.com"})  # dots count outside Gmail
    assert meta({"EMAIL": "j.doe@gmail.com"}) != meta({"EMAIL": "jdoe@gmail.com"})  # Meta keeps Gmail dots
    assert meta({"EMAIL": "not an email"}) is None and google({}) is None
