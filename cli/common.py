"""What every command shares: the ``--device`` option, opening the history database, and
credentials (a user's name and PIN) for the commands that change what the line decides."""

from __future__ import annotations

import argparse
import getpass
import logging
import math
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.errors import InspectorError
from inspector.secret_file import read_owner_only

if TYPE_CHECKING:
    from inspector.history import HistoryDB
    from inspector.roles import Caller

#: Environment variables a script puts PINs in: never on the command line, where ``ps`` shows them.
PIN_ENV = "INSPECTOR_PIN"
NEW_PIN_ENV = "INSPECTOR_NEW_PIN"

#: ``add_argument("--max-batch", **MAX_BATCH_OPTION)``: ``run`` and ``gui`` with several cameras
MAX_BATCH_OPTION: dict[str, Any] = dict(
    type=int, default=None,
    help="several cameras: frames per forward pass at most (default: measured at the start -- every "
    "camera's frame where a batch makes a frame cheaper on this device, else 1: one frame per pass)")
#: ``add_argument("--device", **DEVICE_OPTION)``
DEVICE_OPTION: dict[str, Any] = dict(choices=("auto", "cpu", "cuda"), default="auto",
                                     help="where to run (default: CUDA when present)")


def quiet_migrations() -> None:
    """Alembic logs its set-up and each migration at INFO: no news on an operator's console.
    Call before inspector.history (and with it alembic) is imported: the set-up logs at import."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("alembic").setLevel(logging.WARNING)


def open_history(url: str | None) -> Any:
    """The history database at ``url`` (default: history.db in the data folder), migrated to the
    current schema."""
    quiet_migrations()
    from inspector.history import HistoryDB, default_db_url

    db = HistoryDB(url or default_db_url())
    db.upgrade()
    return db


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (iterations, runs, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def output_folder(text: str) -> Path:
    """An argparse type: a folder to write into (made if missing); an existing file is refused,
    and so is a path that goes through one (``notes.txt/out``), which no folder can be made at."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder for the output files")
    _check_made_under_a_folder(text, path)
    return path


def output_file(text: str) -> Path:
    """An argparse type: a file to write (its folder made if missing); an existing folder is
    refused, and so is a path that goes through a file. Checked as the command starts, where the
    writing comes last: after minutes of scoring, a typing error in the name cost the result."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of the file to write")
    _check_made_under_a_folder(text, path.parent)
    return path


def _check_made_under_a_folder(text: str, folder: Path) -> None:
    """ArgumentTypeError where ``folder`` cannot be made: the nearest part of it that exists is a file."""
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text} cannot be written: {existing} is a file, not a folder")


def unique_stems(paths: list[Path]) -> list[str]:
    """One output name per input, never two alike: the file's stem, prefixed with as many of its
    folders as it takes to tell inputs of the same name apart (``a/part.jpg``, ``b/part.jpg`` ->
    ``a_part``, ``b_part``), and numbered if even that is not enough."""
    names = [p.stem for p in paths]
    for depth in range(1, 1 + max((len(p.parts) for p in paths), default=0)):
        repeated = {n for n, k in Counter(names).items() if k > 1}
        if not repeated:
            return names
        names = [
            "_".join([*p.parent.parts[-depth:], p.stem]).replace("/", "_") if name in repeated else name
            for p, name in zip(paths, names)
        ]
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


# --- credentials ---------------------------------------------------------------------------------


def add_credential_options(p: argparse.ArgumentParser, user_option: str = "--user", *, required: bool = False,
                           who: str = "the technician") -> None:
    """``--user NAME`` (or ``user_option``) and ``--pin-file FILE``; the PIN itself is never an
    option, since the command line of a running process is visible to every local account.
    ``who`` completes "the user name of ..." in the help."""
    p.add_argument(user_option, required=required, metavar="NAME",
                   help=f"the user name of {who}; the PIN comes from ${PIN_ENV}, --pin-file, or is asked at a terminal")
    p.add_argument("--pin-file", type=Path, default=None, metavar="FILE",
                   help=f"file holding the PIN of {user_option} on its first line (mode 0600 or stricter)")


def add_framing_options(p: argparse.ArgumentParser) -> None:
    """What of each frame a model inspects (issue 30's recipe; see inspector.framing)."""
    g = p.add_argument_group("framing", "what of a camera's frame the model inspects (stored in the model file)")
    # argparse takes "-5,0,100,100" for an option (only "-5" or "-0.5" pass as negative numbers),
    # so `--region -5,0,100,100` said "expected one argument"; let a list of numbers be a value,
    # which the region's own check then refuses by name.
    matcher = getattr(p, "_negative_number_matcher", None)
    if matcher is not None:
        p._negative_number_matcher = re.compile(rf"{matcher.pattern}|^-\d[\d.]*(,-?[\d.]*)+$")
    g.add_argument("--region", default=None, metavar="X,Y,W,H",
                   help="the inspection region, in pixels of the reference image (default: the whole frame)")
    g.add_argument("--ignore", type=Path, default=None, metavar="MASK.png",
                   help="don't-care areas: a mask of the reference's size, white where nothing counts")
    g.add_argument("--reference", type=Path, default=None, metavar="IMAGE",
                   help="the image the region and mask are drawn on (default: the first training image)")
    g.add_argument("--align", action="store_true",
                   help="find the part in every frame (shift and turn) before its region is cut; frames it is "
                        "not found in are decided NO PART (needs --region)")
    g.add_argument("--min-match", type=float, default=None, metavar="Q",
                   help="--align: match quality (-1..1) under which a frame is NO PART (default: 0.35)")
    g.add_argument("--max-angle", type=float, default=None, metavar="DEG",
                   help="--align: the largest turn of the part searched, either way (default: 15)")
    g.add_argument("--tiles", type=tiles_option, default="auto",
                   help="auto: tile a region larger than the model's input or far from square, at the scale "
                        "--defect-px needs; off: squeeze it whole; N: N tiles along its longer side (default: auto)")
    g.add_argument("--defect-px", type=float, default=None, metavar="P",
                   help="the smallest defect to find, in frame pixels: sets the tiles' scale (default: none)")


def tiles_option(text: str) -> str | int:
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text}: tiles are auto, off or a whole number of tiles")


def framing_from_options(args: Any, paths: list[Path], input_px: int) -> Any:
    """The framing ``args`` ask for, checked on its reference (``--reference``, else the first
    training image); None where the options change nothing (see make_framing)."""
    from inspector.framing.recipe import make_framing, parse_region
    from inspector.image_io import read_image, read_mask

    reference_path = args.reference or paths[0]
    reference = read_image(reference_path)
    region = parse_region(args.region) if args.region is not None else None
    if args.ignore is not None and not Path(args.ignore).exists():  # a folder: read_mask says so
        raise InspectorError(f"--ignore {args.ignore}: no such mask file")
    ignore = read_mask(args.ignore) if args.ignore is not None else None
    if args.defect_px is not None and not (args.defect_px > 0 and math.isfinite(args.defect_px)):
        raise InspectorError(f"--defect-px must be a positive number of pixels, not {args.defect_px:g}")
    for option, value in (("--min-match", args.min_match), ("--max-angle", args.max_angle)):
        # Without --align nothing is searched for: the value would be stored and never used, and
        # a technician who meant alignment would not find out until the line decided.
        if value is not None and not args.align:
            raise InspectorError(f"{option} sets how the part is found in every frame: it needs --align")
    turn = {} if args.max_angle is None else {"max_angle_deg": args.max_angle}
    try:
        framing = make_framing(reference, region=region, ignore=ignore, align=args.align, min_quality=args.min_match,
                               tiles=args.tiles, defect_px=args.defect_px, input_px=input_px, **turn)
    except InspectorError as e:
        # A mask of another size or one that covers the region is the mask's fault: name it too.
        mask = f", don't-care mask {args.ignore}" if args.ignore is not None else ""
        raise InspectorError(f"{e} (reference {reference_path}{mask})") from None
    if ignore is not None and not ignore.any():
        # A mask given on purpose that marks nothing is a mistake, most often one written 0/1
        # (which looks black): the model would inspect everything it was told to ignore.
        raise InspectorError(f"--ignore {args.ignore}: the mask marks no pixel as don't care (white, above 127); "
                             "a mask written as 0 and 1 must be written as 0 and 255")
    return framing


def read_pin_file(path: Path, option: str = "--pin-file") -> str:
    """The first line of a PIN file. Refused unless it is a regular file that only its owner may
    read or write (mode 0600 or stricter): a PIN others can read is no longer a secret.

    A refusal names the option, never the file: what was given as a file name may be the PIN
    itself (typed where a file was expected), and the refusal is printed and audited."""
    # 4096 bytes hold a first line far longer than any PIN may be: one this long is refused below.
    # utf-8-sig: an editor on Windows starts the file with a byte-order mark, which is not part of
    # the PIN (kept, it would make a PIN that can never be typed).
    data = read_owner_only(path, f"the file given to {option}", 4096)
    lines = data.decode("utf-8-sig", errors="replace").splitlines()
    if not lines or not lines[0]:
        raise InspectorError(f"the file given to {option}: the first line is empty; it should hold the PIN")
    from inspector.history.pins import MAX_PIN_LENGTH  # here: the package loads alembic (quiet_migrations)

    # Refused, not cut: a PIN set from a shortened line would never match the one typed later.
    if len(lines[0]) > MAX_PIN_LENGTH:
        raise InspectorError(f"the file given to {option}: the first line is longer than a PIN may be "
                             f"({MAX_PIN_LENGTH} characters at most)")
    return lines[0]


def read_pin(user: str, pin_file: Path | None = None) -> str:
    """``user``'s PIN: from ``--pin-file``, else ``$INSPECTOR_PIN``, else asked at a terminal."""
    if pin_file is not None:
        return read_pin_file(pin_file)
    pin = os.environ.get(PIN_ENV)
    if pin:
        return pin
    if sys.stdin.isatty():
        return getpass.getpass(f"PIN for {user}: ")
    raise InspectorError(f"no PIN for {user!r}: set ${PIN_ENV}, give --pin-file FILE (mode 0600), "
                         "or run the command at a terminal")


def read_new_pin(name: str, pin_file: Path | None = None) -> str:
    """The PIN a user is given: ``--new-pin-file``, else ``$INSPECTOR_NEW_PIN``, else asked twice
    at a terminal, else one line on stdin (``… | inspector users add …``)."""
    if pin_file is not None:
        return read_pin_file(pin_file, "--new-pin-file")
    return read_new_secret(NEW_PIN_ENV, f"new PIN for {name}", "PIN",
                           f"no new PIN for {name!r}: set ${NEW_PIN_ENV}, give --new-pin-file FILE (mode 0600), "
                           "type it at a terminal, or pipe it on stdin")


def read_new_secret(env: str, prompt: str, what: str, missing: str) -> str:
    """A new secret (a PIN, a password), never from the command line: ``$env``, else asked twice
    at a terminal, else one line on stdin; ``missing`` is the refusal when none came."""
    secret = os.environ.get(env)
    if secret:
        return secret
    if sys.stdin.isatty():
        secret = getpass.getpass(f"{prompt}: ")
        if getpass.getpass("again: ") != secret:
            raise InspectorError(f"the two {what}s differ; nothing was changed")
        return secret
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret.strip():
        raise InspectorError(missing)
    return secret


def shell_user() -> str:
    """Who runs the command, for the audit of what needs no sign-in: ``cli:<login name>``."""
    from station.actions import system_actor

    return system_actor("cli").user


def caller(db: HistoryDB, args: Any, action: str, target: str) -> Caller:
    """The :class:`~inspector.roles.Caller` that ``--user`` and their PIN name, for an audited
    action (which checks the right itself). No ``--user``, or no PIN to be had, is refused and
    audited as ``<action>_denied`` here, with the options that would give them."""
    from inspector.roles import AccessDenied, Caller, roles_with

    if not args.user:
        db.record_audit(shell_user(), "unknown", f"{action}_denied", target, None, {"reason": "no --user"})
        raise AccessDenied(f"{action} refused: give --user NAME of a {' or '.join(roles_with(action))}, with the PIN "
                           f"in ${PIN_ENV} or --pin-file FILE (or typed at a terminal)")
    return Caller(args.user, pin_or_denied(db, args.user, args.pin_file, action, target))


def verified_user(db: HistoryDB, user: str | None, pin_file: Path | None, action: str, target: str,
                  roles: tuple[str, ...] | None = None, *, user_option: str = "--user") -> tuple[str, str]:
    """``(user, role)`` once ``user``'s PIN is verified and their role is one of ``roles``
    (default: those who may change what the line decides). Every refusal -- no user named, no
    PIN to be had, a wrong PIN, a role without the right -- is audited as ``<action>_denied``
    (the last two by :func:`inspector.roles.require_role`) and raised as AccessDenied."""
    from inspector.roles import LINE_CHANGERS, AccessDenied, require_role

    roles = roles or LINE_CHANGERS
    if not user:
        db.record_audit(shell_user(), "unknown", f"{action}_denied", target, None, {"reason": f"no {user_option}"})
        raise AccessDenied(f"{action} refused: give {user_option} NAME of a {' or '.join(roles)}, with the PIN "
                           f"in ${PIN_ENV} or --pin-file FILE (or typed at a terminal)")
    return user, require_role(db, user, pin_or_denied(db, user, pin_file, action, target), action, target, roles)


def pin_or_denied(db: HistoryDB, user: str, pin_file: Path | None, action: str, target: str) -> str:
    """:func:`read_pin`, with a PIN that cannot be had (no ``$INSPECTOR_PIN``, no terminal, a PIN
    file others may read) audited as ``<action>_denied`` like a wrong one, and raised as AccessDenied."""
    from inspector.roles import AccessDenied

    try:
        return read_pin(user, pin_file)
    except InspectorError as exc:
        db.record_audit(user, "unknown", f"{action}_denied", target, None, {"reason": str(exc)})
        raise AccessDenied(f"{action} refused: {exc}") from None


#: Options that take a database URL: a password in one is refused (see :func:`refuse_passwords_in_urls`).
URL_OPTIONS = {"db": "--db", "plant_db": "--plant-db"}


def refuse_passwords_in_urls(args: Any) -> None:
    """A database URL on the command line must not hold a password: ``ps`` shows every
    process's arguments to every account. libpq reads it from ``~/.pgpass`` (mode 0600) or
    ``$PGPASSWORD`` instead, for the station's ``--db`` and the plant's ``--plant-db`` alike."""
    from urllib.parse import urlsplit

    for name, option in URL_OPTIONS.items():
        url = getattr(args, name, None)
        if not isinstance(url, str) or "://" not in url:
            continue
        try:
            password = urlsplit(url).password
        except ValueError:
            continue  # malformed: the database says what is wrong with it
        if password:
            raise InspectorError(
                f"{option} holds a password, which `ps` shows to every account on this machine: leave it out of "
                "the URL and put it in ~/.pgpass (mode 0600, one line HOST:PORT:DB:USER:PASSWORD) or $PGPASSWORD")
