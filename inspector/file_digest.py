"""The SHA-256 that identifies a model file: in its metadata's digest check, in the history's model
versions, and in the line's check that an active model's file is unchanged. One function, so that
all three always agree."""

from __future__ import annotations

import hashlib
import os

from inspector.errors import ModelFileError


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks; ModelFileError if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()
