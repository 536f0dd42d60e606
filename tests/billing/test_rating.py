"""Golden rating cases computed by hand, and hypothesis properties of the pure functions."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from mno.billing import rating
from mno.billing.periods import local_days, month_bounds

TIERS = [
    {"up_to": 1000, "unit_price": "0"},
    {"up_to": 10000, "unit_price": "0.002"},
    {"up_to": None, "unit_price": "0.001"},
]


def test_graduated_across_tier_boundaries() -> None:
    assert rating.graduated(D(1000), TIERS, "EUR").amount == D("0.00")
    assert rating.graduated(D(1001), TIERS, "EUR").amount == D("0.00")  # 0.002 rounds to 0.00
    assert rating.graduated(D(10000), TIERS, "EUR").amount == D("18.00")  # 9000 * 0.002
    assert rating.graduated(D(15000), TIERS, "EUR").amount == D("23.00")  # 18 + 5000 * 0.001
    line = rating.graduated(D(15000), TIERS, "EUR")
    assert [t["units"] for t in line.tiers] == ["1000", "9000", "5000"]


def test_volume_whole_quantity_at_landing_tier() -> None:
    tiers = [{"up_to": 100, "unit_price": "1"}, {"up_to": None, "unit_price": "0.5"}]
    assert rating.volume(D(100), tiers, "USD").amount == D("100.00")
    assert rating.volume(D(101), tiers, "USD").amount == D("50.50")


def test_package_rounds_packages_up() -> None:
    assert rating.package(D(0), D(100), D(5), "USD").amount == D("0.00")
    assert rating.package(D(1), D(100), D(5), "USD").amount == D("5.00")
    assert rating.package(D(100), D(100), D(5), "USD").amount == D("5.00")
    assert rating.package(D(101), D(100), D(5), "USD").amount == D("10.00")


def test_per_unit_jpy_and_bhd_minor_units() -> None:
    assert rating.per_unit(D(3), D("33.5"), "JPY").amount == D("101")  # 100.5 half up
    assert rating.per_unit(D(3), D("0.3335"), "BHD").amount == D("1.001")  # 1.0005 half up
    assert rating.per_unit(D(3), D("0.3335"), "BHD").amount_minor == 1001


def test_time_minimum_and_round_up() -> None:
    # 7 min -> minimum 15; 22 min -> rounded up to 30; total 45 min at 60/h = 45.00
    line = rating.time_minutes([D(7), D(22)], D(60), "USD", minimum=D(15), round_up_to=D(15))
    assert line.amount == D("45.00")
    assert line.quantity == D(45)


def test_bucket_with_rollover() -> None:
    # 100 included, 20 rolled in, 130 used: 10 over at 2.00
    line, out = rating.bucket(D(130), D(100), D(20), D(2), "USD", rollover_cap=D(50))
    assert line.amount == D("20.00") and out == D(0)
    # 60 used: 40 unused, capped at 25 rolled over, no overage
    line, out = rating.bucket(D(60), D(100), D(0), D(2), "USD", rollover_cap=D(25))
    assert line.amount == D("0.00") and out == D(25)


def test_proration_in_28_29_30_31_day_months() -> None:
    for (y, m), days in {(2026, 2): 28, (2028, 2): 29, (2026, 4): 30, (2026, 10): 31}.items():
        start, end = month_bounds(y, m, "UTC")
        assert local_days(start, end, "UTC") == days
        # 10 days used of the month at 30.00
        line = rating.fixed(D(30), "USD", D(10) / D(days))
        expected = (D(300) / D(days)).quantize(D("0.01"), rounding="ROUND_HALF_UP")
        assert line.amount == expected
    assert rating.fixed(D(30), "USD", D(10) / D(31)).amount == D("9.68")
    assert rating.fixed(D(30), "USD", D(10) / D(28)).amount == D("10.71")


def test_dst_months_have_whole_local_days() -> None:
    # America/New_York leaves DST on 2026-11-01; Pacific/Auckland enters it 2026-09-27.
    for tz, (y, m), days in (
        ("America/New_York", (2026, 11), 30),
        ("Pacific/Auckland", (2026, 9), 30),
        ("Pacific/Auckland", (2027, 4), 30),
    ):
        start, end = month_bounds(y, m, tz)
        assert local_days(start, end, tz) == days
    s, e = month_bounds(2026, 11, "America/New_York")
    assert (e - s).total_seconds() == 30 * 86400 + 3600  # one extra hour, still 30 days
    # consecutive periods touch: no gap, no overlap
    assert (
        month_bounds(2026, 10, "Pacific/Auckland")[1]
        == month_bounds(2026, 11, "Pacific/Auckland")[0]
    )


def test_tax_inclusive_and_exclusive() -> None:
    assert rating.tax(D("100.00"), D(20), False, "EUR") == D("20.00")
    assert rating.tax(D("120.00"), D(20), True, "EUR") == D("20.00")
    assert rating.tax(D("10.00"), D("8.5"), False, "JPY") == D("1")


@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=0, max_value=10**7))
def test_graduated_split_is_monotone_and_additive_in_whole_tiers(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert (
        rating.graduated(D(lo), TIERS, "EUR").amount <= rating.graduated(D(hi), TIERS, "EUR").amount
    )


@given(
    st.decimals(min_value=0, max_value=10**6, places=2),
    st.decimals(min_value=0, max_value=100, places=2),
)
def test_discount_never_exceeds_subtotal(subtotal: D, pct: D) -> None:
    d = rating.discount(subtotal, "percentage", pct, "USD")
    assert D(0) <= d <= subtotal
    assert rating.discount(subtotal, "fixed", pct * 1000, "USD") <= subtotal
