"""Reading a secret from a file: a PIN, a private key, a users file.

A secret others can read is no secret, so the file must be a regular file that only its owner may
read or write (mode 0600 or stricter); anything else is refused in one line. Refusals call the
file what the caller says (``name``): a command-line option's file is named by the option, never
by what was given, which may be the secret itself typed where a file was expected.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from inspector.errors import InspectorError


def read_owner_only(path: Path, name: str, limit: int) -> bytes:
    """The first ``limit`` bytes of the secret file at ``path`` (see the module docstring)."""
    try:  # non-blocking: a FIFO must be refused, not waited on
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InspectorError(f"{name} cannot be opened: {exc.strerror or type(exc).__name__}") from None
    try:
        mode = os.fstat(fd).st_mode  # of the file opened, not of a name that may change under us
        if not stat.S_ISREG(mode):
            raise InspectorError(f"{name} is not a regular file")
        if mode & 0o077:
            raise InspectorError(f"{name} has mode {stat.S_IMODE(mode):04o}, which lets other accounts read it; "
                                 "make it the owner's alone (chmod 600)")
        return os.read(fd, limit)
    finally:
        os.close(fd)
