"""Salted PIN hashes (scrypt from the standard library); the PIN itself is never stored."""

from __future__ import annotations

import hashlib
import hmac
import os

# scrypt cost: n=2**14, r=8, p=1 is the interactive-login setting from the scrypt paper
# (Percival 2009) and costs ~16 MiB and a few tens of milliseconds per check.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
MIN_PIN_LENGTH = 4


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


def _derive(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=_KEY_BYTES
    )
