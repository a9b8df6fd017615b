"""Salted PIN hashes (scrypt from the standard library) and the account policy around them.

The PIN itself is never stored. The policy lives here, once, for the database, the command line
and the desktop: how long a PIN must be, which names an account may have, and how long an account
stays locked after repeated wrong PINs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from datetime import timedelta
from functools import lru_cache

from inspector.errors import DatabaseError

# scrypt cost: n=2**14, r=8, p=1 is the interactive-login setting from the scrypt paper
# (Percival 2009) and costs ~16 MiB and a few tens of milliseconds per check.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
#: Six digits: 10**6 guesses, which the lock below turns into years of trying at the terminal.
MIN_PIN_LENGTH = 6
#: A PIN file is read up to 4096 bytes; a longer PIN would be cut there and then never match what
#: is typed. 128 characters is room for any passphrase.
MAX_PIN_LENGTH = 128
#: Names appear in every audit row and on screen; 64 characters fits the columns with room.
MAX_NAME_LENGTH = 64
#: Consecutive wrong PINs after which an account is locked.
LOCK_AFTER_FAILURES = 5
FIRST_LOCK = timedelta(seconds=30)
#: Long enough to stop guessing, short enough that a technician locked out on a night shift
#: is not kept from the line for the rest of it.
MAX_LOCK = timedelta(minutes=15)


def hash_pin(pin: str) -> str:
    """Return ``"scrypt$n$r$p$<salt hex>$<key hex>"`` for ``pin``."""
    salt = os.urandom(_SALT_BYTES)
    key = _derive(pin, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${key.hex()}"


def check_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches a hash made by :func:`hash_pin` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt_hex, key_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        key = _derive(pin, bytes.fromhex(salt_hex), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(key, bytes.fromhex(key_hex))


@lru_cache(maxsize=1)
def dummy_pin_hash() -> str:
    """A hash of the same cost as a real one, checked for an unknown name: refusing a name that
    does not exist then takes as long as refusing a wrong PIN, so timing does not tell which
    names are accounts."""
    return hash_pin(os.urandom(_SALT_BYTES).hex())


def validate_pin(pin: str) -> None:
    """DatabaseError unless ``pin`` is long enough to be worth hashing and short enough to be
    read back whole wherever it is given (refused, never shortened)."""
    if len(pin) < MIN_PIN_LENGTH:
        raise DatabaseError(f"a PIN needs at least {MIN_PIN_LENGTH} characters")
    if len(pin) > MAX_PIN_LENGTH:
        raise DatabaseError(f"a PIN has at most {MAX_PIN_LENGTH} characters, this one has {len(pin)}")
    if not pin.strip():
        raise DatabaseError("a PIN may not be all spaces")
    # The first PINs an offline search or a shoulder-surfer tries: one repeated character
    # (000000) and a run up or down (123456, 987654).
    steps = {ord(b) - ord(a) for a, b in zip(pin, pin[1:])}
    if steps in ({0}, {1}, {-1}):
        raise DatabaseError("a PIN may not be one repeated character or a run such as 123456 or 654321; "
                            "choose one that is harder to guess")


def validate_name(name: str, what: str = "user") -> None:
    """DatabaseError for a name that could not be told apart in the audit trail, on screen or on
    disk; one rule for users, products and stations (``what`` says which, for the message):
    empty, blank, padded with spaces, too long, holding control or invisible format characters
    (a line break or a right-to-left override would forge what an audit line says), a path
    separator or ``..`` (a product names its teach folder: ``../tile`` would be ``tile``'s)."""
    if not name.strip():
        raise DatabaseError(f"a {what} needs a name")
    if name != name.strip():
        raise DatabaseError(f"a {what} name may not start or end with spaces: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise DatabaseError(f"a {what} name has at most {MAX_NAME_LENGTH} characters, {name[:20]!r}... has {len(name)}")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise DatabaseError(f"a {what} name may not contain control characters or invisible ones "
                            f"(bidirectional overrides, zero-width spaces): {name!r}")
    if "/" in name or "\\" in name or ".." in name or name == ".":
        raise DatabaseError(f"a {what} name may not contain '/', '\\' or '..', nor be '.': {name!r}")


def name_key(name: str) -> str:
    """What two names that look alike share: ``OP1``, ``op1`` and ``ｏｐ１`` (full-width) all give
    ``op1``. Compatibility normalisation (NFKC) folds look-alike forms of one character, case
    folding the case; the audit trail would otherwise show two people as one."""
    return unicodedata.normalize("NFKC", name).casefold()


def look_alike(name: str, existing: list[str]) -> str | None:
    """The first of ``existing`` that looks like ``name`` without being it (see :func:`name_key`)."""
    key = name_key(name)
    return next((other for other in existing if other != name and name_key(other) == key), None)


def lock_delay(failures: int) -> timedelta | None:
    """How long ``failures`` consecutive wrong PINs lock an account: none below
    :data:`LOCK_AFTER_FAILURES`, then :data:`FIRST_LOCK`, doubling with each further wrong PIN
    up to :data:`MAX_LOCK`."""
    if failures < LOCK_AFTER_FAILURES:
        return None
    doublings = min(failures - LOCK_AFTER_FAILURES, 32)  # bounded: 2**32 x 30 s is past any cap
    return min(FIRST_LOCK * 2**doublings, MAX_LOCK)


def _derive(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=_KEY_BYTES
    )
