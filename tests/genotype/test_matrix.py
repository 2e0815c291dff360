"""GenotypeMatrix: validation, reading and writing TSV/CSV, and the exact tests on it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from phylovi.errors import ConfigError, GenotypeMatrixError, InputError
from phylovi.genotype import MISSING_MARKERS, GenotypeMatrix, conflicting_pairs


def write_file(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def assert_one_line(error: GenotypeMatrixError, path, line, column) -> None:
    text = str(error)
    assert "\n" not in text
    where = ":".join(str(part) for part in (path, line, column) if part is not None)
    assert text.startswith(where + ": "), text
    assert (error.path, error.line, error.column) == (str(path), line, column)


# Constructor


def test_constructor_defaults_names_and_stores_a_read_only_int8_copy():
    array = np.array([[0, 1, 3], [1, 1, 0]])
    matrix = GenotypeMatrix(array)
    array[0, 0] = 1
    assert matrix.cells == ("cell1", "cell2")
    assert matrix.mutations == ("mut1", "mut2", "mut3")
    assert (matrix.n_cells, matrix.n_mutations) == (2, 3)
    assert matrix.values.dtype == np.int8
    assert matrix.values.tolist() == [[0, 1, 3], [1, 1, 0]]
    assert matrix.missing.tolist() == [[False, False, True], [False, False, False]]
    with pytest.raises(ValueError):
        matrix.values[0, 0] = 1
    assert repr(matrix) == "GenotypeMatrix(2 cells x 3 mutations, 1 missing)"


def test_constructor_accepts_bool_float_and_lists():
    assert GenotypeMatrix(np.eye(2, dtype=bool)).values.tolist() == [[1, 0], [0, 1]]
    assert GenotypeMatrix([[0.0, 3.0]], ["c"], ["a", "b"]).missing.tolist() == [[False, True]]


@pytest.mark.parametrize("array, cells, mutations, fragment", [
    (np.array([0, 1]), None, None, "2-D"),
    (np.zeros((1, 1, 1)), None, None, "2-D"),
    (np.array([[0, 1], [2, 0]]), ["x", "y"], ["a", "b"],
     "entry [1, 0] (cell 'y', mutation 'a') is 2; expected 0, 1 or 3"),
    (np.array([[0, -1]]), None, None, "is -1"),
    (np.array([[0.5]]), None, None, "is 0.5"),
    (np.array([[np.nan]]), None, None, "is nan"),
    (np.array([["0", "1"]]), None, None, "dtype <U1"),
    ([[0, 1]], ["c1", "c2"], None, "got 2 cell names for 1 cells"),
    ([[0, 1]], None, ["a"], "got 1 mutation names for 2 mutations"),
    ([[0, 1]], None, ["a", "a"], "mutation name 'a' appears twice, at position 1 and position 2"),
    ([[0], [1]], ["c", "c"], None, "cell name 'c' appears twice"),
    ([[0, 1]], None, ["a", "b\tc"], "holds a tab"),
    ([[0, 1]], None, ["a", ""], "a mutation name is empty"),
    ([[0, 1]], None, ["a", " b"], "leading or trailing spaces"),
    ([[0, 1]], None, ["a", 7], "mutation name 7 is not a string"),
    ([[0, 1]], "c", None, "not one string"),
])
def test_constructor_refuses_bad_input_in_one_line(array, cells, mutations, fragment):
    with pytest.raises(GenotypeMatrixError) as caught:
        GenotypeMatrix(array, cells, mutations)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, InputError) and isinstance(caught.value, ValueError)


# Reading


def test_read_tsv_gives_names_values_and_missing(tmp_path):
    path = write_file(tmp_path, "m.tsv", "cell\tTP53\tKRAS\tAPC\nc1\t1\t0\t3\nc2\t0\t1\t1\n")
    matrix = GenotypeMatrix.read(path)
    assert matrix.cells == ("c1", "c2")
    assert matrix.mutations == ("TP53", "KRAS", "APC")
    assert matrix.values.tolist() == [[1, 0, 3], [0, 1, 1]]
    assert matrix.missing.sum() == 1


def test_missing_markers_are_the_documented_six():
    assert MISSING_MARKERS == ("3", "NA", "?", "", "nan", "NaN")


def test_pandas_float_entries_and_a_spreadsheets_empty_rows_read(tmp_path):
    """pandas writes a table with NaN as 0.0/1.0 and empty fields; a spreadsheet's CSV
    can end in rows of separators only."""
    content = "\ta\tb\tc\nx\t1.0\t0.0\t\ny\tnan\t1.0\t0.0\n\t\t\t\n"
    matrix = GenotypeMatrix.read(write_file(tmp_path, "pandas.tsv", content))
    assert matrix.cells == ("x", "y") and matrix.mutations == ("a", "b", "c")
    assert matrix.values.tolist() == [[1, 0, 3], [3, 1, 0]]


@pytest.mark.parametrize("marker", MISSING_MARKERS)
@pytest.mark.parametrize("name, sep", [("m.tsv", "\t"), ("m.csv", ",")])
def test_each_missing_marker_reads_as_missing(tmp_path, marker, name, sep):
    rows = [["cell", "a", "b", "c"], ["x", marker, "1", "0"], ["y", "0", "1", marker]]
    path = write_file(tmp_path, name, "".join(sep.join(row) + "\n" for row in rows))
    matrix = GenotypeMatrix.read(path)
    assert matrix.missing.tolist() == [[True, False, False], [False, False, True]]
    assert matrix.values.tolist() == [[3, 1, 0], [0, 1, 3]]


@pytest.mark.parametrize("name, content, sep", [
    ("m.csv", "cell,a,b\nx,0,1\ny,1,NA\n", None),
    ("m.csv", "cell\ta\tb\nx\t0\t1\ny\t1\tNA\n", None),  # the header shows the tab
    ("m.txt", "cell;a;b\nx;0;1\ny;1;NA\n", None),
    ("m.dat", "cell  a b\n x 0   1\ny 1 NA\n", None),  # runs of blanks
    ("m.dat", "cell a b\nx 0 1\ny 1 NA\n", " "),
    ("m.tsv", "cell|a|b\nx|0|1\ny|1|NA\n", "|"),
])
def test_separator_from_extension_header_or_argument(tmp_path, name, content, sep):
    matrix = GenotypeMatrix.read(write_file(tmp_path, name, content), sep=sep)
    assert matrix.mutations == ("a", "b")
    assert matrix.values.tolist() == [[0, 1], [1, 3]]


def test_sep_argument_overrides_sniffing(tmp_path):
    path = write_file(tmp_path, "m.txt", "cell;a,1;b,2\nx;0;1\n")
    assert GenotypeMatrix.read(path, sep=";").mutations == ("a,1", "b,2")
    with pytest.raises(GenotypeMatrixError):  # sniffed as commas: the rows are ragged
        GenotypeMatrix.read(path)
    with pytest.raises(ValueError):
        GenotypeMatrix.read(path, sep=";;")


def test_read_r_style_quoted_csv_with_crlf_bom_and_blank_lines(tmp_path):
    content = '\ufeff"","m 1","m2"\r\n\r\n"c1",0,1\r\n"c2",NA,1\r\n\r\n'
    matrix = GenotypeMatrix.read(write_file(tmp_path, "r.csv", content))
    assert matrix.cells == ("c1", "c2")
    assert matrix.mutations == ("m 1", "m2")
    assert matrix.values.tolist() == [[0, 1], [3, 1]]


def test_mutations_as_rows_reads_the_scite_layout_transposed(tmp_path):
    content = "mutation\tc1\tc2\tc3\nm1\t0\t1\t3\nm2\t1\t1\t0\n"
    matrix = GenotypeMatrix.read(write_file(tmp_path, "scite.tsv", content),
                                 mutations_as_rows=True)
    assert matrix.cells == ("c1", "c2", "c3")
    assert matrix.mutations == ("m1", "m2")
    assert matrix.values.tolist() == [[0, 1], [1, 1], [3, 0]]


BAD_FILES = [
    # (content, line, column, fragment of the message)
    ("cell\ta\tb\nc1\t0\t1\nc2\t1\t2\n", 3, 3, "entry '2' is not 0, 1 or a missing marker"),
    ("cell\ta\tb\nc1\tx\t1\n", 2, 2, "entry 'x'"),
    ("cell\ta\tb\nc1\t0.5\t1\n", 2, 2, "entry '0.5'"),
    ("cell\ta\tb\nc1\t0\n", 2, 3, "the row has 2 fields, expected 3"),
    ("cell\ta\tb\nc1\t0\t1\t1\nc2\t0\t1\n", 2, 4, "the row has 4 fields, expected 3"),
    # R's write.table: no corner label, so every row is one field longer than the header
    ("a\tb\nc1\t0\t1\nc2\t1\t1\n", 1, None, "the header lacks its corner label"),
    # a SiFit-style file without a header: cell indices, then entries
    ("5 0 1\n7 1 1\n9 1 0\n", 1, None, "the first line holds only entries"),
    # cell names, no header: read as one, the first cell was silently lost
    ("c1\t1\t0\nc2\t0\t1\nc3\t1\t1\n", 1, None, "the first line holds only entries"),
    ("cell\ta\nc1\t0\nc2\t1\nc1\t1\n", 4, 1, "cell name 'c1' appears twice, at line 2 and line 4"),
    ("cell\ta\tb\ta\nc1\t0\t1\t1\n", 1, 4,
     "mutation name 'a' appears twice, at column 2 and column 4"),
    ("cell\ta\t\tb\nc1\t0\t1\t1\n", 1, 3, "a mutation name is empty"),
    ("cell\ta\n\t1\n", 2, 1, "a cell name is empty"),
    ("cell\ta\tb\n", 1, None, "has a header but no data rows"),
    ("cell\nc1\n", 1, None, "the header names no mutations"),
    ("\n\ncell\ta\nc1\tz\n", 4, 2, "entry 'z'"),
    ("cell\ta\r\nc1\t0\r\nc2\t5\r\n", 3, 2, "entry '5'"),
    ('cell\ta\n"c1\t0\n', 2, None, "malformed field"),
    ("", None, None, "the genotype file is empty"),
    ("  \n\n\t\n", None, None, "the genotype file is empty"),
    (b"cell\ta\nc\xff1\t0\n", 2, None, "not UTF-8"),
    (b"cell\ta\nc1\t\x000\n", 2, None, "NUL"),
]


@pytest.mark.parametrize("content, line, column, fragment", BAD_FILES)
def test_bad_files_give_one_line_naming_file_line_and_column(tmp_path, content, line, column,
                                                             fragment):
    path = write_file(tmp_path, "bad.tsv", content)
    with pytest.raises(GenotypeMatrixError) as caught:
        GenotypeMatrix.read(path)
    assert fragment in str(caught.value)
    assert_one_line(caught.value, path, line, column)


def test_bad_names_in_the_scite_layout_say_which_kind(tmp_path):
    path = write_file(tmp_path, "scite.tsv", "mutation\tc1\tc1\nm1\t0\t1\n")
    with pytest.raises(GenotypeMatrixError, match="cell name 'c1' appears twice") as caught:
        GenotypeMatrix.read(path, mutations_as_rows=True)
    assert_one_line(caught.value, path, 1, 3)
    path = write_file(tmp_path, "scite2.tsv", "mutation\tc1\nm1\t0\nm1\t1\n")
    with pytest.raises(GenotypeMatrixError, match="mutation name 'm1' appears twice") as caught:
        GenotypeMatrix.read(path, mutations_as_rows=True)
    assert_one_line(caught.value, path, 3, 1)


def test_scite_homozygous_2_gets_a_hint(tmp_path):
    path = write_file(tmp_path, "scite.tsv", "mutation\tc1\nm1\t2\n")
    with pytest.raises(GenotypeMatrixError, match="SCITE's 2"):
        GenotypeMatrix.read(path, mutations_as_rows=True)


def test_unreadable_file_is_a_genotype_error(tmp_path):
    path = tmp_path / "absent.tsv"
    with pytest.raises(GenotypeMatrixError, match="cannot read the genotype file") as caught:
        GenotypeMatrix.read(path)
    assert_one_line(caught.value, path, None, None)


# Writing


def test_write_layout_and_missing_as_3(tmp_path):
    matrix = GenotypeMatrix([[0, 1], [3, 1]], ["c1", "c2"], ["a", "b"])
    matrix.write(tmp_path / "out.tsv")
    assert (tmp_path / "out.tsv").read_text() == "cell\ta\tb\nc1\t0\t1\nc2\t3\t1\n"
    matrix.write(tmp_path / "scite.tsv", mutations_as_rows=True)
    assert (tmp_path / "scite.tsv").read_text() == "mutation\tc1\tc2\na\t0\t3\nb\t1\t1\n"
    assert sorted(os.listdir(tmp_path)) == ["out.tsv", "scite.tsv"]  # no temporary files left


@pytest.mark.parametrize("mutations_as_rows", [False, True])
def test_write_then_read_gives_back_the_matrix(tmp_path, mutations_as_rows):
    rng = np.random.default_rng(5)
    values = rng.choice([0, 1, 3], size=(7, 5))
    cells = ["c 1", '"quoted"', "c,3", "c;4", "c'5", "c#6", "NA"]
    mutations = ["TP53", "PTEN_AND_TBX3", "a b", "x\"y", "?"]
    matrix = GenotypeMatrix(values, cells, mutations)
    path = tmp_path / "round.tsv"
    matrix.write(path, mutations_as_rows=mutations_as_rows)
    again = GenotypeMatrix.read(path, mutations_as_rows=mutations_as_rows)
    assert again.cells == matrix.cells
    assert again.mutations == matrix.mutations
    np.testing.assert_array_equal(again.values, matrix.values)


def test_write_failure_is_one_line_naming_the_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "absent" / "out.tsv"
    # An OutputError from phylovi.io.atomic (a GenotypeMatrixError before it existed).
    with pytest.raises(InputError, match="cannot write") as caught:
        GenotypeMatrix([[0]]).write(path)
    assert_one_line(caught.value, path, None, None)
    assert os.listdir(tmp_path) == []


# Exact tests on a matrix


def test_exact_methods_on_a_complete_matrix():
    matrix = GenotypeMatrix([[1, 1, 0], [1, 0, 0], [0, 0, 1]], ["x", "y", "z"],
                            ["a", "b", "c d"])
    assert matrix.is_perfect_phylogeny()
    assert not matrix.is_linear()
    assert matrix.tree() == "((y,(x)b)a,(z)'c d');"


def test_missing_entries_need_missing_as():
    matrix = GenotypeMatrix([[1, 1], [1, 3], [0, 1]], ["x", "y", "z"], ["a", "b"])
    for method in (matrix.is_perfect_phylogeny, matrix.is_linear, matrix.tree):
        with pytest.raises(GenotypeMatrixError, match="need a complete matrix") as caught:
            method()
        assert "cell 'y', mutation 'b'" in str(caught.value)
        assert "missing_as" in str(caught.value)
    assert not matrix.is_perfect_phylogeny(missing_as=0)  # (1,1), (1,0), (0,1)
    assert matrix.is_perfect_phylogeny(missing_as=1)  # a inside b
    assert matrix.is_linear(missing_as=1)
    assert matrix.tree(missing_as=1) == "((z,(x,y)a)b);"
    assert matrix.filled(0).tolist() == [[1, 1], [1, 0], [0, 1]]
    with pytest.raises(ConfigError, match="missing_as must be 0 or 1"):
        matrix.is_perfect_phylogeny(missing_as=3)
    with pytest.raises(ConfigError, match="missing_as must be 0 or 1, got 2") as caught:
        matrix.filled(2)
    assert isinstance(caught.value, ValueError)  # older `except ValueError` still works


def test_linear_and_tree_of_a_conflicting_matrix_name_a_pair():
    matrix = GenotypeMatrix([[1, 1, 0], [1, 0, 0], [0, 1, 0]], mutations=["a", "b", "c"])
    assert not matrix.is_perfect_phylogeny()
    for method in (matrix.is_linear, matrix.tree):
        with pytest.raises(GenotypeMatrixError, match="mutations 'a' and 'b' conflict") as caught:
            method()
        assert "\n" not in str(caught.value)


# The four real matrices (shared/data/genotype/README.md)

REAL = [
    # (file, cells, mutations, ones, missing, conflicting pairs with missing read as 0)
    ("hou2012_et_58x18.tsv", 58, 18, 263, 468, 141),
    ("gawad2014_all_p6_146x10.tsv", 146, 10, 1081, 0, 45),
    ("wang2014_tnbc_16x20.tsv", 16, 20, 183, 0, 91),
    ("leung2017_crc_p1_178x16.tsv", 178, 16, 614, 191, 109),
]


@pytest.mark.parametrize("name, n_cells, n_mutations, n_ones, n_missing, n_conflicts", REAL)
def test_real_matrices_read_as_the_readme_says(shared, tmp_path, name, n_cells, n_mutations,
                                               n_ones, n_missing, n_conflicts):
    path = shared(f"genotype/{name}")
    matrix = GenotypeMatrix.read(path)
    assert (matrix.n_cells, matrix.n_mutations) == (n_cells, n_mutations)
    assert int(matrix.missing.sum()) == n_missing
    assert int((matrix.values == 1).sum()) == n_ones
    assert not matrix.is_perfect_phylogeny(missing_as=0)
    assert len(conflicting_pairs(matrix.filled(0))) == n_conflicts
    if n_missing:
        with pytest.raises(GenotypeMatrixError, match="complete matrix"):
            matrix.is_perfect_phylogeny()
    else:
        assert not matrix.is_perfect_phylogeny()
    matrix.write(tmp_path / name)
    assert (tmp_path / name).read_bytes() == path.read_bytes()  # the same layout, byte for byte
