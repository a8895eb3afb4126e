"""Time helpers (module_utils/timeutil.py)."""

import datetime
import time

import pytest
from ledger_test_helpers import T0

from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import elapsed_ms, iso, iso_from_epoch, parse_iso, seconds_between, to_ms


def test_iso_has_milliseconds_and_z():
    assert iso(T0) == "2026-11-27T04:58:12.345Z"
    assert parse_iso("2026-11-27T04:58:12.345Z") == T0
    assert parse_iso("2026-11-27T05:58:12.345+01:00") == T0


def test_iso_from_epoch_matches_iso():
    assert iso_from_epoch(T0.timestamp()) == "2026-11-27T04:58:12.345Z"


def test_a_time_without_zone_is_utc():
    assert parse_iso("2026-11-27T04:58:12.345") == T0


@pytest.mark.parametrize("text", [None, "", "yesterday", 5])
def test_parse_iso_refuses_what_is_not_a_time(text):
    with pytest.raises(ValueError):
        parse_iso(text)


def test_seconds_between_is_rounded_and_never_negative():
    later = T0 + datetime.timedelta(seconds=1.23456)
    assert seconds_between(T0, later) == 1.235
    assert seconds_between(later, T0) == 0.0


def test_milliseconds_whole_or_to_some_decimals():
    assert to_ms(0.0125) == 12 and isinstance(to_ms(0.0125), int)
    assert to_ms(0.01234, 1) == 12.3
    assert 0 <= elapsed_ms(time.monotonic()) < 1000
