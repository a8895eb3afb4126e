"""Time helpers (module_utils/timeutil.py)."""

from ledger_test_helpers import T0

from ansible_collections.leanvibe.deploy.plugins.module_utils.timeutil import iso, parse_iso


def test_iso_has_milliseconds_and_z():
    assert iso(T0) == "2026-11-27T04:58:12.345Z"
    assert parse_iso("2026-11-27T04:58:12.345Z") == T0
    assert parse_iso("2026-11-27T05:58:12.345+01:00") == T0
