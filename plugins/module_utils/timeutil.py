# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time helpers of the collection: UTC now, ISO 8601 UTC with milliseconds (the ledger's format), milliseconds."""

from __future__ import annotations

import datetime
import time


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    """ISO 8601 UTC with milliseconds, for example 2026-11-27T04:58:12.345Z."""
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def iso_from_epoch(epoch):
    """iso() of Unix time `epoch`."""
    return iso(datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc))


def parse_iso(text):
    """An aware UTC datetime from an ISO 8601 time; a time without zone is UTC. Raises ValueError."""
    if not isinstance(text, str) or not text:
        raise ValueError("%r is not an ISO 8601 time" % (text,))
    value = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    moment = datetime.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def seconds_between(start, end):
    """Seconds from `start` to `end` (datetimes), rounded to milliseconds, never negative."""
    return round(max(0.0, (end - start).total_seconds()), 3)


def to_ms(seconds, ndigits=None):
    """Milliseconds of a duration in seconds: a whole number, or rounded to `ndigits` decimals."""
    if ndigits is None:
        return int(round(seconds * 1000.0))
    return round(seconds * 1000.0, ndigits)


def elapsed_ms(started, ndigits=None):
    """Milliseconds since `started`, a time.monotonic() reading."""
    return to_ms(time.monotonic() - started, ndigits)
