"""Security for the station's OPC UA server: its certificate, the clients it trusts, the users who
may call its methods.

Set on the link's URI (see :func:`inspector.links.opcua.parse_opcua_uri`)::

    opcua://0.0.0.0:4840?security=SignAndEncrypt&cert=DIR/cert.der&key=DIR/key.pem&trust=DIR/trusted&users=DIR/users

- ``security``: ``Sign`` or ``SignAndEncrypt`` (``None``, the default, leaves all of this out). The
  server then offers that mode only, with the policies in :data:`POLICIES` (the client picks one),
  and no unsecured endpoint.
- ``cert``, ``key``: the server's certificate and RSA private key, PEM or DER; the key unencrypted
  and readable by its owner alone (mode 0600), since it is what proves the server is the station.
  ``inspector opcua make-cert`` makes both (:func:`make_certificate`).
- ``trust``: a folder of client certificates (``.der``, ``.pem``, ``.crt``). A client connects only
  when its certificate is one of these very files (compared by SHA-256) and within its dates.
- ``users``: who may call the methods: one ``NAME:scrypt$...`` line per user (the PINs' hash, see
  :mod:`inspector.history.pins`), readable by its owner alone. A trusted client without a user
  name may read and subscribe; calling ``ChangeProduct`` or ``AcknowledgeAlarms`` (and writing,
  though no variable is writable) needs a user's name and password. ``readonly=1`` has no methods,
  so no users.

The folder and the users file are read again whenever a client activates a session, so that
trusting a new SCADA client or adding a user needs no restart of the line.

The files are checked when the URI is (:func:`check_security`: one clear line for a missing file,
a key others can read, a key that is not the certificate's); asyncua is imported only when the
server starts (:func:`secure_server`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from inspector import secret_file
from inspector.errors import InspectorError

log = logging.getLogger(__name__)

SECURITY_MODES: Final = ("None", "Sign", "SignAndEncrypt")
#: Offered in the chosen mode, strongest first; asyncua's older policies (Basic128Rsa15, Basic256)
#: are deprecated by the OPC Foundation and left out.
POLICIES: Final = ("Aes256Sha256RsaPss", "Aes128Sha256RsaOaep", "Basic256Sha256")
#: The server's application URI is this followed by ``:<station>``, in the certificate too.
APPLICATION_URI: Final = "urn:inspector:station"
CERT_FILE: Final = "cert.der"
KEY_FILE: Final = "key.pem"
TRUST_FOLDER: Final = "trusted"
USERS_FILE: Final = "users"
CERT_SUFFIXES: Final = (".der", ".pem", ".crt", ".cer")
MIN_PASSWORD: Final = 8
MAX_PASSWORD: Final = 128
#: A station's name: in the application URI, the certificate and every client's configuration.
STATION_NAME: Final = re.compile(r"[\w.\-]{1,64}")
#: A user name: also the first field of a users-file line, so no ':'.
_USER_NAME = re.compile(r"[\w.@\-]{1,64}")
#: A users file or key over this is not one (read whole, on the server's loop).
_MAX_SECRET_FILE = 1 << 20


#: The user signed in to the session whose request is being served (None: anonymous), for the
#: audit of a method call. Set by the permission check, which asyncua runs in the same task as
#: the request's method handler, just before it.
session_user: ContextVar[str | None] = ContextVar("opcua_session_user", default=None)


@dataclass(frozen=True)
class OpcUaSecurity:
    """A secured server's settings (see the module docstring); ``users`` None: no methods."""

    mode: str
    cert: Path
    key: Path
    trust: Path
    users: Path | None

    @property
    def policies(self) -> tuple[str, ...]:
        return tuple(f"{policy}_{self.mode}" for policy in POLICIES)


def _crypto() -> Any:
    try:
        from cryptography import x509
    except ImportError:  # asyncua brings it
        raise InspectorError("OPC UA security needs asyncua: pip install 'inspector[plant]'") from None
    return x509


# --- the files ---------------------------------------------------------------------------------


def read_owner_only(path: Path, what: str) -> bytes:
    """The bytes of a key or users file, which only its owner may read (see :mod:`inspector.secret_file`)."""
    data = secret_file.read_owner_only(path, f"{what}{path}", _MAX_SECRET_FILE + 1)
    if len(data) > _MAX_SECRET_FILE:
        raise InspectorError(f"{what}{path} is too large to be a key or a users file")
    return data


def load_certificate_file(path: Path, what: str = "cert=") -> Any:
    """An X.509 certificate from a PEM or DER file (told apart by the content, not the name)."""
    x509 = _crypto()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InspectorError(f"{what}{path}: {exc.strerror or type(exc).__name__}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InspectorError(f"{what}{path} is not a certificate (PEM or DER)") from None


def _load_key(path: Path) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = read_owner_only(path, "key=")
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "a password is needed"
        raise InspectorError(f"key={path} is encrypted with a password; the server needs it unencrypted, kept "
                             "secret by its mode 0600") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InspectorError(f"key={path} is not a private key (PEM or DER)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InspectorError(f"key={path} is not an RSA key, which OPC UA's security policies need")
    return key


def check_security(mode: str, cert: str | None, key: str | None, trust: str | None, users: str | None,
                   readonly: bool) -> OpcUaSecurity | None:
    """The URI's security options checked, their files read: one clear InspectorError for the first
    thing wrong. ``mode`` ``None``: no security, and then no files either (they would secure
    nothing)."""
    if mode not in SECURITY_MODES:
        raise InspectorError(f"security={mode}: one of {', '.join(SECURITY_MODES)}")
    given = [name for name, value in (("cert", cert), ("key", key), ("trust", trust), ("users", users)) if value]
    if mode == "None":
        if given:
            raise InspectorError(f"{given[0]}= needs security=Sign or security=SignAndEncrypt: without it the server "
                                 "is not secured")
        return None
    missing = [name for name, value in (("cert", cert), ("key", key), ("trust", trust)) if not value]
    if missing:
        raise InspectorError(f"security={mode} needs {'=, '.join(missing)}= (make them with inspector opcua make-cert)")
    if readonly and users:
        raise InspectorError("users= is for the methods, which readonly=1 leaves out")
    if not readonly and not users:
        raise InspectorError(f"security={mode} needs users=FILE, who may call the methods (inspector opcua add-user), "
                             "or readonly=1")
    assert cert and key and trust
    security = OpcUaSecurity(mode, Path(cert), Path(key), Path(trust), Path(users) if users else None)
    certificate = load_certificate_file(security.cert)
    now = datetime.now(timezone.utc)
    if certificate.not_valid_after_utc < now:
        raise InspectorError(f"cert={cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}: make a new one "
                             "(inspector opcua make-cert) and give it to the clients")
    private_key = _load_key(security.key)
    if private_key.public_key().public_numbers() != certificate.public_key().public_numbers():
        raise InspectorError(f"key={key} is not the key of cert={cert}")
    if not security.trust.is_dir():
        raise InspectorError(f"trust={trust} is not a folder (it holds the certificates of the clients to trust)")
    if security.users is not None:
        read_users(security.users)
    return security


def certificate_uri(certificate: Any) -> str | None:
    """The application URI a certificate names (its subjectAltName URI), or None."""
    x509 = _crypto()
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def thumbprint(der: bytes) -> str:
    """The SHA-256 of a certificate, as ``ab:cd:...``: what a client shows to compare with."""
    return hashlib.sha256(der).digest().hex(":")


# --- users -------------------------------------------------------------------------------------


def read_users(path: Path) -> dict[str, str]:
    """``{name: hash}`` from a users file (owner-only; ``#`` comments and blank lines allowed)."""
    users: dict[str, str] = {}
    text = read_owner_only(path, "users=").decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, hashed = line.partition(":")
        if not colon or not _USER_NAME.fullmatch(name) or not hashed.startswith("scrypt$"):
            raise InspectorError(f"users={path}: line {number} is not NAME:scrypt$... (write the file with "
                                 "inspector opcua add-user)")
        users[name] = hashed
    return users


def check_user_name(name: str) -> None:
    if not _USER_NAME.fullmatch(name):
        raise InspectorError(f"bad OPC UA user name {name!r}: letters, digits, '.', '-', '_' and '@', 64 at most")


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD or "\n" in password:
        raise InspectorError(f"an OPC UA password has {MIN_PASSWORD} to {MAX_PASSWORD} characters on one line")


def set_user(path: Path, name: str, password: str) -> bool:
    """Add user ``name`` to the users file at ``path`` (made, mode 0600, if missing), or give them a
    new password; True when the user is new. The password is stored as a salted scrypt hash."""
    from inspector.history.pins import hash_pin
    from inspector.model_file import atomic_write

    check_user_name(name)
    check_password(password)
    users = read_users(path) if path.exists() else {}
    new = name not in users
    users[name] = hash_pin(password)
    _write_users(path, users, atomic_write)
    return new


def remove_user(path: Path, name: str) -> None:
    from inspector.model_file import atomic_write

    users = read_users(path)
    if name not in users:
        raise InspectorError(f"no OPC UA user named {name!r} in {path}")
    del users[name]
    _write_users(path, users, atomic_write)


def _write_users(path: Path, users: dict[str, str], atomic_write: Any) -> None:
    text = "# OPC UA users of the station: NAME:password hash (inspector opcua add-user)\n"
    text += "".join(f"{name}:{hashed}\n" for name, hashed in sorted(users.items()))
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), mode=0o600)


# --- a certificate -----------------------------------------------------------------------------


def make_certificate(folder: Path, station: str, hosts: list[str], days: int) -> tuple[Path, Path, Any]:
    """A self-signed server certificate for ``station`` (application URI
    ``urn:inspector:station:<station>``; this computer's host name and the ``hosts``, DNS names or
    IP addresses, by which clients reach it) with a new
    2048-bit RSA key, made here, offline: ``folder/cert.der``, ``folder/key.pem`` (mode 0600) and
    the empty ``folder/trusted/``. Refuses to replace a certificate or key already there (the
    clients trust that one). Returns the two paths and the certificate."""
    try:
        from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
    except ImportError:
        raise InspectorError("making an OPC UA certificate needs asyncua: pip install 'inspector[plant]'") from None
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if not STATION_NAME.fullmatch(station):
        raise InspectorError(f"bad station name {station!r}: letters, digits, '.', '-' and '_', 64 at most")
    if not 1 <= days <= 36500:
        raise InspectorError(f"--days must be 1..36500, not {days}")
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    for path in (cert_path, key_path):
        if path.exists():
            raise InspectorError(f"{path} exists: the clients may trust it already; remove it first to make a new one")
    if folder.exists() and not folder.is_dir():
        raise InspectorError(f"{folder} is a file; give a folder for the certificate and key")
    names: list[Any] = [x509.UniformResourceIdentifier(f"{APPLICATION_URI}:{station}")]
    # The host name always: asyncua's server and many clients look for it in the certificate.
    for host in dict.fromkeys([socket.gethostname(), *hosts]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = generate_private_key()
    cert = generate_self_signed_app_certificate(key, f"inspector station {station}", {}, names,
                                                [ExtendedKeyUsageOID.SERVER_AUTH], days=days)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (folder / TRUST_FOLDER).mkdir(mode=0o700, exist_ok=True)
        # The key is created owner-only and whole, never readable by others for a moment.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    except OSError as exc:
        raise InspectorError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    return cert_path, key_path, cert


# --- the running server (asyncua imported) -----------------------------------------------------


class TrustedClients:
    """The certificates in the trust folder, read again at each check (a client added or removed
    counts at its next session)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._told: set[str] = set()  # refusals already logged: a client retrying every second

    def _thumbprints(self) -> set[str]:
        from cryptography.hazmat.primitives.serialization import Encoding

        prints = set()
        try:
            files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in CERT_SUFFIXES)
        except OSError as exc:
            log.warning("OPC UA: cannot read the trusted clients in %s: %s", self.folder, exc.strerror or exc)
            return prints
        for path in files:
            try:
                prints.add(thumbprint(load_certificate_file(path, "trusted ").public_bytes(Encoding.DER)))
            except InspectorError as exc:
                self._tell(str(path), f"OPC UA: skipping {exc}")
        return prints

    def refusal(self, der: bytes | None) -> str | None:
        """Why a client with this certificate (DER; None: an unsecured channel) may not connect,
        or None when it may."""
        if not der:
            return "no client certificate (an unsecured connection); this server takes signed ones only"
        x509 = _crypto()
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return "a client certificate that cannot be read"
        subject = cert.subject.rfc4514_string()
        mark = thumbprint(der)
        if mark not in self._thumbprints():
            return (f"the client certificate {subject} (SHA-256 {mark}) is not in {self.folder}; copy it there to "
                    "trust that client")
        now = datetime.now(timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return (f"the client certificate {subject} is trusted but outside its dates "
                    f"({cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})")
        return None

    def _tell(self, key: str, message: str) -> None:
        if len(self._told) > 1000:  # a flood of certificates: bounded memory, some lines again
            self._told.clear()
        if key not in self._told:
            self._told.add(key)
            log.warning("%s", message)

    def refuse(self, der: bytes | None) -> bool:
        """:meth:`refusal`, logged once per certificate; True to refuse."""
        reason = self.refusal(der)
        if reason is not None:
            self._tell(reason, f"OPC UA client refused: {reason}")
        return reason is not None


async def secure_server(server: Any, security: OpcUaSecurity) -> None:
    """Set up asyncua's ``server`` (initialised, not started) as :class:`OpcUaSecurity` says."""
    from asyncua import ua
    from asyncua.common.utils import ServiceError
    from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from inspector.history.pins import check_pin, dummy_pin_hash

    certificate = load_certificate_file(security.cert)
    await server.load_certificate(certificate.public_bytes(Encoding.DER), format="der")
    key = _load_key(security.key)
    await server.load_private_key(key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()), format="der")
    trusted = TrustedClients(security.trust)
    calls = {ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary),
             ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)}

    class Rules(PermissionRuleset):
        """A trusted client without a user reads, browses and subscribes; a user may call too."""

        allowed = {UserRole.User: {ua.NodeId(t) for t in USER_TYPES}}
        allowed[UserRole.Anonymous] = allowed[UserRole.User] - calls

        def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
            session_user.set(user.name if user.role == UserRole.User else None)
            if action_type_id in self.allowed.get(user.role, ()):
                return True
            if action_type_id in calls:
                log.warning("OPC UA client refused: calling a method needs a user name and password")
            return False

    class Users:
        """asyncua's user manager, asked at every session activation with the secure channel's own
        client certificate: the gate that holds even for a client that leaves its certificate out
        of CreateSession (where asyncua's certificate validator is skipped)."""

        def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                     certificate: Any = None) -> Any:
            if trusted.refuse(certificate):
                return None
            if username is None:
                return User(role=UserRole.Anonymous)
            try:
                users = read_users(security.users) if security.users is not None else {}
            except InspectorError as exc:
                log.warning("OPC UA client %r refused: %s", username, exc)
                return None
            stored = users.get(username)
            # An unknown name costs a hash as a wrong password does: timing does not tell names.
            if check_pin(password or "", stored or dummy_pin_hash()) and stored is not None:
                return User(role=UserRole.User, name=username)
            log.warning("OPC UA client refused: wrong user name or password for %r", username)
            return None

    async def validate(certificate: Any, app_description: Any) -> None:
        """At CreateSession: an untrusted client hears BadCertificateUntrusted, not just "denied"."""
        if trusted.refuse(certificate.public_bytes(Encoding.DER)):
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    server.set_security_policy([getattr(ua.SecurityPolicyType, name) for name in security.policies],
                               permission_ruleset=Rules())
    tokens = [ua.AnonymousIdentityToken] + ([ua.UserNameIdentityToken] if security.users is not None else [])
    server.set_identity_tokens(tokens)
    server.iserver.set_user_manager(Users())
    server.set_certificate_validator(validate)
