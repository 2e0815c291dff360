"""Genotype matrix files: TSV or CSV tables of cells x mutations with 0, 1 and missing.

The format is the one of ``shared/data/genotype/README.md``: the first row is
a corner label and the column names, and every further row is a row name and
its entries ``0``, ``1`` or a missing marker (:data:`MISSING_MARKERS`). SCITE's
layout, mutations x cells, is read with ``mutations_as_rows=True``. Every
problem is a :class:`~phylovi.errors.GenotypeMatrixError` whose one line names
the file, line and column (1-based field index) where known.
:class:`phylovi.genotype.GenotypeMatrix` is the type built on these functions.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence

import numpy as np

from phylovi.errors import ConfigError, GenotypeMatrixError, require_path
from phylovi.io import atomic
from phylovi.io.files import read_bytes

MISSING = 3
MISSING_MARKERS = ("3", "NA", "?", "", "nan", "NaN")
"""The entries read as missing; :func:`write_genotype_table` writes ``3``."""

# pandas writes a table with missing values as floats: 0.0, 1.0 and an empty field.
_CODES = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "3.0": MISSING,
          **{marker: MISSING for marker in MISSING_MARKERS}}
_EXTENSION_SEPARATORS = {".tsv": "\t", ".tab": "\t", ".csv": ","}
_SNIFFED_SEPARATORS = ("\t", ",", ";")


def read_genotype_table(path: str | os.PathLike, mutations_as_rows: bool = False,
                        sep: str | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """The values ``[n_cells, n_mutations]`` (int8, 3 = missing), cell names and mutation names
    of a genotype file; see :meth:`phylovi.genotype.GenotypeMatrix.read` for the arguments.

    Raises:
        GenotypeMatrixError: the file cannot be read or is not a valid matrix.
    """
    require_path(path, "the genotype file")
    path = os.fspath(path)
    if sep is not None and (not isinstance(sep, str) or len(sep) != 1 or sep in '"\r\n'):
        raise ConfigError(f"sep must be one character, got {sep!r}")
    rows = _split_rows(_read_text(path), path, sep)
    if not rows:
        raise GenotypeMatrixError("the genotype file is empty", path)
    row_kind, column_kind = ("mutation", "cell") if mutations_as_rows else ("cell", "mutation")
    (header_line, header), data = rows[0], rows[1:]
    if len(header) < 2:
        raise GenotypeMatrixError(f"the header names no {column_kind}s: it must be a corner label "
                                  f"and then one {column_kind} name per column (is the separator "
                                  "right?)", path, header_line)
    # A first row of entries after a cell's name or index (SCITE, SiFit) is data, which
    # read as a header would silently lose that cell; mutations are not named 0 and 1.
    if all(field in _CODES and field for field in header[1:]):
        raise GenotypeMatrixError("the first line holds only entries (0, 1, missing) after its "
                                  "first field: it is data, not the "
                                  f"header (a corner label, then the {column_kind} names) that "
                                  "phylovi needs; add one to a headerless (SCITE) file", path,
                                  header_line)
    column_names = header[1:]
    check_names(column_names, column_kind, lambda k: f"column {k + 2}",
                lambda k: (path, header_line, k + 2))
    if not data:
        raise GenotypeMatrixError("the genotype file has a header but no data rows", path,
                                  header_line)
    if all(len(fields) == len(header) + 1 for _, fields in data):
        raise GenotypeMatrixError(f"every row has {len(header) + 1} fields, the header "
                                  f"{len(header)}: the header lacks its corner label (as R's "
                                  "write.table writes it); add one before the column names",
                                  path, header_line)
    values = np.empty((len(data), len(column_names)), dtype=np.int8)
    for r, (line, fields) in enumerate(data):
        values[r] = _parse_entries(fields, len(header), path, line)
    row_names = [fields[0] for _, fields in data]
    check_names(row_names, row_kind, lambda k: f"line {data[k][0]}",
                lambda k: (path, data[k][0], 1))
    if mutations_as_rows:
        return values.T, column_names, row_names
    return values, row_names, column_names


def write_genotype_table(path: str | os.PathLike, values: np.ndarray, cells: Sequence[str],
                         mutations: Sequence[str], mutations_as_rows: bool = False) -> None:
    """Write ``values`` ``[n_cells, n_mutations]`` as TSV in :func:`read_genotype_table`'s
    layout, atomically (the file is replaced only once fully written).

    Raises:
        GenotypeMatrixError: the file cannot be written.
    """
    corner, columns, rows = "cell", mutations, cells
    if mutations_as_rows:
        values, corner, columns, rows = values.T, "mutation", cells, mutations
    try:
        with atomic.write(path) as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow([corner, *columns])
            writer.writerows([name, *row] for name, row in zip(rows, np.asarray(values).tolist()))
    except OSError as error:
        raise GenotypeMatrixError(f"cannot write the genotype file: {error.strerror or error}",
                                  path) from error


def check_names(names: Sequence[str], kind: str, place: Callable[[int], str],
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
        data = read_bytes(path)
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
            if any(field.strip() for field in fields):  # not blank, nor only separators
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
