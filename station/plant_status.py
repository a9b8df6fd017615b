"""What the stations told the plant, for the browser review's station page (``inspector serve``):
each station's last report of its forwarding (:func:`station_reports`, from ``station_status``)
and the alarms the stations raised (:func:`alarms_forwarded`, from ``alarms``).

A station's plant link records every alarm its line raises in the station's own history and
forwards it to the plant's (by (station, uid): sending one again adds nothing); while connected it
also writes, every few seconds, the rows and images still waiting on the station's disk and the
kept images its quota removed before they could go. Over the plant's database both tables hold
every station's; over a station's own SQLite, its own alarms (and whatever status its link keeps
there). A report older than :data:`STALE_AFTER` is stale: the station may be off, or cut off from
the plant, and what it holds now is not known here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from inspector.history import HistoryDB
from inspector.history.tables import StationAlarm, StationStatus
from inspector.inspection import as_utc

#: A station's report older than this is shown as stale (its link reports every few seconds while connected).
STALE_AFTER = timedelta(minutes=2)
#: How many alarms the station page lists.
ALARMS_SHOWN = 50

__all__ = ["ALARMS_SHOWN", "RecordedAlarm", "STALE_AFTER", "StationReport", "alarm_stations", "alarms_forwarded",
           "station_reports"]


@dataclass(frozen=True)
class StationReport:
    """One station's last report: when the database received it (``seen``, its clock) and what
    was waiting on the station's disk then."""

    station: str
    seen: datetime
    rows_waiting: int
    images_waiting: int
    images_gone: int

    def age(self, now: datetime) -> timedelta:
        return as_utc(now) - self.seen

    def stale(self, now: datetime, after: timedelta = STALE_AFTER) -> bool:
        """Whether this report is older than ``after`` at ``now``: the station stopped reporting."""
        return self.age(now) > after


@dataclass(frozen=True)
class RecordedAlarm:
    """An alarm a station raised, as recorded here."""

    id: int
    station: str
    time: datetime
    kind: str
    message: str


def station_reports(db: HistoryDB) -> dict[str, StationReport]:
    """Each station's last report, by station name (a station that never reported is absent)."""
    with db.session() as s:
        rows = s.execute(select(StationStatus.station, StationStatus.seen, StationStatus.rows_waiting,
                                StationStatus.images_waiting, StationStatus.images_gone)).all()
    return {r.station: StationReport(r.station, as_utc(r.seen), r.rows_waiting, r.images_waiting, r.images_gone)
            for r in rows}


def alarms_forwarded(db: HistoryDB, station: str | None = None, limit: int = ALARMS_SHOWN) -> list[RecordedAlarm]:
    """The latest ``limit`` alarms recorded here, newest first (of ``station`` only, if given)."""
    query = select(StationAlarm.id, StationAlarm.station, StationAlarm.time, StationAlarm.kind, StationAlarm.message)
    if station is not None:
        query = query.where(StationAlarm.station == station)
    query = query.order_by(StationAlarm.time.desc(), StationAlarm.id.desc()).limit(limit)
    with db.session() as s:
        return [RecordedAlarm(r.id, r.station, as_utc(r.time), r.kind, r.message) for r in s.execute(query)]


def alarm_stations(db: HistoryDB) -> list[str]:
    """The stations with alarms recorded here, by name."""
    with db.session() as s:
        return list(s.scalars(select(StationAlarm.station).distinct().order_by(StationAlarm.station)))
