""""Test connection" for the plant links: :func:`probe` tries the link a URI names once, with a
short timeout, through the same client library the link uses, and says in one line what it found.

- ``modbus://...``: connects to the PLC (pymodbus) and reads the registers the PLC writes, as
  mapped -- a PLC that answers but refuses the map's addresses is found here, not on the line;
- ``mqtt://...``: connects to the broker (paho-mqtt) and waits for its CONNACK;
- ``postgresql://...`` (or SQLite): opens the plant database (SQLAlchemy, psycopg 3) and runs
  ``SELECT 1``;
- ``opcua://...``: the station's *own* server, so there is nothing to reach: the URI is checked
  and the address bound for a moment (a port already taken, an address not this machine's, say so).

Blocking (seconds at most): the desktop calls it off its GUI thread. No Qt here.
"""

from __future__ import annotations

import socket
import threading
from typing import Final
from urllib.parse import urlsplit

from inspector.errors import InspectorError

DEFAULT_TIMEOUT_S: Final = 3.0
SCHEMES: Final = ("modbus", "mqtt", "opcua", "postgresql", "sqlite")


def probe(uri: str, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Try the link ``uri`` names; a one-line description of what answered. Raises
    :class:`~inspector.errors.InspectorError` with the reason in one line when it cannot."""
    uri = uri.strip()
    scheme = urlsplit(uri).scheme.split("+")[0]
    try:
        if scheme == "modbus":
            return _probe_modbus(uri, timeout)
        if scheme == "mqtt":
            return _probe_mqtt(uri, timeout)
        if scheme == "opcua":
            return _probe_opcua(uri)
        if scheme in ("postgresql", "sqlite"):
            return _probe_database(uri, timeout)
    except InspectorError as exc:
        raise InspectorError(_one_line(str(exc))) from None
    raise InspectorError(f"not a link: {uri!r} (expected modbus://, mqtt://, opcua:// or postgresql://)")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _probe_modbus(uri: str, timeout: float) -> str:
    from inspector.links.modbus import _pymodbus, _runs, parse_modbus_uri

    target = parse_modbus_uri(uri)
    client_class, modbus_error = _pymodbus()
    where = f"PLC {target.host}:{target.port} (unit {target.unit})"
    client = client_class(target.host, port=target.port, timeout=timeout, retries=0)
    try:
        if not client.connect():
            raise InspectorError(f"cannot reach {where}")
        fields = target.map.plc
        product = None
        for start, names in _runs(fields):
            count = sum(fields[name].words for name in names)
            try:
                response = client.read_holding_registers(start, count=count, slave=target.unit)
            except (modbus_error, OSError) as exc:
                raise InspectorError(f"{where} does not answer: {exc or type(exc).__name__}") from None
            if response.isError():
                raise InspectorError(f"{where} refused registers {start}..{start + count - 1}: {response} "
                                     "(does the register map fit the PLC?)")
            if "product" in names:
                product = response.registers[fields["product"].address - start]
    finally:
        client.close()
    return f"connected to {where}; product number {product}"


def _probe_mqtt(uri: str, timeout: float) -> str:
    from inspector.links.mqtt import _paho, parse_mqtt_uri

    target = parse_mqtt_uri(uri)
    mqtt = _paho()
    where = f"MQTT broker {target.host}:{target.port}"
    answered = threading.Event()
    outcome: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        outcome.append("" if not getattr(reason_code, "is_failure", False) else str(reason_code))
        answered.set()

    def on_disconnect(client, userdata, flags, reason_code, properties) -> None:
        outcome.append(f"disconnected ({reason_code})")
        answered.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"inspector-probe-{target.station}",
                         clean_session=True)
    client.connect_timeout = timeout
    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    try:
        client.connect(target.host, target.port, keepalive=max(5, int(timeout) + 1))
    except (OSError, ValueError) as exc:
        raise InspectorError(f"cannot reach {where}: {exc}") from None
    client.loop_start()
    try:
        if not answered.wait(timeout):
            raise InspectorError(f"{where} did not answer within {timeout:g} s")
        if outcome[0]:
            raise InspectorError(f"{where} refused the connection: {outcome[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
    return f"connected to {where}; topic {target.topic}, station {target.station}"


def _probe_database(url: str, timeout: float) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    from inspector.history.db import error_reason
    from inspector.links.plant import parse_plant_target

    parsed, station, images = parse_plant_target(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.update_query_dict({"connect_timeout": str(max(1, round(timeout)))})
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise InspectorError("the plant database link needs psycopg: pip install 'inspector[plant]'") from None
    where = parsed.render_as_string(hide_password=True)
    engine = create_engine(parsed)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            version = connection.dialect.server_version_info
    except SQLAlchemyError as exc:
        raise InspectorError(f"cannot reach {where}: {error_reason(exc)}") from None
    finally:
        engine.dispose()
    server = ".".join(str(v) for v in version) if version else "?"
    said = f"connected to {where} (server {server}); station {station or socket.gethostname()}"
    if images.startswith("s3://"):
        from inspector.links.plant_images import ObjectStoreError
        from inspector.links.s3_store import S3Store

        try:
            said += f"; images to {S3Store(images).check()}"
        except ObjectStoreError as exc:
            raise InspectorError(f"{said}, but the images' object store did not answer: {exc}") from None
    return said


def _probe_opcua(uri: str) -> str:
    from inspector.links.opcua import _asyncua, parse_opcua_uri

    target = parse_opcua_uri(uri)
    _asyncua()  # the server needs it: say so now
    family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
            s.bind((target.host, target.port))
    except OSError as exc:
        raise InspectorError(f"the station cannot serve at {target.endpoint}: {exc.strerror or exc}") from None
    secured = ""
    if target.security is not None:  # its files were checked by the parse: say what a client will meet
        from inspector.links.opcua_security import CERT_SUFFIXES, read_users

        security = target.security
        try:
            trusted = sum(1 for p in security.trust.iterdir() if p.suffix.lower() in CERT_SUFFIXES)
        except OSError as exc:
            raise InspectorError(f"cannot read trust={security.trust}: {exc.strerror or exc}") from None
        users = "" if security.users is None else f", users: {len(read_users(security.users))}"
        secured = f"; {security.mode}, trusted client certificates: {trusted}{users}"
    return f"the station can serve at {target.endpoint} (the port is free; it serves while the line runs{secured})"
