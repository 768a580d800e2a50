"""Fast RFC 3339 timestamps for generated events.

Times are kept as integer seconds since the epoch. Formatting a datetime per event would
cost more than generating the event, so the ``YYYY-MM-DDTHH:`` part is cached per hour
and the ``MM:SS`` part comes from a table. Every zone used has whole-hour offsets, so
minutes and seconds are the same in UTC and local time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MMSS = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))


class Clock:
    def __init__(self) -> None:
        self._utc: dict[int, str] = {}
        self._local: dict[tuple[str, int], tuple[date, int, str, str]] = {}
        self._zones: dict[str, ZoneInfo] = {}

    def utc_prefix(self, hour: int) -> str:
        prefix = self._utc.get(hour)
        if prefix is None:
            prefix = datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:")
            self._utc[hour] = prefix
        return prefix

    def local(self, zone: str, hour: int) -> tuple[date, int, str, str]:
        """(local date, local hour, local ``YYYY-MM-DDTHH:`` prefix, ``±HH:MM``) of an hour."""
        key = (zone, hour)
        found = self._local.get(key)
        if found is None:
            tz = self._zones.get(zone) or self._zones.setdefault(zone, ZoneInfo(zone))
            moment = datetime.fromtimestamp(hour * 3600, tz)
            offset = moment.utcoffset() or timedelta(0)
            minutes = int(offset.total_seconds()) // 60
            sign = "-" if minutes < 0 else "+"
            text = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
            found = (moment.date(), moment.hour, moment.strftime("%Y-%m-%dT%H:"), text)
            self._local[key] = found
        return found

    def stamp(self, second: int) -> str:
        return self.utc_prefix(second // 3600) + MMSS[second % 3600] + "Z"

    def forget_before(self, hour: int) -> None:
        """Drop cached hours that can no longer be asked for, keeping memory flat."""
        for key in [k for k in self._utc if k < hour]:
            del self._utc[key]
        for key in [k for k in self._local if k[1] < hour]:
            del self._local[key]


def hour_of(day: date, zone: str) -> int:
    """Hour index (hours since the epoch) of local midnight starting ``day`` in ``zone``."""
    moment = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
    return int(moment.timestamp()) // 3600
