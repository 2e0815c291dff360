"""Single-cell genotype matrices: cells x mutations of 0, 1 and missing.

``1`` means the cell carries the mutation, ``0`` that it was not observed, and
``3`` (:data:`MISSING`) that there is no call. The file format is the one of
``shared/data/genotype/README.md``: a TSV (or CSV) whose first row is a corner
label and the mutation names, and whose every further row is a cell name and
its entries. SCITE's layout, mutations x cells, is read with
``mutations_as_rows=True``.

Every problem with the input is a :class:`~phylovi.errors.GenotypeMatrixError` whose
one line names the file, line and column (1-based field index) where known.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from phylovi.errors import GenotypeMatrixError
from phylovi.genotype import perfect_phylogeny
from phylovi.io import atomic

MISSING = 3
MISSING_MARKERS = ("3", "NA", "?", "")
"""The entries read as missing; :meth:`GenotypeMatrix.write` writes ``3``."""

_CODES = {"0": 0, "1": 1, **{marker: MISSING for marker in MISSING_MARKERS}}
_EXTENSION_SEPARATORS = {".tsv": "\t", ".tab": "\t", ".csv": ","}
_SNIFFED_SEPARATORS = ("\t", ",", ";")


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
        path = os.fspath(path)
        if sep is not None and (not isinstance(sep, str) or len(sep) != 1 or sep in '"\r\n'):
            raise ValueError(f"sep must be one character, got {sep!r}")
        rows = _split_rows(_read_text(path), path, sep)
        if not rows:
            raise GenotypeMatrixError("the genotype file is empty", path)
        row_kind, column_kind = ("mutation", "cell") if mutations_as_rows else ("cell", "mutation")
        (header_line, header), data = rows[0], rows[1:]
        if len(header) < 2:
            raise GenotypeMatrixError(f"the header names no {column_kind}s: it must be a corner label "
                                      f"and then one {column_kind} name per column (is the separator "
                                      "right?)", path, header_line)
        column_names = header[1:]
        _check_names(column_names, column_kind, lambda k: f"column {k + 2}",
                     lambda k: (path, header_line, k + 2))
        if not data:
            raise GenotypeMatrixError("the genotype file has a header but no data rows", path,
                                      header_line)
        values = np.empty((len(data), len(column_names)), dtype=np.int8)
        for r, (line, fields) in enumerate(data):
            values[r] = _parse_entries(fields, len(header), path, line)
        row_names = [fields[0] for _, fields in data]
        _check_names(row_names, row_kind, lambda k: f"line {data[k][0]}",
                     lambda k: (path, data[k][0], 1))
        if mutations_as_rows:
            return cls(values.T, cells=column_names, mutations=row_names)
        return cls(values, cells=row_names, mutations=column_names)

    def write(self, path: str | os.PathLike, mutations_as_rows: bool = False) -> None:
        """Write the matrix as TSV in :meth:`read`'s layout, missing as ``3``, atomically.

        Args:
            path: the output file; it is replaced only once fully written.
            mutations_as_rows: write mutations x cells (SCITE's layout).

        Raises:
            GenotypeMatrixError: the file cannot be written.
        """
        values, corner, columns, rows = self._values, "cell", self._mutations, self._cells
        if mutations_as_rows:
            values, corner, columns, rows = values.T, "mutation", self._cells, self._mutations
        try:
            with atomic.write(path) as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                writer.writerow([corner, *columns])
                writer.writerows([name, *row] for name, row in zip(rows, values.tolist()))
        except OSError as error:
            raise GenotypeMatrixError(f"cannot write the genotype file: {error.strerror or error}",
                                      path) from error

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
        """A complete 0/1 int8 copy ``[n_cells, n_mutations]``, missing set to ``missing_as``."""
        if missing_as not in (0, 1):
            raise ValueError(f"missing_as must be 0 or 1, got {missing_as!r}")
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
        except ValueError:
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
    _check_names(names, kind, lambda k: f"position {k + 1}", lambda k: ())
    return names


def _check_names(names: Sequence[str], kind: str, place: Callable[[int], str],
                 where: Callable[[int], tuple]) -> None:
    """Raise on the first unusable or repeated name.

    ``place(k)`` describes name ``k``'s position in words; ``where(k)`` is
    the (path, line, column) to report, or ``()`` outside a file.
    """
    first: dict[str, int] = {}
    for k, name in enumerate(names):
        problem = _name_problem(name, kind)
        if problem is None and name in first:
            problem = f"{kind} name {name!r} appears twice, at {place(first[name])} and {place(k)}"
        if problem is not None:
            raise GenotypeMatrixError(problem, *where(k))
        first[name] = k


def _name_problem(name, kind: str) -> str | None:
    if not isinstance(name, str):
        return f"{kind} name {name!r} is not a string"
    if not name:
        return f"a {kind} name is empty"
    if any(ch in name for ch in "\t\n\r"):
        return f"{kind} name {name!r} holds a tab or a line break"
    if name != name.strip():
        return f"{kind} name {name!r} has leading or trailing spaces"
    return None


def _read_text(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise GenotypeMatrixError(f"cannot read the genotype file: {error.strerror or error}",
                                  path) from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise GenotypeMatrixError(f"the file is not UTF-8 text (byte {data[error.start]:#04x})", path,
                                  data.count(b"\n", 0, error.start) + 1) from None
    if "\0" in text:
        raise GenotypeMatrixError("the text holds a NUL character; is this a binary file?", path,
                                  text.count("\n", 0, text.index("\0")) + 1)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_rows(text: str, path: str, sep: str | None) -> list[tuple[int, list[str]]]:
    """The non-blank rows as (line number, stripped fields)."""
    lines = text.split("\n")
    header = next((line for line in lines if line.strip()), "")
    sep = sep or _sniff_separator(header, path)
    if sep == " ":  # fields separated by runs of blanks
        return [(number, line.split()) for number, line in enumerate(lines, start=1)
                if line.strip()]
    reader = csv.reader(io.StringIO(text), delimiter=sep, strict=True)
    rows = []
    try:
        for fields in reader:
            if len(fields) > 1 or (fields and fields[0].strip()):
                rows.append((reader.line_num, [field.strip() for field in fields]))
    except csv.Error as error:
        raise GenotypeMatrixError(f"malformed field: {error}", path, reader.line_num) from None
    return rows


def _sniff_separator(header: str, path: str) -> str:
    guess = _EXTENSION_SEPARATORS.get(os.path.splitext(path)[1].lower())
    if guess is not None and guess in header:
        return guess
    return next((sep for sep in _SNIFFED_SEPARATORS if sep in header), " ")


def _parse_entries(fields: list[str], n_fields: int, path: str, line: int) -> list[int]:
    if len(fields) != n_fields:
        column = min(len(fields), n_fields) + 1
        raise GenotypeMatrixError(f"the row has {len(fields)} fields, expected {n_fields} (a name and "
                                  f"{n_fields - 1} entries, as in the header)", path, line, column)
    codes = [_CODES.get(field) for field in fields[1:]]
    if None in codes:
        k = codes.index(None)
        value = fields[k + 1]
        hint = "; SCITE's 2 (homozygous) must be mapped to 1 first" if value == "2" else ""
        raise GenotypeMatrixError(f"entry {value!r} is not 0, 1 or a missing marker "
                                  f"({', '.join(repr(m) for m in MISSING_MARKERS)}){hint}",
                                  path, line, k + 2)
    return codes
