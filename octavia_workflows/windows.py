"""Maintenance windows: when a job may start targets.

A window is written ``[DAYS] HH:MM-HH:MM [ZONE]``:

- ``DAYS``: the days the window opens on, comma-separated days or
  ranges of the week (``Mon``, ``Sat-Sun``, ``Mon-Fri``, ``Fri-Mon``,
  ``Tue,Thu``), or ``daily``; left out, every day;
- ``HH:MM-HH:MM``: when it opens and closes; an end at or before the
  start crosses midnight (``Fri 22:00-02:00`` closes on Saturday);
- ``ZONE``: an IANA time zone (``Europe/Berlin``); left out, UTC.

Examples: ``Sat-Sun 01:00-05:00``, ``Mon-Fri 22:00-04:00 Europe/Berlin``,
``daily 00:30-03:00``.

:func:`parse` raises :class:`~octavia_workflows.exceptions.
InvalidParameter` with one line saying what is wrong; nothing else here
raises.  The functions take the current time as an argument, so tests
move the clock instead of waiting for it.
"""

import dataclasses
import datetime
import re
import zoneinfo

from octavia_workflows import exceptions

DAYS = ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')
_TIME = re.compile(r'^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$')
UTC = datetime.timezone.utc


@dataclasses.dataclass(frozen=True)
class Window:
    """A parsed window (see the module docstring)."""

    text: str
    days: frozenset
    start: datetime.time
    end: datetime.time
    zone: datetime.tzinfo

    def _spans(self, now):
        """(opens, closes) of the windows opening from a day before
        ``now`` to eight days after it, in order."""
        local = now.astimezone(self.zone).date()
        for offset in range(-1, 9):
            day = local + datetime.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens = datetime.datetime.combine(day, self.start, self.zone)
            close_day = day + datetime.timedelta(
                days=1 if self.end <= self.start else 0)
            closes = datetime.datetime.combine(close_day, self.end,
                                               self.zone)
            yield opens, closes

    def closes_at(self, now):
        """When the window ``now`` is in closes; None if it is shut."""
        for opens, closes in self._spans(now):
            if opens <= now < closes:
                return closes
        return None

    def is_open(self, now):
        return self.closes_at(now) is not None

    def next_open(self, now):
        """``now`` if the window is open, else when it opens next."""
        if self.is_open(now):
            return now
        return min(opens for opens, _ in self._spans(now) if opens > now)

    @property
    def seconds(self):
        """How long the window lasts each time it opens."""
        start = self.start.hour * 3600 + self.start.minute * 60
        end = self.end.hour * 3600 + self.end.minute * 60
        return (end - start) % 86400 or 86400

    def describe(self, moment):
        """``2026-12-05 01:00 UTC`` in the window's own zone."""
        return moment.astimezone(self.zone).strftime('%Y-%m-%d %H:%M %Z')


def _days(text):
    if text == 'daily':
        return frozenset(range(7))
    days = set()
    for item in text.split(','):
        ends = item.split('-')
        if len(ends) > 2 or not all(e in DAYS for e in ends):
            raise ValueError(f'{item!r} is not a day or range of days '
                             '(Mon..Sun, e.g. Sat-Sun)')
        first = DAYS.index(ends[0])
        last = DAYS.index(ends[-1])
        days.update((first + n) % 7 for n in range((last - first) % 7 + 1))
    return frozenset(days)


def _times(text):
    match = _TIME.match(text)
    if not match:
        raise ValueError(f'{text!r} is not HH:MM-HH:MM')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f'{text!r} is not a valid time of day')
    if (h1, m1) == (h2, m2):
        raise ValueError(f'{text!r} opens and closes at the same time')
    return datetime.time(h1, m1), datetime.time(h2, m2)


def parse(text, name='window'):
    """The :class:`Window` written ``text``.

    :raises InvalidParameter: one line naming parameter ``name``.
    """
    words = str(text or '').split()
    try:
        if not words or len(words) > 3:
            raise ValueError('expected [DAYS] HH:MM-HH:MM [ZONE]')
        times_at = next((i for i, w in enumerate(words) if _TIME.match(w)
                         or ':' in w), None)
        if times_at is None or times_at > 1:
            raise ValueError('expected [DAYS] HH:MM-HH:MM [ZONE]')
        days = (_days(words[0].lower()) if times_at == 1
                else frozenset(range(7)))
        start, end = _times(words[times_at])
        rest = words[times_at + 1:]
        if len(rest) > 1:
            raise ValueError('expected [DAYS] HH:MM-HH:MM [ZONE]')
        zone = UTC
        if rest and rest[0].upper() != 'UTC':
            try:
                zone = zoneinfo.ZoneInfo(rest[0])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f'unknown time zone {rest[0]!r}') from None
    except ValueError as exc:
        raise exceptions.InvalidParameter(
            f'parameter {name}: {text!r}: {exc} (e.g. "Sat-Sun 01:00-05:00'
            f'" or "Mon-Fri 22:00-04:00 Europe/Berlin")') from None
    return Window(str(text), days, start, end, zone)


def now():
    """The current time, aware (UTC)."""
    return datetime.datetime.now(UTC)
