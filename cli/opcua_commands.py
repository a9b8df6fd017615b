"""``inspector opcua``: the files that secure the station's OPC UA server (see docs/plant-links.md,
"Securing the OPC UA server").

``make-cert`` makes the server's self-signed certificate and key, offline, and the folder of
trusted client certificates; ``add-user`` and ``remove-user`` keep the users file of those who may
call the server's methods. A password never goes on the command line, where ``ps`` shows it:
it comes from ``$INSPECTOR_OPCUA_PASSWORD``, a terminal (asked twice) or one line on stdin.
These are files of the station's computer, guarded by its accounts (mode 0600), not by the
history's users, so they need no PIN.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from cli.common import positive_int, read_new_secret

PASSWORD_ENV = "INSPECTOR_OPCUA_PASSWORD"
USERS_HELP = "the users file (made, mode 0600, if missing); give it to the server as users=FILE"


def register(subparsers: argparse._SubParsersAction) -> None:
    o = subparsers.add_parser("opcua", help="secure the station's OPC UA server: its certificate, its users")
    osub = o.add_subparsers(dest="opcua_command", required=True, metavar="COMMAND")
    m = osub.add_parser("make-cert", help="make the server's self-signed certificate and key (offline), and the "
                                          "folder of trusted client certificates")
    m.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="folder to write cert.der, key.pem (mode 0600) and trusted/ into (made if missing)")
    m.add_argument("--station", default=None, metavar="NAME",
                   help="the station's name, as in --opcua's station= (default: the host name)")
    m.add_argument("--host", action="append", default=None, metavar="NAME",
                   help="a host name or IP address clients reach the station by, besides this computer's host name "
                        "(repeat for several)")
    m.add_argument("--days", type=positive_int, default=1825, help="how long the certificate is valid (default: 1825, "
                                                                  "five years)")
    m.set_defaults(func=cmd_make_cert)
    a = osub.add_parser("add-user", help=f"let NAME call the server's methods, or give NAME a new password (from "
                                         f"${PASSWORD_ENV}, a terminal or stdin)")
    a.add_argument("name", help="the user's name, which the SCADA client signs in with")
    a.add_argument("--users", required=True, type=Path, metavar="FILE", help=USERS_HELP)
    a.set_defaults(func=cmd_add_user)
    r = osub.add_parser("remove-user", help="take NAME out of the users file")
    r.add_argument("name", help="the user's name")
    r.add_argument("--users", required=True, type=Path, metavar="FILE", help="the users file")
    r.set_defaults(func=cmd_remove_user)


def cmd_make_cert(args: argparse.Namespace) -> int:
    from station.opcua import make_server_certificate, secured_uri

    station = args.station or socket.gethostname()
    made = make_server_certificate(args.out, station, args.host or [], args.days)
    print(f"certificate {made['cert']} for station {station}, valid until {made['valid_until']}\n"
          f"  SHA-256 {made['thumbprint']}\n"
          f"private key {made['key']} (mode 0600: keep it on this computer)\n"
          f"trusted clients: put each SCADA client's certificate in {made['trust']}/\n"
          f"next: give {made['cert']} to the SCADA to trust, add a user (inspector opcua add-user NAME --users "
          f"{args.out / 'users'}), then run with\n"
          f"  --opcua '{secured_uri(args.out, station)}'")
    return 0


def read_password(name: str) -> str:
    """``$INSPECTOR_OPCUA_PASSWORD``, else asked twice at a terminal, else one line on stdin."""
    return read_new_secret(PASSWORD_ENV, f"OPC UA password for {name}", "password",
                           f"no password for {name!r}: set ${PASSWORD_ENV}, type it at a terminal, or pipe it on stdin")


def cmd_add_user(args: argparse.Namespace) -> int:
    from cli.common import quiet_migrations

    quiet_migrations()  # the password hash is the PINs' (inspector.history), whose import logs
    from station.opcua import check_user_name, set_user

    check_user_name(args.name)  # before the password is asked for
    new = set_user(args.users, args.name, read_password(args.name))
    print(f"OPC UA user {args.name!r} {'added to' if new else 'given a new password in'} {args.users}")
    return 0


def cmd_remove_user(args: argparse.Namespace) -> int:
    from station.opcua import remove_user

    remove_user(args.users, args.name)
    print(f"OPC UA user {args.name!r} removed from {args.users}")
    return 0
