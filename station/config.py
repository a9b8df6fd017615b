"""The station's configuration as plain data: cameras, product, storage, plant links.

One :class:`StationConfig` describes what :class:`station.Station` runs, whichever face made it:
``inspector run`` from its arguments, the desktop from its saved settings. Each plant link's
setting is declared once in :data:`LINKS` (the option that sets it, its title, a hint, how it is
checked); ``inspector run``'s options, the settings page's fields and the station all read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inspector.errors import InspectorError
from inspector.line.batcher import DEFAULT_MAX_WAIT_MS
from inspector.line.build import DRIFT_WINDOW, STALL_AFTER_S, check_camera_ids, check_max_batch
from inspector.line.pipeline import NO_PART_ALARM_AFTER, check_queue_size

MODES = ("triggered", "live")
TRIGGERS = ("free_run", "software", "hardware")
PLC_DOWN_POLICIES = ("ng", "stop")


def _check_station(uri: str) -> None:
    """InspectorError for a ``?station=NAME`` the rule for names refuses: every row and message
    the link sends carries it (the rule users and products follow, :func:`validate_name`)."""
    from urllib.parse import parse_qs, urlsplit

    from inspector.history.pins import validate_name

    for station in parse_qs(urlsplit(uri).query, keep_blank_values=True).get("station", []):
        try:
            validate_name(station, "station")
        except InspectorError as exc:
            raise InspectorError(f"bad ?station= in the link {shown_uri('plant_db', uri)}: {exc}") from None


def _check_modbus(uri: str) -> Any:
    from inspector.links.modbus import parse_modbus_uri

    return parse_modbus_uri(uri)


def _check_mqtt(uri: str) -> Any:
    from inspector.links.mqtt import parse_mqtt_uri

    target = parse_mqtt_uri(uri)
    _check_station(uri)
    return target


def _check_opcua(uri: str) -> Any:
    from inspector.links.opcua import parse_opcua_uri

    target = parse_opcua_uri(uri)
    _check_station(uri)
    return target


def _check_plant(uri: str) -> Any:
    from inspector.links.plant import parse_plant_url

    target = parse_plant_url(uri)
    _check_station(uri)
    return target


@dataclass(frozen=True)
class LinkSpec:
    """One plant link's setting. ``name``: the link's name in states and alarms; ``field``: the
    :class:`StationConfig` field (and ``inspector run``'s option ``--<field>``, dashes for
    underscores); ``per_camera``: one URI per camera, in camera order (a PLC answers one
    camera's triggers through its register block); ``check(uri)``: parses the URI (a PLC's
    register map read) and raises InspectorError for a bad one, connecting nothing."""

    name: str
    field: str
    title: str
    metavar: str
    help: str
    hint: str
    check: Callable[[str], Any]
    per_camera: bool = False

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")


#: The plant links, in the order they start: the OPC UA server first (a port already taken ends
#: the start before anything else runs), the PLC last.
LINKS: tuple[LinkSpec, ...] = (
    LinkSpec(
        "opcua", "opcua", "OPC UA", "URI",
        "also serve the station's state to SCADA and PLC clients as an OPC UA server: "
        "opcua://HOST[:PORT][?readonly=1&station=NAME], e.g. opcua://0.0.0.0:4840 (no security: an isolated network "
        "only; readonly=1 leaves out the methods ChangeProduct and AcknowledgeAlarms); secured: add "
        "security=SignAndEncrypt (or Sign)&cert=FILE&key=FILE&trust=DIR&users=FILE (see inspector opcua make-cert)",
        "opcua://0.0.0.0:4840?station=NAME, secured: &security=SignAndEncrypt&cert=DIR/cert.der&key=DIR/key.pem"
        "&trust=DIR/trusted&users=DIR/users (this station's own server; empty: none)", _check_opcua),
    LinkSpec(
        "mqtt", "publish", "MES (MQTT)", "URI",
        "also send every recorded verdict to the MES: mqtt://HOST:PORT/TOPIC[?station=NAME] (JSON, QoS 1; kept in "
        "the history's outbox while the broker is away)",
        "mqtt://HOST:PORT/TOPIC?station=NAME (empty: no MES)", _check_mqtt),
    LinkSpec(
        "plant_db", "plant_db", "plant database", "URL",
        "also forward every recorded verdict, its kept images and the line's alarms to the plant's shared "
        "database: postgresql://USER@HOST[:PORT]/DB[?station=NAME][&images=s3://BUCKET/PREFIX|off] (the station "
        "defaults to the host name; images go into the database unless an S3-compatible store or off is named; "
        "the station's own history keeps recording while the plant is away; the password comes from "
        "~/.pgpass or $PGPASSWORD, never the command line)",
        "postgresql://USER@HOST:PORT/DB?station=NAME (password: ~/.pgpass, mode 0600; empty: no plant database)",
        _check_plant),
    LinkSpec(
        "plc", "plc", "PLC", "URI",
        "also hand every recorded verdict to the PLC over Modbus TCP: "
        "modbus://HOST[:PORT][?unit=1&map=FILE.toml&products=1:tile,2:disc] (part id, OK/NG, score, strobe; the PLC "
        "acknowledges; with products=, the PLC's product number switches the product, audited); several cameras: "
        "once per camera, in the same order, each with a register block of its own",
        "modbus://HOST:PORT?unit=1&map=FILE.toml&products=1:tile,2:disc; several cameras: one per camera, in "
        "camera order, separated by spaces (empty: no PLC)", _check_modbus, per_camera=True),
)
LINK_BY_NAME: dict[str, LinkSpec] = {spec.name: spec for spec in LINKS}


def check_link(name: str, uri: str) -> None:
    """Refuse a malformed URI for the link ``name`` with InspectorError; nothing is connected."""
    spec = LINK_BY_NAME.get(name)
    if spec is None:
        raise InspectorError(f"no link named {name!r}")
    spec.check(uri)


def shown_uri(name: str, uri: str | None) -> str | None:
    """``uri`` as the audit and messages show it: a database password hidden."""
    if uri is None or name != "plant_db":
        return uri
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # checked before; never show what could not be parsed
        return "(a database URL)"


#: Disk space images never use: the verdicts' room. The station stops when a quarter of it is
#: left, and 50 MB hold tens of thousands of verdict rows and journal lines.
DISK_RESERVE_MB = 200.0


@dataclass(frozen=True)
class StationConfig:
    """What a station runs. ``cameras``: one URI or more, inspected on one engine (their frames
    scored together); ``product``: the product whose recipe decides (None: a model file given by
    a technician). Acquisition: ``mode``, ``trigger`` (``software`` presents parts with a part
    feeder at most ``feeder_rate`` per second: the demo's conveyor), ``trigger_line``,
    ``queue_size`` and ``max_frames`` per camera, ``stall_after_s``. Storage: images in
    ``image_dir``, at most ``quota_gb``, rejects always and ``pass_sample_rate`` of the passes
    kept; images never use the last ``disk_reserve_mb`` of the disk, and the station stops
    before a quarter of it is left (the verdicts' room). ``drift_window``: recent scores the
    drift alarm compares (0: off). ``no_part_alarm_after``: NO PART frames in a row that raise the
    ``no_part_run`` alarm (None: never). Several cameras: ``max_batch`` frames per forward pass
    (None: measured at the first start), a frame waiting at most ``batch_wait_ms`` for the
    others. The plant links (see :data:`LINKS`): ``opcua``, ``publish``, ``plant_db`` (None:
    none) and ``plc`` (one URI per camera, or none), with ``plc_down`` for a PLC that goes away. ``camera_settings``: exposure, gain, ROI set on every
    camera at the start (the product's, from its recipe)."""

    cameras: tuple[str, ...]
    image_dir: Path
    product: str | None = None
    mode: str = "triggered"
    trigger: str = "free_run"
    trigger_line: str = "Line1"
    feeder_rate: float | None = None
    queue_size: int | None = None
    max_frames: int | None = None
    stall_after_s: float | None = STALL_AFTER_S
    quota_gb: float = 20.0
    disk_reserve_mb: float = DISK_RESERVE_MB
    pass_sample_rate: float = 0.01
    drift_window: int = DRIFT_WINDOW
    no_part_alarm_after: int | None = NO_PART_ALARM_AFTER
    max_batch: int | None = None
    batch_wait_ms: float = DEFAULT_MAX_WAIT_MS
    opcua: str | None = None
    publish: str | None = None
    plant_db: str | None = None
    plc: tuple[str, ...] = ()
    plc_down: str = "ng"
    camera_settings: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Lists from a settings file or argparse become tuples: the configuration is a value.
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "plc", tuple(self.plc))
        object.__setattr__(self, "image_dir", Path(self.image_dir))
        if not self.cameras:
            raise InspectorError("no camera to inspect")
        check_camera_ids(self.cameras)
        check_max_batch(self.max_batch)
        if self.mode not in MODES:
            raise InspectorError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.trigger not in TRIGGERS:
            raise InspectorError(f"trigger must be one of {', '.join(TRIGGERS)}, not {self.trigger!r}")
        if self.plc_down not in PLC_DOWN_POLICIES:
            raise InspectorError(f"PLC down policy must be one of {', '.join(PLC_DOWN_POLICIES)}, not {self.plc_down!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InspectorError(f"max frames must be >= 1, got {self.max_frames}")
        if self.no_part_alarm_after is not None and (isinstance(self.no_part_alarm_after, bool)
                                                     or not isinstance(self.no_part_alarm_after, int)
                                                     or self.no_part_alarm_after < 1):
            raise InspectorError(f"the NO PART alarm's count must be a whole number >= 1, got {self.no_part_alarm_after!r}")
        check_queue_size(self.queue_size)
        if not self.disk_reserve_mb >= 0:
            raise InspectorError(f"disk reserve must be >= 0 MB, got {self.disk_reserve_mb:g}")
        if not self.quota_gb > 0:
            raise InspectorError(f"storage quota must be positive, got {self.quota_gb:g} GB")
        if not 0.0 <= self.pass_sample_rate <= 1.0:
            raise InspectorError(f"share of passed images kept must be within 0..1, got {self.pass_sample_rate:g}")
        if not 0.0 <= self.batch_wait_ms <= 1000.0:
            raise InspectorError(f"batch wait must be within 0..1000 ms, got {self.batch_wait_ms:g}")
        self._check_plcs()
        for spec in LINKS:  # what names the station in the plant, checked now rather than at the start
            value = getattr(self, spec.field)
            for uri in value if spec.per_camera else (value,) if value else ():
                _check_station(uri)

    def _check_plcs(self) -> None:
        if not self.plc:
            return
        if len(self.plc) != len(self.cameras):
            raise InspectorError(
                f"{len(self.plc)} PLC links for {len(self.cameras)} cameras: each camera's line needs a PLC register "
                "block of its own, so give one PLC link per camera, in the same order")
        twice = sorted({uri for uri in self.plc if self.plc.count(uri) > 1})
        if twice:
            raise InspectorError(f"PLC link {twice[0]} given twice: two cameras' results would overwrite each other "
                                 "in one register block")

    def with_changes(self, **changes: Any) -> StationConfig:
        """A copy with ``changes``, checked as a new configuration is."""
        return replace(self, **changes)

    def links(self) -> dict[str, tuple[str, ...]]:
        """The configured links by name, each its URIs (a PLC: one per camera), in start order."""
        out: dict[str, tuple[str, ...]] = {}
        for spec in LINKS:
            value = getattr(self, spec.field)
            uris = tuple(value) if spec.per_camera else ((value,) if value else ())
            if uris:
                out[spec.name] = uris
        return out
