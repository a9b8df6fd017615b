"""The OPC UA server's security files, for the faces (``inspector opcua``), which reach the plant
links only through the station: a self-signed certificate made offline, the users who may call
the server's methods. What the files mean: :mod:`inspector.links.opcua_security`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from inspector.links.opcua_security import (
    CERT_FILE, KEY_FILE, TRUST_FOLDER, USERS_FILE, check_user_name, make_certificate, remove_user, set_user,
    thumbprint)

__all__ = ["CERT_FILE", "KEY_FILE", "TRUST_FOLDER", "USERS_FILE", "check_user_name", "make_server_certificate",
           "remove_user", "secured_uri", "set_user"]


def make_server_certificate(folder: Path, station: str, hosts: list[str], days: int) -> dict[str, str]:
    """Makes ``folder``'s certificate, key and trusted-clients folder (see
    :func:`~inspector.links.opcua_security.make_certificate`); what to tell the person who made them."""
    from cryptography.hazmat.primitives.serialization import Encoding

    cert_path, key_path, cert = make_certificate(folder, station, hosts, days)
    return {"cert": str(cert_path), "key": str(key_path), "trust": str(folder / TRUST_FOLDER),
            "valid_until": f"{cert.not_valid_after_utc:%Y-%m-%d}",
            "thumbprint": thumbprint(cert.public_bytes(Encoding.DER))}


def secured_uri(folder: Path, station: str, port: int = 4840) -> str:
    """The ``--opcua`` URI of a server secured with the files in ``folder`` (paths quoted for a URI)."""
    folder = folder.resolve()

    def path(name: str) -> str:
        return quote(str(folder / name), safe="/")

    return (f"opcua://0.0.0.0:{port}?station={station}&security=SignAndEncrypt&cert={path(CERT_FILE)}"
            f"&key={path(KEY_FILE)}&trust={path(TRUST_FOLDER)}&users={path(USERS_FILE)}")
