"""The OPC UA server secured: Sign / SignAndEncrypt with the station's certificate, a folder of
trusted client certificates, users with passwords for the methods. A real asyncua server on
127.0.0.1 and real asyncua clients with certificates of their own, as a SCADA would connect.

The keys (2048-bit RSA) and the secured server are made once for the module.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("asyncua")

from asyncua import Client, ua  # noqa: E402
from asyncua.crypto import security_policies  # noqa: E402
from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate  # noqa: E402
from asyncua.ua.uaerrors import BadCertificateUntrusted, BadUserAccessDenied  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import (  # noqa: E402
    BestAvailableEncryption, Encoding, NoEncryption, PrivateFormat)
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402

from inspector.alarms import Alarm  # noqa: E402
from inspector.errors import InspectorError  # noqa: E402
from inspector.links.opcua import NAMESPACE, OBJECT, OpcUaLink, parse_opcua_uri  # noqa: E402
from inspector.links.opcua_security import make_certificate, read_users, set_user  # noqa: E402
from inspector.history import HistoryDB  # noqa: E402
from station import check_link  # noqa: E402
from test_opcua_link import RUN_SERVES_WITHIN_S, free_port, gray_frames, inspector_run, tile_and_disc  # noqa: E402

PASSWORD = "line-2 changes"


def client_identity(folder: Path, name: str) -> tuple[Path, Path]:
    """A SCADA client's own self-signed certificate and key, as its configuration tool makes them."""
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(
        key, name, {}, [x509.UniformResourceIdentifier(f"urn:test:{name}"), x509.DNSName(socket.gethostname())],
        [ExtendedKeyUsageOID.CLIENT_AUTH], days=30)
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_path, key_path


def secured_uri(pki: Path, port: int, mode: str = "SignAndEncrypt", users: bool = True, extra: str = "") -> str:
    uri = (f"opcua://127.0.0.1:{port}?station=line-s&security={mode}&cert={quote(str(pki / 'cert.der'))}"
           f"&key={quote(str(pki / 'key.pem'))}&trust={quote(str(pki / 'trusted'))}")
    return uri + (f"&users={quote(str(pki / 'users'))}" if users else "") + extra


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """The station's certificate and key (``make-cert``'s), its users, the client ``scada``
    trusted, the client ``stranger`` not."""
    folder = tmp_path_factory.mktemp("pki")
    make_certificate(folder, "line-s", ["127.0.0.1", "localhost"], days=30)
    set_user(folder / "users", "op", PASSWORD)
    for name in ("scada", "stranger"):
        client_identity(folder, name)
    shutil.copy(folder / "scada.der", folder / "trusted" / "scada.der")
    return folder


@pytest.fixture(scope="module")
def secured(pki: Path):
    asked: list[str] = []
    link = OpcUaLink(secured_uri(pki, free_port()),
                     on_change_product=lambda name, user: asked.append((name, user)) or f"{name} on")
    link.asked = asked  # type: ignore[attr-defined]
    link.start()
    yield link
    link.stop()


Work = Callable[[Client, int], Awaitable[Any]]


def connect(endpoint: str, pki: Path, work: Work, client: str | None = "scada", user: str | None = None,
            password: str | None = None, policy: str = "Basic256Sha256", mode: str = "SignAndEncrypt") -> Any:
    """Connect to ``endpoint`` as ``client`` (its certificate; None: no security) and run ``work``."""

    async def run() -> Any:
        c = Client(endpoint, timeout=10)
        c.session_timeout = 60_000
        if client is not None:
            c.application_uri = f"urn:test:{client}"
            await c.set_security(getattr(security_policies, f"SecurityPolicy{policy}"), str(pki / f"{client}.der"),
                                 str(pki / f"{client}.pem"), mode=getattr(ua.MessageSecurityMode, mode))
        if user is not None:
            c.set_user(user)
            c.set_password(password or "")
        await c.connect()
        try:
            return await work(c, await c.get_namespace_index(NAMESPACE))
        finally:
            await c.disconnect()

    return asyncio.run(run())


async def read_name(c: Client, ns: int) -> str:
    return await c.get_node(ua.NodeId(f"{OBJECT}.StationName", ns)).read_value()


async def change_to_disc(c: Client, ns: int) -> str:
    return await c.get_node(ua.NodeId(OBJECT, ns)).call_method(ua.NodeId(f"{OBJECT}.ChangeProduct", ns), "disc")


# --- who gets in -------------------------------------------------------------------------------------


def test_the_server_offers_no_unsecured_endpoint_and_refuses_an_unsecured_session(secured: OpcUaLink, pki: Path,
                                                                                   monkeypatch) -> None:
    async def endpoints() -> list[Any]:
        return await Client(secured.endpoint, timeout=10).connect_and_get_server_endpoints()

    offered = asyncio.run(endpoints())
    assert {e.SecurityMode for e in offered} == {ua.MessageSecurityMode.SignAndEncrypt}
    assert {e.SecurityPolicyUri for e in offered} == {
        security_policies.SecurityPolicyBasic256Sha256.URI, security_policies.SecurityPolicyAes128Sha256RsaOaep.URI,
        security_policies.SecurityPolicyAes256Sha256RsaPss.URI}
    with pytest.raises(ua.UaError, match="No matching endpoints"):  # a well-behaved client gives up
        connect(secured.endpoint, pki, read_name, client=None)
    # One that insists, on the unsecured channel every server keeps for listing its endpoints:
    monkeypatch.setattr(Client, "find_endpoint", staticmethod(lambda eps, mode, uri: eps[0]))
    with pytest.raises(BadUserAccessDenied):
        connect(secured.endpoint, pki, read_name, client=None)


def test_an_untrusted_client_certificate_is_refused(secured: OpcUaLink, pki: Path, caplog) -> None:
    with pytest.raises(BadCertificateUntrusted):
        connect(secured.endpoint, pki, read_name, client="stranger")
    assert any("CN=stranger" in r.getMessage() and "copy it there" in r.getMessage() for r in caplog.records)


def test_an_untrusted_client_is_refused_even_past_the_certificate_check(secured: OpcUaLink, pki: Path,
                                                                         monkeypatch) -> None:
    """asyncua checks the certificate a client names in CreateSession, which a client may leave out;
    the session is refused all the same, on the secure channel's own certificate."""
    monkeypatch.setattr(secured._server.iserver, "certificate_validator", None)
    with pytest.raises(BadUserAccessDenied):
        connect(secured.endpoint, pki, read_name, client="stranger")


def test_a_client_trusted_while_the_server_runs_gets_in_at_its_next_session(secured: OpcUaLink, pki: Path) -> None:
    trusted = pki / "trusted" / "stranger.der"
    shutil.copy(pki / "stranger.der", trusted)
    try:
        assert connect(secured.endpoint, pki, read_name, client="stranger") == "line-s"
    finally:
        trusted.unlink()
    with pytest.raises(BadCertificateUntrusted):
        connect(secured.endpoint, pki, read_name, client="stranger")


# --- who may call ------------------------------------------------------------------------------------


def test_a_trusted_client_without_a_user_reads_but_may_not_change_the_product(secured: OpcUaLink, pki: Path) -> None:
    async def read_then_call(c: Client, ns: int) -> str:
        name = await read_name(c, ns)
        with pytest.raises(BadUserAccessDenied):
            await change_to_disc(c, ns)
        return name

    assert connect(secured.endpoint, pki, read_then_call) == "line-s"
    assert secured.asked == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("user", "password"), [("op", "not the password"), ("nobody", PASSWORD), ("op", "")])
def test_a_wrong_user_or_password_is_refused(secured: OpcUaLink, pki: Path, user: str, password: str) -> None:
    with pytest.raises(BadUserAccessDenied):
        connect(secured.endpoint, pki, change_to_disc, user=user, password=password)
    assert secured.asked == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"])
def test_the_right_user_changes_the_product(secured: OpcUaLink, pki: Path, policy: str) -> None:
    secured.asked.clear()  # type: ignore[attr-defined]
    assert connect(secured.endpoint, pki, change_to_disc, user="op", password=PASSWORD, policy=policy) == "disc on"
    assert secured.asked == [("disc", "opcua:op")]  # type: ignore[attr-defined]


def test_an_acknowledgement_is_audited_as_the_signed_in_user(secured: OpcUaLink, pki: Path, db) -> None:
    from station.links import audit_acknowledge

    secured.on_acknowledge = partial(audit_acknowledge, db)
    secured.on_alarm(Alarm("drift", "scores drift", datetime.now(timezone.utc)))

    async def acknowledge(c: Client, ns: int) -> int:
        return await c.get_node(ua.NodeId(OBJECT, ns)).call_method(ua.NodeId(f"{OBJECT}.AcknowledgeAlarms", ns))

    try:
        assert connect(secured.endpoint, pki, acknowledge, user="op", password=PASSWORD) == 1
    finally:
        secured.on_acknowledge = None
    (event,) = [e for e in db.audit_events(limit=10) if e.action == "acknowledge_alarms"]
    assert (event.user, event.role) == ("opcua:op", "system")


def test_sign_only_and_read_only_needs_no_users(pki: Path) -> None:
    link = OpcUaLink(secured_uri(pki, free_port(), mode="Sign", users=False, extra="&readonly=1"))
    link.start()
    try:
        assert connect(link.endpoint, pki, read_name, mode="Sign") == "line-s"
        with pytest.raises(ua.UaError, match="No matching endpoints"):
            connect(link.endpoint, pki, read_name, mode="SignAndEncrypt")
    finally:
        link.stop()


def test_inspector_run_serves_a_secured_station_whose_product_only_a_user_changes(pki: Path, tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """The URI goes through ``inspector run --opcua`` (StationConfig, LINKS) to the server as is."""
    db_path = tmp_path / "history.db"
    tile, disc = tile_and_disc(db_path)
    frames = gray_frames(tmp_path / "frames", [30, 220, 40])
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}"
    outcomes: list[Any] = []

    def attempt(*args: Any, **kwargs: Any) -> Any:
        try:
            return connect(endpoint, pki, *args, **kwargs)
        except ua.UaStatusCodeError as exc:
            return type(exc).__name__

    def scada() -> None:
        deadline = time.monotonic() + RUN_SERVES_WITHIN_S
        while True:  # the run opens its camera and model first
            try:
                outcomes.append(connect(endpoint, pki, read_name))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        outcomes.append(attempt(change_to_disc))
        outcomes.append(attempt(change_to_disc, user="op", password=PASSWORD))

    client = threading.Thread(target=scada, daemon=True)
    client.start()
    status, out, err = inspector_run(db_path, monkeypatch, f"folder://{frames}?fps=20&loop=1", "--max-frames", "100",
                                     "--opcua", secured_uri(pki, port))
    client.join(20)
    assert status == 0, err
    assert f"serving the station over OPC UA at {endpoint} (security SignAndEncrypt)" in out
    assert outcomes[0] == "line-s" and outcomes[1] == "BadUserAccessDenied"
    assert outcomes[2] == f"product 'disc' on the line: model version {disc}, threshold 0.9"
    db = HistoryDB(f"sqlite:///{db_path}")
    try:
        (change,) = [e for e in db.audit_events(limit=50) if e.action == "change_product"]
    finally:
        db.close()
    assert (change.user, change.role, change.target) == ("opcua:op", "system", "product:disc")  # who, signed in


# --- the settings, checked before anything starts ----------------------------------------------------


def bad_files(pki: Path, tmp: Path) -> dict[str, Path]:
    """Files that are wrong in one way each."""
    other = tmp / "other"
    make_certificate(other, "line-x", [], days=30)
    readable_key = tmp / "readable.pem"
    shutil.copy(pki / "key.pem", readable_key)
    readable_key.chmod(0o644)
    locked_key = tmp / "locked.pem"
    key = generate_private_key()
    locked_key.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")))
    locked_key.chmod(0o600)
    bad_users = tmp / "users"
    bad_users.write_text("op:scrypt$1$2\njust a line\n")
    bad_users.chmod(0o600)
    return {"other_key": other / "key.pem", "readable_key": readable_key, "locked_key": locked_key,
            "bad_users": bad_users, "not_a_cert": pki / "users"}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("security=Maybe", "security=Maybe: one of None, Sign, SignAndEncrypt"),
        ("security=None", "cert= needs security=Sign or security=SignAndEncrypt"),
        ("cert=", "security=SignAndEncrypt needs cert="),
        ("users=", "needs users=FILE"),
        ("readonly=1", "users= is for the methods, which readonly=1 leaves out"),
        ("cert=/no/such/cert.der", "cert=/no/such/cert.der: No such file"),
        ("cert=@not_a_cert", "is not a certificate (PEM or DER)"),
        ("key=@readable_key", "has mode 0644, which lets other accounts read it"),
        ("key=@locked_key", "is encrypted with a password"),
        ("key=@other_key", "is not the key of cert="),
        ("trust=@not_a_cert", "is not a folder"),
        ("users=@bad_users", "line 2 is not NAME:scrypt$"),
    ],
)
def test_bad_security_settings_are_one_line_before_anything_starts(pki: Path, tmp_path: Path, change: str,
                                                                   fragment: str) -> None:
    files = bad_files(pki, tmp_path)
    option, _, value = change.partition("=")
    if value.startswith("@"):
        value = str(files[value[1:]])
    options = dict(part.split("=", 1) for part in secured_uri(pki, 4840).split("?", 1)[1].split("&"))
    if value or option == "readonly":
        options[option] = value
    else:
        del options[option]
    uri = "opcua://127.0.0.1:4840?" + "&".join(f"{k}={v}" for k, v in options.items())
    for check in (parse_opcua_uri, lambda u: check_link("opcua", u)):  # inspector run's and the settings page's
        with pytest.raises(InspectorError) as caught:
            check(uri)
        message = str(caught.value)
        assert fragment in message and "\n" not in message, message


def test_a_password_in_the_address_is_refused_without_being_shown() -> None:
    with pytest.raises(InspectorError, match="holds no user or password") as caught:
        parse_opcua_uri("opcua://op:hunter22@127.0.0.1:4840")
    assert "hunter22" not in str(caught.value)


# --- inspector opcua ---------------------------------------------------------------------------------


def inspector(*argv: str, stdin: str = "", env: dict[str, str] | None = None, monkeypatch=None) -> tuple[int, str, str]:
    from cli.main import main

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def test_make_cert_add_user_and_the_uri_it_prints_start_a_secured_server(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "pki dir"  # a space: the printed URI quotes its paths
    status, out, err = inspector("opcua", "make-cert", "--out", str(folder), "--station", "line-9", "--host",
                                 "127.0.0.1", monkeypatch=monkeypatch)
    assert status == 0, err
    assert oct((folder / "key.pem").stat().st_mode & 0o777) == "0o600" and (folder / "trusted").is_dir()
    cert = x509.load_der_x509_certificate((folder / "cert.der").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:inspector:station:line-9"]
    uri = out.split("--opcua '", 1)[1].split("'", 1)[0]
    with pytest.raises(InspectorError, match="users="):  # no users yet
        parse_opcua_uri(uri)

    status, out, err = inspector("opcua", "add-user", "op", "--users", str(folder / "users"),
                                 stdin=f"{PASSWORD}\n", monkeypatch=monkeypatch)
    assert (status, out.strip()) == (0, f"OPC UA user 'op' added to {folder / 'users'}"), err
    assert oct((folder / "users").stat().st_mode & 0o777) == "0o600"
    assert PASSWORD not in (folder / "users").read_text()
    status, out, _ = inspector("opcua", "add-user", "op", "--users", str(folder / "users"),
                               env={"INSPECTOR_OPCUA_PASSWORD": "another password"}, monkeypatch=monkeypatch)
    assert status == 0 and "given a new password" in out and list(read_users(folder / "users")) == ["op"]
    target = parse_opcua_uri(uri)
    assert (target.security_mode, target.station, target.security.users) == ("SignAndEncrypt", "line-9",
                                                                               folder / "users")

    status, _, err = inspector("opcua", "make-cert", "--out", str(folder), monkeypatch=monkeypatch)
    assert status == 2 and "exists" in err and len(err.strip().splitlines()) == 1  # the clients trust that one
    status, out, _ = inspector("opcua", "remove-user", "op", "--users", str(folder / "users"), monkeypatch=monkeypatch)
    assert status == 0 and read_users(folder / "users") == {}


def test_a_password_is_never_an_option_and_a_short_one_is_refused(tmp_path: Path, monkeypatch) -> None:
    users = tmp_path / "users"
    monkeypatch.delenv("INSPECTOR_OPCUA_PASSWORD", raising=False)
    with pytest.raises(SystemExit):  # argparse: no such option
        inspector("opcua", "add-user", "op", "--users", str(users), "--password", PASSWORD, monkeypatch=monkeypatch)
    status, _, err = inspector("opcua", "add-user", "op", "--users", str(users), stdin="short\n",
                               monkeypatch=monkeypatch)
    assert status == 2 and "8 to 128 characters" in err and not users.exists()
    status, _, err = inspector("opcua", "add-user", "op", "--users", str(users), monkeypatch=monkeypatch)
    assert status == 2 and "no password for 'op'" in err


def test_test_connection_says_what_a_client_will_meet(pki: Path) -> None:
    from inspector.links.probe import probe

    port = free_port()
    said = probe(secured_uri(pki, port), timeout=1.0)
    assert said == (f"the station can serve at opc.tcp://127.0.0.1:{port} (the port is free; it serves while the "
                    "line runs; SignAndEncrypt, trusted client certificates: 1, users: 1)")
