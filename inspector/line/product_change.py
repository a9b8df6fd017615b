"""A product change asked for by the plant -- OPC UA's ChangeProduct, the PLC's product number --
put on the running line between two parts, and audited.

:class:`ProductSwitcher` is the one switching path: load the product's active recipe (slow: the
model loads, while the line goes on with the old recipe), audit it as ``change_product`` by the
requesting system user (``opcua``, ``plc``), then hand it to the line, which decides the next frame
with it. No audit, no change: a database that refuses the entry refuses the product change.

:class:`PlcProductSelector` turns a Modbus link's ``on_product(number)`` (called on the link's
thread, which must not wait seconds for a model) into product changes on a worker thread of its
own, through the product map of the PLC URI (``?products=1:tile,2:disc``); the newest number
wins when several come while a model loads. A number the map does not name, and a change that
fails (no active model), raise the alarm ``plc_product_refused``; the line keeps its product.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from inspector.errors import InspectorError

log = logging.getLogger(__name__)

PLC_PRODUCT_REFUSED: Final = "plc_product_refused"


def decision_details(recipe: Any) -> dict[str, Any]:
    """What decides, as the audit records it: model version and file, the whole rule (the recheck
    band's lower threshold and the pixel size included: None where the rule has none), where the
    rule came from."""
    rule = recipe.rule
    return {"model_version": recipe.model_version_id, "model": str(recipe.model_path), "threshold": rule.threshold,
            "pixel_threshold": rule.pixel_threshold, "min_defect_area_px": rule.min_defect_area_px,
            "recheck_threshold": rule.recheck_threshold, "mm_per_px": rule.mm_per_px,
            "rule_source": recipe.source}


class ProductSwitcher:
    """``switcher.change(name) -> message``: put product ``name``'s recipe on ``line`` (anything
    with ``recipe`` and ``set_recipe(recipe)``: a :class:`~inspector.line.Line`, the desktop's line
    model). ``load(name)`` returns the product's :class:`~inspector.recipes.LoadedRecipe` (raises
    InspectorError for an unknown product or one without an active model); ``user``/``role``
    name who asked, in the audit; ``on_changed(recipe)`` is told afterwards (an OPC UA server
    showing the product). One change at a time; the caller's thread waits for the model to load.
    """

    def __init__(self, db: Any, line: Any, load: Callable[[str], Any], *, user: str, role: str = "system",
                 on_changed: Callable[[Any], None] | None = None) -> None:
        self.db, self.line, self.load = db, line, load
        self.user, self.role = user, role
        self.on_changed = on_changed
        self._lock = threading.Lock()

    def change(self, name: str, *, user: str | None = None) -> str:
        """Put ``name`` on the line; ``user``: who asked, instead of the switcher's own (one
        switcher serves OPC UA and the PLC alike, one change at a time)."""
        with self._lock:
            before = self.line.recipe
            if name == before.product:
                return f"product {name!r} is already on the line (model version {before.model_version_id})"
            loaded = self.load(name)
            self.db.record_audit(user or self.user, self.role, "change_product", f"product:{name}",
                                 {"product": before.product, **decision_details(before)},
                                 {"product": name, **decision_details(loaded)})
            self.line.set_recipe(loaded)
            if self.on_changed is not None:
                self.on_changed(loaded)
            return (f"product {name!r} on the line: model version {loaded.model_version_id}, "
                    f"threshold {loaded.rule.threshold:g}")


class PlcProductSelector:
    """A Modbus link's ``on_product(number)``: the product that ``products`` maps the number to
    goes on the line through ``change(name) -> message`` (e.g. :meth:`ProductSwitcher.change`),
    on this selector's own thread. Number 0 means "no product chosen" and changes nothing.
    ``on_alarm(kind, message)`` gets :data:`PLC_PRODUCT_REFUSED`; ``on_message(text)`` what a
    change did (default: the log). :meth:`close` ends the thread (a change under way finishes)."""

    def __init__(self, products: Mapping[int, str], change: Callable[[str], str], *,
                 on_alarm: Callable[[str, str], None] | None = None,
                 on_message: Callable[[str], None] | None = None) -> None:
        self.products = dict(products)
        self.change = change
        self.on_alarm = on_alarm
        self.on_message = on_message
        self.changes = 0  # numbers handled (changed, already on the line, or refused)
        self._cv = threading.Condition()
        self._wanted: int | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="plc-product", daemon=True)
        self._thread.start()

    def __call__(self, number: int) -> None:
        """The PLC's product number changed (on the PLC link's thread): quick, never waits."""
        with self._cv:
            self._wanted = number
            self._cv.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until no number waits and no change is under way; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._wanted is None and not self._busy, timeout)

    def close(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._wanted is not None or self._closed)
                if self._closed:
                    return
                number, self._wanted, self._busy = self._wanted, None, True
            try:
                self._select(number)
            finally:
                with self._cv:
                    self._busy = False
                    self.changes += 1
                    self._cv.notify_all()

    def _select(self, number: int) -> None:
        if number == 0:
            log.info("the PLC chose no product (number 0): the line keeps its product")
            return
        name = self.products.get(number)
        if name is None:
            known = ", ".join(f"{k}:{v}" for k, v in sorted(self.products.items())) or "none"
            self._alarm(f"the PLC chose product number {number}, which the PLC link's product map does not name "
                        f"(known: {known}); the line keeps its product")
            return
        try:
            message = self.change(name)
        except InspectorError as exc:
            self._alarm(f"the PLC chose product number {number} ({name!r}), refused: {exc}; the line keeps its product")
            return
        except Exception as exc:  # a bug: say so, keep the thread
            log.exception("PLC product change failed")
            self._alarm(f"the PLC chose product number {number} ({name!r}), failed: {type(exc).__name__}: {exc}")
            return
        if self.on_message is not None:
            self.on_message(f"PLC product number {number}: {message}")
        else:
            log.info("PLC product number %d: %s", number, message)

    def _alarm(self, message: str) -> None:
        if self.on_alarm is None:
            log.warning("%s: %s", PLC_PRODUCT_REFUSED, message)
            return
        try:
            self.on_alarm(PLC_PRODUCT_REFUSED, message)
        except Exception:
            log.exception("PLC product alarm callback failed")
