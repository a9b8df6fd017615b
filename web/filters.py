"""The list's filters as a query string, both ways: parsed into an
:class:`~inspector.history.InspectionFilter` (a malformed value is a :class:`BadRequestValue`,
which the app answers with a 400 page naming the field) and written back for links.

Times are UTC: ``2026-11-30``, ``2026-11-30T08:00`` or with a zone (``...+01:00``). The decisions
and labels offered are the history's own (:data:`inspector.history.DECISIONS`, ``LABELS``), so
a new decision appears here without a change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from inspector.history import DECISIONS, LABELS, InspectionFilter

#: The filter fields, in the order of the form.
FIELDS = ("station", "product", "model", "since", "until", "decision", "label", "min_score", "max_score", "errors")
MAX_TEXT = 200


class BadRequestValue(ValueError):
    """A query or form value the app cannot take; ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Filters:
    """The filter as asked (``values``: the non-empty fields as text, for the form and links)
    and as the history takes it (``inspection_filter``)."""

    values: dict[str, str]
    inspection_filter: InspectionFilter


def parse_time(field: str, text: str) -> datetime:
    """A UTC time from ISO 8601 text; a time without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestValue(field, f"{text!r} is not a date or time (ISO 8601, e.g. 2026-11-30 or 2026-11-30T08:00)") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def parse_number(field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRequestValue(field, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRequestValue(field, f"{text!r} is not a finite number")
    return value


def parse_id(field: str, text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise BadRequestValue(field, f"{text!r} is not an id (a whole number)")
    return int(text)


#: The widest station name the history holds (its ``station`` columns).
MAX_STATION = 64


def parse_station(field: str, text: str) -> str | None:
    """A station name to filter by (None where empty): at most :data:`MAX_STATION` printable
    characters, as the history's ``station`` columns hold them."""
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_STATION:
        raise BadRequestValue(field, f"longer than {MAX_STATION} characters: not a station name")
    if not text.isprintable():
        raise BadRequestValue(field, f"{text!r} is not a station name (it holds control characters)")
    return text


def parse_filters(args: Mapping[str, str]) -> Filters:
    """The filters of a query string or form; BadRequestValue for any malformed one."""
    values = {name: args.get(name, "").strip() for name in FIELDS}
    values = {name: text for name, text in values.items() if text}
    for name, text in values.items():
        if len(text) > MAX_TEXT:
            raise BadRequestValue(name, f"longer than {MAX_TEXT} characters")
    decision, label = values.get("decision"), values.get("label")
    if decision is not None and decision not in DECISIONS:
        raise BadRequestValue("decision", f"{decision!r} is not one of {', '.join(DECISIONS)}")
    if label is not None and label not in LABELS:
        raise BadRequestValue("label", f"{label!r} is not one of {', '.join(LABELS)}")
    since = parse_time("since", values["since"]) if "since" in values else None
    until = parse_time("until", values["until"]) if "until" in values else None
    if since is not None and until is not None and since >= until:
        raise BadRequestValue("until", "is not after since: no inspection can match")
    low = parse_number("min_score", values["min_score"]) if "min_score" in values else None
    high = parse_number("max_score", values["max_score"]) if "max_score" in values else None
    if low is not None and high is not None and low > high:
        raise BadRequestValue("max_score", "is below min_score: no inspection can match")
    if values.get("errors", "") not in ("", "1"):
        raise BadRequestValue("errors", "must be 1 or absent")
    inspection_filter = InspectionFilter(
        start=since, end=until, decision=decision, label=label, min_score=low, max_score=high,
        product_id=parse_id("product", values["product"]) if "product" in values else None,
        model_version_id=parse_id("model", values["model"]) if "model" in values else None,
        station=values.get("station"), errors_only=values.get("errors") == "1",
    )
    return Filters(values, inspection_filter)


def parse_key(field: str, text: str) -> tuple[datetime, int]:
    """A keyset position ``<ISO time>~<id>`` (what :func:`key` writes)."""
    time_text, sep, id_text = text.rpartition("~")
    if not sep:
        raise BadRequestValue(field, f"{text!r} is not a position in the list")
    return parse_time(field, time_text), parse_id(field, id_text)


def key(row: Any) -> str:
    return f"{row.time.isoformat()}~{row.id}"
