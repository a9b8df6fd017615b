"""The station's plant links: made, started, drained and closed in one place.

The MES (MQTT), the plant database and the OPC UA server speak for the station: they hear every
camera's verdicts and alarms. A PLC talks through one register block whose results answer its
triggers in order, so each camera has its own (``StationConfig.plc``: one per camera). A product
number switches the product of the whole station, so only one PLC may carry ``products=``.

``strict`` (``inspector run``): a link that cannot be made or started ends the start with its
error, before a camera opens where it can. Not strict (the desktop): it is alarmed as
``link_error``, shown as "down", and the line runs without it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from inspector.errors import DatabaseError, InspectorError

from station.config import LINK_BY_NAME, StationConfig

log = logging.getLogger(__name__)

# The drains together stay within a container's default 10-s grace after SIGTERM (docker stop,
# systemd's default is longer): what does not fit waits for the next run, nothing is lost.
#: At the end of a run, seconds to go on sending results to the MES; the rest waits in the outbox.
PUBLISH_DRAIN_S = 3.0
#: At the end of a run, seconds to wait for the PLC to acknowledge the last results.
PLC_DRAIN_S = 2.0
#: At the end of a run, seconds to go on forwarding to the plant database; the rest goes next run.
PLANT_DRAIN_S = 3.0
#: A stop hurried by a second signal: seconds each link drains.
HURRIED_DRAIN_S = 0.5
#: Alarm of a link that could not be made or started (not strict).
LINK_ERROR = "link_error"
#: The alarms that say a link's state changed: its state is read again when one arrives.
LINK_ALARMS = frozenset({"plc_down", "plc_recovered", "mqtt_down", "mqtt_recovered", "plant_db_down",
                         "plant_db_recovered"})


def link_key(name: str, index: int, count: int) -> str:
    """A link's key in :attr:`StationLinks.states`: its name, a PLC beside others numbered (``plc2``)."""
    return name if count == 1 else f"{name}{index + 1}"


def configured_keys(config: StationConfig) -> list[str]:
    """The keys of the links ``config`` asks for, in start order."""
    return [link_key(name, i, len(uris)) for name, uris in config.links().items() for i in range(len(uris))]


def link_name(key: str) -> str:
    """The link a key in :attr:`StationLinks.states` is of: ``plc2`` -> ``plc``."""
    return key.rstrip("0123456789")


def link_title(key: str) -> str:
    """``plc2`` -> "PLC 2", ``mqtt`` -> "MES (MQTT)"."""
    name = link_name(key)
    return LINK_BY_NAME[name].title if name == key else f"{LINK_BY_NAME[name].title} {key[len(name):]}"


class StationLinks:
    """The links ``config`` asks for, made on ``db`` (none started). :attr:`shared` are heard on
    every camera's line, :meth:`of_camera` on one camera's only. :attr:`plc_down` is set when a
    PLC link goes down under ``plc_down="stop"``; ``on_stop_asked(reason)`` is told as well."""

    def __init__(self, config: StationConfig, db: Any, *, strict: bool,
                 on_alarm: Callable[[str, str], None] | None = None) -> None:
        self.config, self.db, self.strict = config, db, strict
        self._on_alarm = on_alarm  # before a line exists: a link that could not be made
        self.plc_down = threading.Event()
        self.on_stop_asked: Callable[[str], None] | None = None
        self.made: dict[str, Any] = {}  # by key, in start order
        self.uris: dict[str, str] = {}
        self._states: dict[str, str] = {}
        self._selectors: list[Any] = []
        self._running = False
        self._owns_outbox = False
        for name, uris in config.links().items():
            for i, uri in enumerate(uris):
                key = link_key(name, i, len(uris))
                self.uris[key] = uri
                try:
                    self.made[key] = self._make(name, uri)
                    self._states[key] = "stopped"
                except InspectorError as exc:
                    if strict:
                        self.close()
                        raise
                    self._failed(key, exc)
        numbered = [key for key, link in self.made.items() if key.startswith("plc") and link.target.products]
        if len(numbered) > 1:
            self.close()
            raise InspectorError(f"products= is given on {len(numbered)} PLC links; the product is the whole station's, "
                                 "so only one PLC may choose it")

    def _make(self, name: str, uri: str) -> Any:
        if name == "plc":
            from inspector.links.modbus import ModbusLink

            return ModbusLink(uri, down_policy=self.config.plc_down)
        if name == "mqtt":
            from inspector.links.mqtt import MqttLink

            link = MqttLink(self.db, uri)  # results go to the history's outbox in the inspection's transaction
            self._owns_outbox = True
            return link
        if name == "opcua":
            from inspector.links.opcua import OpcUaLink

            return OpcUaLink(uri)
        from inspector.links.plant import PlantLink

        return PlantLink(self.db, uri)  # it names the station before any row

    # -- who hears what -----------------------------------------------------------------------------

    @property
    def station(self) -> Any:
        """The OPC UA server, or None."""
        return self.made.get("opcua")

    @property
    def plcs(self) -> list[Any]:
        return [link for key, link in self.made.items() if key.startswith("plc")]

    def shared(self) -> list[Any]:
        """The line links every camera's line shares: the links but the PLCs, and the plant
        database link's ear for the line's alarms (it forwards them with the rows)."""
        shared = [link for key, link in self.made.items() if not key.startswith("plc")]
        plant = self.made.get("plant_db")
        return shared if plant is None else [*shared, plant.alarms]

    def of_camera(self, index: int) -> list[Any]:
        """Camera ``index``'s own links: its PLC (none where that PLC could not be made)."""
        uris = self.config.plc
        if not uris:
            return []
        link = self.made.get(link_key("plc", index, len(uris)))
        return [] if link is None else [link]

    # -- life ---------------------------------------------------------------------------------------

    def start(self, lines: Any, recipe: Any, *, change_product: Callable[[str, str], str] | None,
              acknowledge: Callable[[list[Any], str], None], on_message: Callable[[str], None]) -> None:
        """Starts every link on ``lines`` (their alarms go to the line's alarm path, and so to the
        log, the console and the desktop), the OPC UA server first. ``change_product(name, user)``
        puts a product on the line for the plant (None: a technician's override, no changes);
        ``acknowledge(alarms)``: an OPC UA client acknowledged these."""
        from inspector.line.product_change import PlcProductSelector

        for key, link in list(self.made.items()):
            if key == "opcua":
                link.set_recipe(recipe.product, recipe.model_version_id, recipe.rule.threshold)
                link.on_change_product = change_product  # (name, "opcua" or "opcua:<user>")
                link.on_acknowledge = acknowledge
            else:
                link.on_alarm = lines.raise_alarm  # plc_down/_recovered, mqtt_down, ...
            if key.startswith("plc"):
                link.on_stop = self._stop_asked
                if link.target.products:
                    if change_product is None:
                        log.warning("the PLC's product numbers are ignored: this run decides with a technician's "
                                    "override")
                    else:
                        selector = PlcProductSelector(link.target.products, lambda name: change_product(name, "plc"),
                                                      on_alarm=lines.raise_alarm, on_message=on_message)
                        self._selectors.append(selector)
                        link.on_product = selector
            try:
                link.start()
            except InspectorError as exc:
                if self.strict:
                    raise
                del self.made[key]
                if key == "opcua":
                    link.stop()
                self._failed(key, exc)
                continue
            if key == "opcua":
                security = link.target.security_mode
                on_message(f"serving the station over OPC UA at {link.endpoint} "
                           f"({'no security' if security == 'None' else f'security {security}'}"
                           f"{'; read-only' if link.target.readonly else ''})")
        self._running = True

    def set_running(self, running: bool) -> None:
        station = self.station
        if station is not None:
            station.set_running(running)

    def set_recipe(self, recipe: Any) -> None:
        station = self.station
        if station is not None:
            station.set_recipe(recipe.product, recipe.model_version_id, recipe.rule.threshold)

    def drain(self, on_message: Callable[[str], None], seconds: float | None = None) -> None:
        """At the end of a run: each link sends what it can in its time (``seconds`` each, else
        its own default) and says what is left; the OPC UA server says "stopped"."""
        self.set_running(False)
        for key, link in self.made.items():
            try:
                self._drain(key, link, on_message, seconds)
            except Exception:  # a link's bug must not keep the station from stopping
                log.exception("stopping the %s link failed", key)
        self._running = False

    def _drain(self, key: str, link: Any, on_message: Callable[[str], None], seconds: float | None) -> None:
        if key == "mqtt":
            left = link.stop(PUBLISH_DRAIN_S if seconds is None else seconds)
            on_message(f"published {link.sent} results to {self.config.publish}; {left} wait in the outbox for the "
                       "next run")
        elif key == "plant_db":
            left = link.stop(PLANT_DRAIN_S if seconds is None else seconds)
            images, waiting = "", f"{left} inspections"
            if link.images:
                store = getattr(link.objects, "url", None)
                images = f" and {link.images_forwarded} images{f' (to {store})' if store else ''}"
                waiting += f" (and the images of {link.pending_images()})"
            on_message(f"forwarded {link.forwarded} inspections of station {link.station!r} to {link.target}{images}; "
                       f"{waiting} wait on this station for the next run")
        elif key.startswith("plc"):
            left = link.stop(PLC_DRAIN_S if seconds is None else seconds)
            on_message(f"PLC {self.uris[key]}: {link.acknowledged} results "
                       f"acknowledged ({link.late} of them as late NG), {left} not acknowledged, {link.dropped} "
                       "dropped from a full queue")

    def close(self) -> None:
        """Whatever ended the run: every link stopped (a no-op for one already stopped); what is
        left stays in the outbox or the local history for the next run."""
        for key, link in self.made.items():
            try:
                if key == "opcua":
                    link.stop()
                else:
                    link.stop(0.0)
            except Exception:
                log.exception("closing the %s link failed", key)
        for selector in self._selectors:
            selector.close()
        self._selectors = []
        if self._owns_outbox:
            self.db.outbox_message = None  # the next run's MQTT link writes the outbox again
            self._owns_outbox = False
        self._running = False

    # -- state --------------------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        """Each configured link's state by key: its own ("connecting", "connected", "retrying",
        "serving", "stopped"), or "down" when it could not be made or started, or its thread
        ended while the station runs."""
        states = dict(self._states)
        for key, link in self.made.items():
            if hasattr(link, "serving"):
                state = "serving" if link.serving else "stopped"
            else:
                state = link.state
            states[key] = "down" if self._running and state == "stopped" else state
        return states

    def _stop_asked(self, reason: str) -> None:
        self.plc_down.set()
        if self.on_stop_asked is not None:
            self.on_stop_asked(reason)

    def _failed(self, key: str, exc: InspectorError) -> None:
        self._states[key] = "down"
        message = f"{link_title(key)} link not started: {exc}"
        if self._on_alarm is not None:
            self._on_alarm(LINK_ERROR, message)
        else:
            log.warning("%s", message)


def probe(name: str, uri: str, timeout: float) -> str:
    """Tries the link ``name`` at ``uri`` (a PLC field may hold one URI per camera, separated by
    spaces): what answered, in words; InspectorError when nothing does. Changes nothing."""
    from inspector.links.probe import probe as probe_one

    uris = uri.split() if name == "plc" else [uri]
    return "; ".join(probe_one(one, timeout) for one in uris)


def audit_acknowledge(db: Any, alarms: list[Any], user: str = "opcua") -> None:
    """An OPC UA client (``user``: ``opcua``, or ``opcua:NAME`` signed in to a secured server)
    acknowledged ``alarms``: audited as the desktop's acknowledgement is."""
    try:
        db.record_audit(user, "system", "acknowledge_alarms", "line",
                        {"alarms": [f"{a.kind}: {a.message}" for a in alarms]}, None)
    except DatabaseError as exc:
        log.warning("an OPC UA acknowledgement could not be audited: %s", exc)
