"""The one duration grammar: scenario files and ``?window=`` read durations the same way."""

from __future__ import annotations

import math

import pytest

from failure_lab.durations import parse_duration, parse_window


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m30s", 90.0), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5),
     ("1m 30s", 90.0), ("1.5s", 1.5), ("1m500ms", 60.5), ("90", 90.0), ("2.5", 2.5),
     (" 45s ", 45.0), ("1h2m3s4ms", 3723.004)],
)  # fmt: skip
def test_duration_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "30x", "s", "1s1m", "-5s", "1.s", "nan", "inf", "1e999", "1e3", "+5", "5 m s", "0x10"],
)
def test_bad_duration_strings(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_duration_too_large_for_a_float_is_refused() -> None:
    assert math.isfinite(parse_duration("9" * 300))
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("9" * 400)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("9" * 400 + "h")


def test_a_window_is_bounded() -> None:
    assert parse_window("1m", 2, 3600) == 60.0
    with pytest.raises(ValueError, match=r"between 2s and 3600s"):
        parse_window("1s", 2, 3600)
    with pytest.raises(ValueError, match=r"between 2s and 3600s"):
        parse_window("2h", 2, 3600)
    with pytest.raises(ValueError, match=r"^window '1e999' is not a duration"):
        parse_window("1e999", 2, 3600)
