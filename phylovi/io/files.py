"""Reading input files' bytes, gzip-compressed or not (IQ-TREE and BEAST users keep
their alignments and tree samples gzipped)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, decompressed when they start with gzip's magic number.

    Raises:
        OSError: the file cannot be read, or is a damaged gzip file (``strerror`` says
            which, for the callers' one-line messages).
    """
    data = Path(path).read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise OSError(0, f"a damaged gzip file ({error})") from None


def extension(path: str | os.PathLike | None) -> str:
    """The lower-case extension that tells a format, under any ``.gz``."""
    name = os.fspath(path or "").lower()
    return os.path.splitext(name.removesuffix(".gz"))[1]
