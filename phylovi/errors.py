"""Every exception phylovi raises on purpose.

Library callers catch :class:`PhyloviError` (or one of its subclasses); the
CLI turns any of them into a one-line message and exit code 2.
"""

from __future__ import annotations

import os


class PhyloviError(Exception):
    """Base class of every error phylovi raises on purpose."""


class InputError(PhyloviError, ValueError):
    """Bad user input, located in a file where possible.

    ``str(error)`` is ``"{path}:{line}:{column}: {message}"`` with the parts
    that are known, so one line tells the user where to look.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None,
                 line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = [str(part) for part in (self.path, self.line, self.column) if part is not None]
        text = " ".join(self.message.split())  # always one line
        return ":".join(where) + ": " + text if where else text


class AlignmentError(InputError):
    """An alignment file that cannot be read or is not a valid DNA alignment."""


class TreeFileError(InputError):
    """A tree file or tree string that cannot be read, or a tree that is not usable."""


class TaxonMismatchError(InputError):
    """Two inputs that must share one taxon set do not.

    Args:
        only_left: taxa present only in the first input.
        only_right: taxa present only in the second input.
    """

    def __init__(self, message: str, only_left=(), only_right=(), **where):
        super().__init__(message, **where)
        self.only_left = tuple(only_left)
        self.only_right = tuple(only_right)


class ModelError(InputError):
    """An unknown or malformed substitution-model string or parameter value."""


class GenotypeMatrixError(InputError):
    """A genotype matrix (cells x mutations of 0, 1 and missing) that cannot be
    read or is not valid, or a test that the matrix does not admit."""


class ConfigError(InputError):
    """A bad command-line argument or configuration value."""


class OutputError(InputError):
    """An output path that cannot be written (no such folder, a folder in place of a
    file, no permission)."""


class PosteriorFileError(InputError):
    """A saved tree-posterior model that cannot be read."""


class InferenceError(PhyloviError):
    """An inference that failed numerically on valid input (an optimisation that
    diverged), with what to change to avoid it."""


def require_type(value, expected: type | tuple[type, ...], what: str) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an instance of ``expected``.

    The public API checks its arguments' types with this, so that a wrong one
    is named in one line rather than failing deep inside with a TypeError.
    """
    if not isinstance(value, expected):
        types = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join({os.PathLike: "path", type(None): "None"}.get(t, t.__name__)
                            for t in types)
        article = "an" if names[0] in "AEIOU" else "a"
        got = "None" if value is None else f"{type(value).__name__} {value!r:.60}"
        raise ConfigError(f"{what} must be {article} {names}, got {got}")


def require_path(value, what: str) -> None:
    """:func:`require_type` for a file path (a string or an ``os.PathLike``)."""
    require_type(value, (str, os.PathLike), what)
