"""Single-cell genotype matrices: cells x mutations of 0, 1 and missing.

``1`` means the cell carries the mutation, ``0`` that it was not observed, and
``3`` (:data:`MISSING`) that there is no call. Files are read and written by
:mod:`phylovi.io.genotype`; :class:`GenotypeMatrix` validates the values and
names and answers the exact questions about them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from phylovi.errors import ConfigError, GenotypeMatrixError
from phylovi.genotype import perfect_phylogeny
from phylovi.io.genotype import (
    MISSING,
    MISSING_MARKERS,
    check_names,
    read_genotype_table,
    write_genotype_table,
)

__all__ = ["GenotypeMatrix", "MISSING", "MISSING_MARKERS"]


class GenotypeMatrix:
    """A validated genotype matrix ``[n_cells, n_mutations]`` of 0, 1 and 3 (missing).

    Args:
        array: 2-D array-like of numbers 0, 1 and 3, rows are cells.
        cells: distinct cell names; default ``cell1, cell2, ...``.
        mutations: distinct mutation names; default ``mut1, mut2, ...``.

    Names must be non-empty, without tabs, line breaks or surrounding spaces,
    so that :meth:`write` and :meth:`read` give them back unchanged.

    Raises:
        GenotypeMatrixError: the array is not 2-D, holds another value, or the names
            are of the wrong number, repeated or unusable.
    """

    __slots__ = ("_values", "_cells", "_mutations")

    def __init__(self, array, cells: Sequence[str] | None = None,
                 mutations: Sequence[str] | None = None):
        array = np.asarray(array)
        if array.ndim != 2:
            raise GenotypeMatrixError("a genotype matrix is 2-D [n_cells, n_mutations], "
                                      f"got shape {array.shape}")
        n_cells, n_mutations = array.shape
        self._cells = _checked_names(cells, n_cells, "cell")
        self._mutations = _checked_names(mutations, n_mutations, "mutation")
        if array.dtype.kind not in "biuf":
            raise GenotypeMatrixError(f"genotype entries must be the numbers 0, 1 or {MISSING}, "
                                      f"got an array of dtype {array.dtype}")
        bad = np.argwhere(~np.isin(array, (0, 1, MISSING)))
        if len(bad):
            i, j = bad[0]
            raise GenotypeMatrixError(f"entry [{i}, {j}] (cell {self._cells[i]!r}, mutation "
                                      f"{self._mutations[j]!r}) is {array[i, j].item()!r}; "
                                      f"expected 0, 1 or {MISSING} (missing)")
        self._values = array.astype(np.int8)  # always a copy, so no caller can change it
        self._values.setflags(write=False)

    @classmethod
    def read(cls, path: str | os.PathLike, mutations_as_rows: bool = False,
             sep: str | None = None) -> GenotypeMatrix:
        """Read a genotype matrix file.

        Args:
            path: a TSV or CSV file, UTF-8. The first row is a corner label and
                the column names; each further row a name and its entries
                ``0``, ``1`` or a missing marker (:data:`MISSING_MARKERS`:
                ``3``, ``NA``, ``?`` or empty). Blank lines are skipped;
                fields may be quoted as in CSV.
            mutations_as_rows: the file is mutations x cells (SCITE's layout)
                and is transposed on reading.
            sep: the one-character field separator. By default it is ``\\t``
                for ``.tsv``/``.tab`` and ``,`` for ``.csv`` when the header
                holds it, else the first of tab, comma and semicolon found in
                the header, else runs of blanks (also what ``" "`` means).

        Raises:
            GenotypeMatrixError: the file cannot be read or is not a valid matrix.
        """
        values, cells, mutations = read_genotype_table(path, mutations_as_rows, sep)
        return cls(values, cells=cells, mutations=mutations)

    def write(self, path: str | os.PathLike, mutations_as_rows: bool = False) -> None:
        """Write the matrix as TSV in :meth:`read`'s layout, missing as ``3``, atomically.

        Args:
            path: the output file; it is replaced only once fully written.
            mutations_as_rows: write mutations x cells (SCITE's layout).

        Raises:
            OutputError: the folder is missing or read-only, or ``path`` is a folder.
            GenotypeMatrixError: the file cannot be written otherwise.
        """
        write_genotype_table(path, self._values, self._cells, self._mutations, mutations_as_rows)

    @property
    def n_cells(self) -> int:
        return self._values.shape[0]

    @property
    def n_mutations(self) -> int:
        return self._values.shape[1]

    @property
    def cells(self) -> tuple[str, ...]:
        return self._cells

    @property
    def mutations(self) -> tuple[str, ...]:
        return self._mutations

    @property
    def values(self) -> np.ndarray:
        """The read-only int8 array ``[n_cells, n_mutations]`` of 0, 1 and 3."""
        return self._values

    @property
    def missing(self) -> np.ndarray:
        """A bool mask ``[n_cells, n_mutations]``, true where the entry is missing."""
        return self._values == MISSING

    def filled(self, missing_as: int) -> np.ndarray:
        """A complete 0/1 int8 copy ``[n_cells, n_mutations]``, missing set to ``missing_as``.

        Raises:
            ConfigError: ``missing_as`` is neither 0 nor 1.
        """
        if missing_as not in (0, 1):
            raise ConfigError(f"missing_as must be 0 or 1, got {missing_as!r}")
        return np.where(self.missing, np.int8(missing_as), self._values)

    def is_perfect_phylogeny(self, missing_as: int | None = None) -> bool:
        """Whether the matrix is conflict-free; see :func:`perfect_phylogeny.is_perfect_phylogeny`.

        Args:
            missing_as: read missing entries as 0 or 1. By default a matrix
                with missing entries is refused, since the answer depends on
                them.

        Raises:
            GenotypeMatrixError: entries are missing and ``missing_as`` is not given.
        """
        return perfect_phylogeny.is_perfect_phylogeny(self._complete(missing_as))

    def is_linear(self, missing_as: int | None = None) -> bool:
        """Whether the conflict-free matrix is linear; see :func:`perfect_phylogeny.is_linear`.

        Args:
            missing_as: as in :meth:`is_perfect_phylogeny`.

        Raises:
            GenotypeMatrixError: entries are missing and ``missing_as`` is not
                given, or the matrix has conflicts (the message names a pair).
        """
        return self._conflict_free(perfect_phylogeny.is_linear, missing_as)

    def tree(self, missing_as: int | None = None) -> str:
        """The mutation tree as Newick; see :func:`perfect_phylogeny.perfect_phylogeny_tree`.

        Args:
            missing_as: as in :meth:`is_perfect_phylogeny`.

        Raises:
            GenotypeMatrixError: as in :meth:`is_linear`.
        """
        def tree_of(X):
            return perfect_phylogeny.perfect_phylogeny_tree(X, self._mutations, self._cells)
        return self._conflict_free(tree_of, missing_as)

    def __repr__(self) -> str:
        return (f"GenotypeMatrix({self.n_cells} cells x {self.n_mutations} mutations, "
                f"{int(self.missing.sum())} missing)")

    def _complete(self, missing_as: int | None) -> np.ndarray:
        if missing_as is not None:
            return self.filled(missing_as)
        missing = np.argwhere(self.missing)
        if len(missing):
            i, j = missing[0]
            raise GenotypeMatrixError(
                f"the exact tests need a complete matrix, but {len(missing)} entries are "
                f"missing (the first: cell {self._cells[i]!r}, mutation {self._mutations[j]!r}); "
                "pass missing_as=0 or missing_as=1 to read them as 0 or 1")
        return self._values

    def _conflict_free(self, function: Callable[[np.ndarray], object], missing_as):
        """``function(X)`` on the complete matrix, with conflicts reported by name."""
        X = self._complete(missing_as)
        try:
            return function(X)
        except GenotypeMatrixError:
            pairs = perfect_phylogeny.conflicting_pairs(X)
            if len(pairs) == 0:
                raise
        p, q = (self._mutations[k] for k in pairs[0])
        raise GenotypeMatrixError(
            f"mutations {p!r} and {q!r} conflict (cells carry both, only the first and only the "
            f"second), so the matrix is not a perfect phylogeny; {len(pairs)} pairs conflict")


def _checked_names(names: Sequence[str] | None, n: int, kind: str) -> tuple[str, ...]:
    prefix = {"cell": "cell", "mutation": "mut"}[kind]
    if names is None:
        return tuple(f"{prefix}{k + 1}" for k in range(n))
    if isinstance(names, str):
        raise GenotypeMatrixError(f"{kind} names must be a sequence of strings, not one string")
    names = tuple(names)
    if len(names) != n:
        raise GenotypeMatrixError(f"got {len(names)} {kind} names for {n} {kind}s")
    check_names(names, kind, lambda k: f"position {k + 1}", lambda k: ())
    return names


