"""``inspector run``'s plant links, for one camera's line or several cameras' (:mod:`cli.run_cameras`).

The MES (``--publish``), the plant database (``--plant-db``) and the OPC UA server (``--opcua``)
speak for the station: they hear every camera's verdicts and alarms, and the OPC UA object counts
them together. A PLC (``--plc``) talks through one register block whose results answer its
triggers in order, so each camera has its own: ``--plc`` once per ``--camera``, paired in the
order given. A product number switches the product of the whole station, so only one of them may
carry ``products=``.

:class:`RunLinks` makes them before any camera opens (a bad URI or register map is reported
first), starts them once the line is built, drains and reports them when it stops, and closes them
whatever ends the run.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable
from typing import Any

from inspector.errors import DatabaseError, InspectorError

log = logging.getLogger(__name__)

#: At the end of a run, seconds to go on sending results to the MES; the rest waits in the outbox.
PUBLISH_DRAIN_S = 5.0
#: At the end of a run, seconds to wait for the PLC to acknowledge the last results.
PLC_DRAIN_S = 2.0
#: At the end of a run, seconds to go on forwarding to the plant database; the rest goes next run.
PLANT_DRAIN_S = 5.0


class RunLinks:
    """The links ``args`` asks for, for a run of ``cameras`` cameras on ``db``; none started.

    :meth:`shared` are subscribed on every camera's line, :meth:`of_camera` on one camera's only.
    ``plc_down`` is set when a PLC link is down under ``--plc-down stop``.
    """

    def __init__(self, args: argparse.Namespace, db: Any, cameras: int, overridden: list[str]) -> None:
        self.publisher = _publisher(args, db)
        self.plant = _plant_link(args, db)  # it names the station before any row
        self.plcs = _plc_links(args, cameras)
        self.station = _opcua_link(args)
        self.plc_down = threading.Event()
        self._selectors: list[Any] = []
        self._args = args
        self._overridden = overridden  # a technician's override: the plant may not change the product

    def shared(self) -> list[Any]:
        return [link for link in (self.publisher, self.plant, self.station) if link is not None]

    def of_camera(self, index: int) -> list[Any]:
        return [self.plcs[index]] if self.plcs else []

    def start(self, db: Any, line: Any, recipe: Any, out: Any, load_product: Callable[[str], Any]) -> None:
        """Starts every link on ``line`` (a :class:`~inspector.line.Line` or
        :class:`~inspector.line.Lines`) deciding with ``recipe``, the OPC UA server first: a port
        already taken ends the run before anything else starts. ``load_product(name)`` loads a
        product's active recipe, for the plant's product changes."""
        switcher = None if self._overridden else _product_switcher(db, line, self.station, load_product)
        if self.station is not None:
            self.station.set_recipe(recipe.product, recipe.model_version_id, recipe.rule.threshold)
            self.station.on_change_product = _product_changer(switcher, "opcua")
            self.station.on_acknowledge = lambda alarms: _audit_acknowledge(db, alarms)
            self.station.start()
            out.line(f"serving the station over OPC UA at {self.station.endpoint} (no security"
                     f"{'; read-only' if self.station.target.readonly else ''})")
        for link in (self.publisher, self.plant):  # mqtt_down, plant_db_down, ...: log, console, links
            if link is not None:
                link.on_alarm = line.raise_alarm
                link.start()
        for plc in self.plcs:
            plc.on_alarm = line.raise_alarm  # plc_down/_recovered, ...: log, console, links
            plc.on_stop = lambda reason: self.plc_down.set()
            selector = _plc_product_selector(plc.target.products, line, switcher, self._overridden, out)
            if selector is not None:
                self._selectors.append(selector)
                plc.on_product = selector
            plc.start()

    def set_running(self, running: bool) -> None:
        if self.station is not None:
            self.station.set_running(running)

    def drain(self, out: Any) -> None:
        """At the end of the run: each link sends what it can in its time, and says what is left."""
        if self.publisher is not None:
            left = self.publisher.stop(PUBLISH_DRAIN_S)
            out.line(f"published {self.publisher.sent} results to {self._args.publish}; {left} wait in the outbox "
                     "for the next run")
        if self.plant is not None:
            left = self.plant.stop(PLANT_DRAIN_S)
            out.line(f"forwarded {self.plant.forwarded} inspections of station {self.plant.station!r} to "
                     f"{self.plant.target}; {left} wait in the local history for the next run")
        for uri, plc in zip(self._args.plc or (), self.plcs):
            left = plc.stop(PLC_DRAIN_S)
            out.line(f"PLC {uri}: {plc.acknowledged} results acknowledged ({plc.late} of them as late NG), "
                     f"{left} not acknowledged, {plc.dropped} dropped from a full queue")

    def close(self) -> None:
        """Whatever ended the run: every link stopped (a no-op for one already stopped); what is
        left stays in the outbox or the local history for the next run."""
        for link in (self.publisher, self.plant, *self.plcs):
            if link is not None:
                link.stop(0.0)
        for selector in self._selectors:
            selector.close()
        if self.station is not None:
            self.station.stop()


def _publisher(args: argparse.Namespace, db: Any) -> Any:
    """The MQTT link of ``--publish`` (None without): results go to the history's outbox in the
    inspection's transaction, and from there to the broker."""
    if not args.publish:
        return None
    from inspector.links.mqtt import MqttLink

    return MqttLink(db, args.publish)


def _plant_link(args: argparse.Namespace, db: Any) -> Any:
    """The plant database link of ``--plant-db`` (None without): the station records into its own
    history (``--db``) as always, and a thread forwards the rows to the plant database."""
    if not args.plant_db:
        return None
    from inspector.links.plant import PlantLink

    return PlantLink(db, args.plant_db)


def _plc_links(args: argparse.Namespace, cameras: int) -> list[Any]:
    """The Modbus PLC links of ``--plc``, one per camera in order (none without); parsing a URI
    reads its register map."""
    uris = args.plc or []
    if not uris:
        return []
    if len(uris) != cameras:
        raise InspectorError(f"--plc given {len(uris)} times for {cameras} cameras: each camera's line needs a "
                             "PLC register block of its own, so give --plc once per --camera, in the same order")
    twice = sorted({uri for uri in uris if uris.count(uri) > 1})
    if twice:
        raise InspectorError(f"--plc {twice[0]} given twice: two cameras' results would overwrite each other "
                             "in one register block")
    from inspector.links.modbus import ModbusLink

    links = [ModbusLink(uri, down_policy=args.plc_down) for uri in uris]
    numbered = [uri for uri, link in zip(uris, links) if link.target.products]
    if len(numbered) > 1:
        raise InspectorError(f"products= is given on {len(numbered)} --plc links; the product is the whole "
                             "station's, so only one PLC may choose it")
    return links


def _opcua_link(args: argparse.Namespace) -> Any:
    """The OPC UA server of ``--opcua`` (None without); not started."""
    if not args.opcua:
        return None
    from inspector.links.opcua import OpcUaLink

    return OpcUaLink(args.opcua)


def _product_switcher(db: Any, line: Any, station: Any, load_product: Callable[[str], Any]) -> Any:
    """What a product change asked for by the plant does (OPC UA's ChangeProduct, the PLC's
    product number): load the product's active recipe (on the asker's thread; the line goes on
    with the old one meanwhile), audit the change as ``change_product`` by the system user
    ``opcua`` or ``plc``, then decide every camera's next frames with it
    (:class:`inspector.line.product_change.ProductSwitcher`). A run with a technician's override
    (``--model``, ``--threshold``) has none: that decision is theirs. The camera keeps its
    settings: ``inspector run`` sets none."""
    from inspector.line.product_change import ProductSwitcher

    def shown(loaded: Any) -> None:
        if station is not None:
            station.set_recipe(loaded.product, loaded.model_version_id, loaded.rule.threshold)

    return ProductSwitcher(db, line, load_product, user="opcua", on_changed=shown)


def _product_changer(switcher: Any, user: str) -> Any:
    """``change(name) -> message`` by ``user`` through ``switcher`` (None: no product changes)."""
    if switcher is None:
        return None
    return lambda name: switcher.change(name, user=user)


def _plc_product_selector(products: Any, line: Any, switcher: Any, overridden: list[str], out: Any) -> Any:
    """A PLC link's ``on_product``: its product numbers (``?products=1:tile,2:disc`` in ``--plc``)
    to product changes by the user ``plc``; None without numbers, or with an override."""
    from inspector.line.product_change import PlcProductSelector

    if not products:
        return None
    if switcher is None:
        log.warning("the PLC's product numbers are ignored: this run decides with a technician's override (%s)",
                    ", ".join(overridden))
        return None
    return PlcProductSelector(products, _product_changer(switcher, "plc"), on_alarm=line.raise_alarm,
                              on_message=out.line)


def _audit_acknowledge(db: Any, alarms: list[Any]) -> None:
    """An OPC UA client acknowledged ``alarms``: audited as the desktop's acknowledgement is."""
    try:
        db.record_audit("opcua", "system", "acknowledge_alarms", "line",
                        {"alarms": [f"{a.kind}: {a.message}" for a in alarms]}, None)
    except DatabaseError as exc:
        log.warning("an OPC UA acknowledgement could not be audited: %s", exc)
