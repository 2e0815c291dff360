"""Reading FASTA, NEXUS and PHYLIP alignments, and rejecting bad ones."""

from __future__ import annotations

import pytest

from phylovi.errors import AlignmentError
from phylovi.io.alignment import Alignment, parse_alignment, read_alignment

NAMES = ("Homo_sapiens", "Pan", "Gorilla_gorilla")
SEQUENCES = ("ACGTRYKMSWACGTAC", "ACGTBDHVNNACG?A-", "ACGTACGTACGTACGT")
PAN = SEQUENCES[1]

FASTA = """>Homo_sapiens a description
ACGTRYKM
SWACGTAC
>Pan
acgtbdhvnnacg?a-
>Gorilla_gorilla
ACGTACGTACGTACGT
"""

NEXUS_INTERLEAVED = """#NEXUS
[a comment]
BEGIN DATA;
    DIMENSIONS NTAX=3 NCHAR=16;
    FORMAT DATATYPE=DNA MISSING=? GAP=- INTERLEAVE;
MATRIX
Homo_sapiens     ACGTRYKM
Pan              ACGTBDHV
Gorilla_gorilla  ACGTACGT

Homo_sapiens     SWACGTAC
Pan              NNACG?A-
Gorilla_gorilla  ACGTACGT
;
END;
"""

NEXUS_SEQUENTIAL = """#NEXUS
begin data;
  dimensions ntax=3 nchar=16;
  format datatype=dna missing=? gap=-;
  matrix
    Homo_sapiens ACGTRYKMSWACGTAC
    Pan ACGTBDHVNNACG?A-
    Gorilla_gorilla ACGTACGTACGTACGT
  ;
end;
"""

PHYLIP_RELAXED = """3 16
Homo_sapiens ACGTRYKMSW ACGTAC
Pan          ACGTBDHVNN ACG?A-
Gorilla_gorilla ACGTACGTACGTACGT
"""

PHYLIP_RELAXED_INTERLEAVED = """ 3 16
Homo_sapiens ACGTRYKM
Pan          ACGTBDHV
Gorilla_gorilla ACGTACGT

SWACGTAC
NNACG?A-
ACGTACGT
"""

PHYLIP_RELAXED_SEQUENTIAL = """3 16
Homo_sapiens ACGTRYKM
SWACGTAC
Pan ACGTBDHV
NNACG?A-
Gorilla_gorilla ACGTACGT
ACGTACGT
"""

PHYLIP_STRICT = """3 16
Homo_sapieACGTRYKMSWACGTAC
Pan       ACGTBDHVNNACG?A-
Gorilla_goACGTACGTACGTACGT
"""

# A character's IUPAC meaning, written out independently of the code under test.
IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T", "U": "T",
    "R": "AG", "Y": "CT", "K": "GT", "M": "AC", "S": "CG", "W": "AT",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG",
    "N": "ACGT", "X": "ACGT", "?": "ACGT", "-": "ACGT",
}


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def assert_one_line_naming(error: AlignmentError, path, *fragments: str) -> None:
    text = str(error)
    assert "\n" not in text
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text


@pytest.mark.parametrize("name, content", [
    ("a.fasta", FASTA),
    ("a.nex", NEXUS_INTERLEAVED),
    ("a.nex", NEXUS_SEQUENTIAL),
    ("a.phy", PHYLIP_RELAXED),
    ("a.phy", PHYLIP_RELAXED_INTERLEAVED),
    ("a.phy", PHYLIP_RELAXED_SEQUENTIAL),
    # the file's own gap and missing symbols (Biopython keeps them as they are)
    ("a.nex", NEXUS_SEQUENTIAL.replace("missing=? gap=-", "missing=* gap=~")
     .replace("ACG?A-", "ACG*A~")),
    # blank lines after the header and between one-line rows (IQ-TREE reads both)
    ("a.phy", PHYLIP_RELAXED.replace("3 16\n", "3 16\n\n").replace("\nPan", "\n\nPan")),
    ("a.phy", PHYLIP_RELAXED_INTERLEAVED.replace("3 16\n", "3 16\n \n")),
], ids=["fasta", "nexus-interleaved", "nexus-sequential", "phylip-relaxed",
        "phylip-relaxed-interleaved", "phylip-relaxed-sequential", "nexus-own-gap-and-missing",
        "phylip-blank-lines", "phylip-interleaved-blank-line-after-header"])
def test_read_alignment_each_format_reads_names_and_sequences(tmp_path, name, content):
    path = write(tmp_path, name, content)
    alignment = read_alignment(path)
    assert alignment.taxa.names == NAMES
    assert alignment.sequences == SEQUENCES
    assert (alignment.n_taxa, alignment.n_sites) == (3, 16)
    assert alignment.path == str(path)


def test_read_alignment_phylip_wrapped_sequential_with_ten_character_names(tmp_path):
    # the interleaved reader also fits the header here, taking "TTTTAAAACC" for a taxon
    text = ("3 40\nTaxon_0001 ACGTACGTAC GGGGCCCCAA\nTTTTAAAACC GGTTAACCGG\n"
            "Taxon_0002 ACGTACGTAA GGGGCCCCAA\nTTTTAAAACC GGTTAACCGT\n"
            "Taxon_0003 ACGTACGTAG GGGGCCCCTA\nTTTTAAAACG GGTTAACCGA\n")
    alignment = read_alignment(write(tmp_path, "a.phy", text))
    assert alignment.taxa.names == ("Taxon_0001", "Taxon_0002", "Taxon_0003")
    assert alignment.sequences[2] == "ACGTACGTAGGGGGCCCCTATTTTAAAACGGGTTAACCGA"


def test_read_alignment_phylip_strict_cuts_names_at_ten_characters(tmp_path):
    alignment = read_alignment(write(tmp_path, "a.phy", PHYLIP_STRICT))
    assert alignment.taxa.names == ("Homo_sapie", "Pan", "Gorilla_go")
    assert alignment.sequences == SEQUENCES


@pytest.mark.parametrize("content", [
    PHYLIP_RELAXED_INTERLEAVED.replace(" 3 16", " 3 16 I"),
    PHYLIP_RELAXED_SEQUENTIAL.replace("3 16", "3 16 s"),
], ids=["interleaved", "sequential"])
def test_read_alignment_phylip_layout_options_in_the_header_are_read(tmp_path, content):
    # PHYLIP 3 programs wrote "I" or "S" after the counts; the content, not the name, says PHYLIP
    assert read_alignment(write(tmp_path, "a.txt", content)).sequences == SEQUENCES


def test_read_alignment_phylip_other_header_options_are_named(tmp_path):
    path = write(tmp_path, "a.phy", "\n" + PHYLIP_RELAXED.replace("3 16", "3 16 W"))
    with pytest.raises(AlignmentError, match=r"a.phy:2: PHYLIP header option 'W'"):
        read_alignment(path)


def test_read_alignment_windows_line_endings_read_like_unix(tmp_path):
    path = write(tmp_path, "a.fasta", b"\xef\xbb\xbf" + FASTA.replace("\n", "\r\n").encode())
    assert read_alignment(path).sequences == SEQUENCES


def test_read_alignment_nexus_uncertainty_and_polymorphism_are_ambiguity_codes():
    text = ("#NEXUS\nbegin data; dimensions ntax=2 nchar=6; format datatype=dna gap=- "
            "missing=?;\nmatrix\nA AC{AG}G(CT)T\nB ACGT{acgt}-\n;\nend;\n")
    assert parse_alignment(text).sequences == ("ACRGYT", "ACGTN-")


@pytest.mark.parametrize("content", [FASTA, NEXUS_INTERLEAVED, PHYLIP_RELAXED],
                         ids=["fasta", "nexus", "phylip"])
def test_read_alignment_gzipped_reads_like_the_plain_file(tmp_path, content):
    import gzip

    path = write(tmp_path, "a.fasta.gz", gzip.compress(content.encode()))
    assert read_alignment(path).sequences == SEQUENCES
    path.write_bytes(gzip.compress(content.encode())[:30])
    with pytest.raises(AlignmentError, match="a.fasta.gz: cannot read .* damaged gzip"):
        read_alignment(path)


@pytest.mark.parametrize("content", [FASTA, NEXUS_INTERLEAVED, PHYLIP_RELAXED],
                         ids=["fasta", "nexus", "phylip"])
def test_read_alignment_format_detected_from_content_despite_extension(tmp_path, content):
    assert read_alignment(write(tmp_path, "a.txt", content)).sequences == SEQUENCES
    assert read_alignment(write(tmp_path, "a.fasta", content)).sequences == SEQUENCES


def test_read_alignment_format_detected_from_content_after_blank_lines(tmp_path):
    assert read_alignment(write(tmp_path, "a", "\n  \n" + FASTA)).sequences == SEQUENCES


@pytest.mark.parametrize("extension", [".fa", ".fasta", ".fas", ".fna", ".FASTA"])
def test_read_alignment_fasta_extension_picks_fasta_parser(tmp_path, extension):
    path = write(tmp_path, "a" + extension, "junk\n" + FASTA)
    with pytest.raises(AlignmentError, match="must start with a '>'") as caught:
        read_alignment(path)
    assert caught.value.line == 1


@pytest.mark.parametrize("extension", [".nex", ".nexus", ".nxs"])
def test_read_alignment_nexus_extension_picks_nexus_parser(tmp_path, extension):
    content = NEXUS_SEQUENTIAL.replace("#NEXUS", "")  # no signature to detect
    assert read_alignment(write(tmp_path, "a" + extension, content)).sequences == SEQUENCES


@pytest.mark.parametrize("extension", [".phy", ".phylip"])
def test_read_alignment_phylip_extension_picks_phylip_parser(tmp_path, extension):
    with pytest.raises(AlignmentError, match="PHYLIP"):
        read_alignment(write(tmp_path, "a" + extension, "three sixteen\n"))


def test_read_alignment_format_argument_overrides_detection(tmp_path):
    path = write(tmp_path, "a.fasta", FASTA)
    with pytest.raises(AlignmentError, match="PHYLIP"):
        read_alignment(path, format="phylip")
    assert read_alignment(path, format="FASTA").sequences == SEQUENCES
    renamed = write(tmp_path, "a.phy", NEXUS_INTERLEAVED.replace("#NEXUS", ""))
    assert read_alignment(renamed, format="nexus").sequences == SEQUENCES


@pytest.mark.parametrize("character", sorted(IUPAC))
def test_read_alignment_iupac_character_is_accepted(character):
    text = f">a\nAC{character}\n>b\nACG\n>c\nACG\n"
    assert parse_alignment(text).sequences[0] == "AC" + character


def test_read_alignment_nexus_rna_reads_u():
    text = ("#NEXUS\nbegin data; dimensions ntax=3 nchar=4; format datatype=rna;\n"
            "matrix\na ACGU\nb ACGN\nc UUUU\n;\nend;\n")
    assert parse_alignment(text).sequences == ("ACGU", "ACGN", "UUUU")


@pytest.mark.parametrize("interleave", [False, True])
def test_read_alignment_nexus_unquoted_hyphenated_names(interleave):
    # Strict NEXUS wants 'Homo-sapiens' quoted; files often leave the quotes out.
    rows = [("Homo-sapiens", "ACGT--AC"), ("HIV-1", "ACGTTTAC"), ("Pan_troglodytes", "AC-TAAAC")]
    if interleave:
        matrix = "".join(f"{n} {q[:4]}\n" for n, q in rows) + "\n" + "".join(
            f"{n} {q[4:]}\n" for n, q in rows)
    else:  # each sequence over two lines, the second starting with a gap: not a name
        matrix = "".join(f"{n} {q[:2]}\n{q[2:]}\n" for n, q in rows)
    text = ("#NEXUS\nbegin data; dimensions ntax=3 nchar=8;\nformat datatype=dna gap=- "
            f"{'interleave' if interleave else ''};\nmatrix\n{matrix};\nend;\n")
    alignment = parse_alignment(text)
    assert alignment.taxa.names == ("Homo-sapiens", "HIV-1", "Pan_troglodytes")
    assert alignment.sequences == tuple(q for _, q in rows)


def test_read_alignment_nexus_bad_character_still_named_after_hyphen_retry():
    text = ("#NEXUS\nbegin data; dimensions ntax=2 nchar=4;\nformat datatype=dna;\nmatrix\n"
            "Homo-sapiens ACJT\nPan ACGT\n;\nend;\n")
    with pytest.raises(AlignmentError, match="J"):
        parse_alignment(text)


def test_a_dot_in_fasta_is_refused_with_what_to_write():
    # IQ-TREE reads '.' as a gap, NEXUS's MATCHCHAR as the first sequence's base
    with pytest.raises(AlignmentError, match=r"'\.' at site 2.*write '-' for a gap"):
        parse_alignment(">a\nACGT\n>b\nA.GT\n")


def test_read_alignment_fasta_blanks_inside_sequences_are_layout():
    assert parse_alignment(">a\nAC\tGT\n>b\nAC GT\n").sequences == ("ACGT", "ACGT")


def test_read_alignment_lowercase_equals_uppercase():
    upper = parse_alignment(FASTA)
    lower = parse_alignment(FASTA.replace(SEQUENCES[2], SEQUENCES[2].lower()))
    assert lower == upper


@pytest.mark.parametrize("n_taxa", [1, 2])
def test_read_alignment_fewer_than_three_taxa_is_accepted(n_taxa):
    text = "".join(f">t{i}\nACGT\n" for i in range(n_taxa))
    assert parse_alignment(text).n_taxa == n_taxa


def test_alignment_is_frozen():
    alignment = parse_alignment(FASTA)
    assert isinstance(alignment, Alignment)
    with pytest.raises(AttributeError):
        alignment.sequences = ()


def test_read_alignment_missing_file_raises(tmp_path):
    path = tmp_path / "absent.fasta"
    with pytest.raises(AlignmentError) as caught:
        read_alignment(path)
    assert_one_line_naming(caught.value, path, "cannot read")


def test_read_alignment_directory_raises(tmp_path):
    with pytest.raises(AlignmentError) as caught:
        read_alignment(tmp_path)
    assert_one_line_naming(caught.value, tmp_path, "cannot read")


# (file name, content, fragments the one-line message must hold)
BAD_FILES = {
    "empty": ("a.fasta", "", ["empty"]),
    "blank": ("a.fasta", " \n\t\n", ["empty"]),
    "not-utf8": ("a.fasta", b">a\nAC\xff\n", ["UTF-8", "0xff"]),
    "undetectable": ("a.txt", "hello\n", ["cannot tell the alignment format"]),
    "unknown-format-argument": ("a.fasta", FASTA, ["unknown alignment format"]),
    "fasta-text-before-header": ("a.fasta", "ACGT\n>a\nACGT\n", ["'>'"]),
    "fasta-header-without-name": ("a.fasta", ">a\nACGT\n>\nACGT\n", ["no taxon name"]),
    "fasta-unequal-lengths": ("a.fasta", ">a\nACGT\n>b\nACGTA\n>c\nACGT\n",
                              ["'b'", "5 sites", "expected 4"]),
    "fasta-duplicate-taxon": ("a.fasta", ">a\nACGT\n>b\nACGT\n>a x\nACGT\n",
                              ["'a'", "more than once"]),
    "fasta-bad-character": ("a.fasta", ">a\nACGT\n>b\nAC\n G.\n", ["'b'", "'.'", "site 4"]),
    "fasta-no-sites": ("a.fasta", ">a\n>b\n>c\n", ["no sites"]),
    "nexus-no-matrix": ("a.nex", "#NEXUS\nbegin trees;\nend;\n", ["NEXUS", "matrix"]),
    "nexus-malformed": ("a.nex", "#NEXUS\nbegin data;\nmatrix\na ACGT\n;\nend;\n", ["NEXUS"]),
    "nexus-unequal-lengths": ("a.nex", NEXUS_SEQUENTIAL.replace(PAN, PAN + "A"),
                              ["Pan", "17", "16"]),
    "nexus-duplicate-taxon": ("a.nex", NEXUS_SEQUENTIAL.replace("    Pan ", "    Homo_sapiens "),
                              ["'Homo_sapiens'", "more than once"]),
    "nexus-bad-character": ("a.nex", NEXUS_SEQUENTIAL.replace(PAN, PAN[:-1] + "Z"),
                            ["Pan", "Z"]),
    "nexus-protein": ("a.nex", NEXUS_SEQUENTIAL.replace("dna", "protein"),
                      ["protein", "DNA"]),
    "nexus-no-datatype": ("a.nex", NEXUS_SEQUENTIAL.replace("datatype=dna ", ""),
                          ["no DATATYPE"]),
    "nexus-row-shorter-than-nchar": ("a.nex", NEXUS_SEQUENTIAL.replace("nchar=16", "nchar=17"),
                                     ["taxon Homo_sapiens", "16 characters", "NCHAR=17"]),
    "nexus-one-row-short": ("a.nex", NEXUS_SEQUENTIAL.replace(PAN, PAN[:-1]),
                            ["taxon Pan", "15 characters", "NCHAR=16"]),
    "nexus-row-missing": ("a.nex", NEXUS_SEQUENTIAL.replace(f"    Pan {PAN}\n", ""),
                          ["2 taxa", "NTAX=3"]),
    "nexus-matrix-not-closed": ("a.nex", NEXUS_SEQUENTIAL.replace("  ;\nend;", "end;"),
                                ["MATRIX", "';'", "END"]),
    "nexus-non-ascii": ("a.nex", NEXUS_SEQUENTIAL.replace(PAN, PAN[:-1] + "\u00e9"), ["'\u00e9'"]),
    "phylip-bad-header": ("a.phy", "3 16 x\n" + PHYLIP_RELAXED.split("\n", 1)[1], ["PHYLIP"]),
    "phylip-unequal-lengths": ("a.phy", PHYLIP_RELAXED.replace("ACG?A-", "ACG?A"),
                               ["'Pan'", "15 sites", "expected 16"]),
    "phylip-wrong-header": ("a.phy", PHYLIP_RELAXED.replace("3 16", "3 17"), ["PHYLIP"]),
    "phylip-no-taxa": ("a.phy", "0 4\nACGT\n", ["declares 0 taxa"]),
    # Biopython stops at the declared count: the fourth taxon was once dropped silently.
    "phylip-more-taxa-than-declared": ("a.phy", PHYLIP_RELAXED + "Pongo ACGTACGTACGTACGT\n",
                                       ["more data", "3 taxa x 16 sites"]),
    "phylip-more-taxa-than-lines": ("a.phy", "1000000000 4\na ACGT\n", ["declares 1000000000"]),
    "nul-character": ("a.fasta", ">a\nAC\0T\n", ["NUL"]),
    "phylip-duplicate-taxon": ("a.phy", PHYLIP_RELAXED.replace("Pan ", "Homo_sapiens "),
                               ["'Homo_sapiens'", "more than once"]),
    "phylip-bad-character": ("a.phy", PHYLIP_RELAXED.replace("ACG?A-", "ACG?J-"),
                             ["'Pan'", "'J'", "site 15"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_read_alignment_bad_file_raises_one_line_naming_file(tmp_path, case):
    name, content, fragments = BAD_FILES[case]
    path = write(tmp_path, name, content)
    format = "protein" if case == "unknown-format-argument" else None
    with pytest.raises(AlignmentError) as caught:
        read_alignment(path, format=format)
    assert_one_line_naming(caught.value, path, *fragments)


def test_read_alignment_fasta_bad_character_gives_line_and_column(tmp_path):
    path = write(tmp_path, "a.fasta", ">a\nACGT\n>b\nAC\n G.\n")
    with pytest.raises(AlignmentError) as caught:
        read_alignment(path)
    assert (caught.value.line, caught.value.column) == (5, 3)
    assert str(caught.value).startswith(f"{path}:5:3: ")


def test_read_alignment_fasta_unequal_lengths_gives_header_line(tmp_path):
    path = write(tmp_path, "a.fasta", ">a\nACGT\n\n>b\nAC\nG\n")
    with pytest.raises(AlignmentError) as caught:
        read_alignment(path)
    assert caught.value.line == 4


@pytest.mark.parametrize("name, n_taxa, n_sites", [
    ("sim/sim27.fasta", 27, 1949),
    ("sim/sim100.fasta", 100, 10_000),
    ("ds/DS1.fasta", 27, 1949),
    ("marginal/DS1.nex", 27, 1949),
])
def test_read_alignment_shared_data_has_known_shape(shared, name, n_taxa, n_sites):
    alignment = read_alignment(shared(name))
    assert (alignment.n_taxa, alignment.n_sites) == (n_taxa, n_sites)


def test_read_alignment_ds1_nexus_equals_fasta(shared):
    nexus = read_alignment(shared("marginal/DS1.nex"))
    fasta = read_alignment(shared("ds/DS1.fasta"))
    assert (nexus.taxa, nexus.sequences) == (fasta.taxa, fasta.sequences)


@pytest.mark.parametrize("matrix", [
    "CA-TX ACGTACGT\nNY-GA ACGTACGA\nWA-DC ACGTACTT\nTN-KY ACGTTTTT\n",
    "CA-TX ACGT\nNY-GA ACGT\nWA-DC ACGT\nTN-KY ACGT\n\nCA-TX ACGT\nNY-GA ACGA\nWA-DC ACTT\n"
    "TN-KY TTTT\n",
])
def test_nexus_names_of_iupac_letters_and_a_hyphen_are_names(tmp_path, matrix):
    # Biopython splits an unquoted CA-TX at the '-'; IQ-TREE reads these files
    interleave = " interleave" if "\n\n" in matrix else ""
    text = ("#NEXUS\nbegin data;\n dimensions ntax=4 nchar=8;\n format datatype=dna "
            f"missing=? gap=-{interleave};\n matrix\n{matrix};\nend;\n")
    alignment = read_alignment(write(tmp_path, "a.nex", text))
    assert alignment.taxa.names == ("CA-TX", "NY-GA", "WA-DC", "TN-KY")
    assert alignment.sequences[3] == "ACGTTTTT"


def test_an_empty_first_sequence_is_named_itself(tmp_path):
    with pytest.raises(AlignmentError, match=":1: taxon 'Alpha' has no sequence"):
        read_alignment(write(tmp_path, "a.fasta", ">Alpha\n\n>Beta\nACGA\n>Gamma\nACGG\n"))


@pytest.mark.parametrize("text,fragment", [
    # an interleaved matrix has rows of blocks, not rows of NCHAR characters
    ("#NEXUS\nbegin data;\n dimensions ntax=3 nchar=9;\n format datatype=dna interleave;\n"
     " matrix\nAlpha ACGT\nBeta ACGA\nGamma ACGG\n\nAlpha ACGT\nBeta ACGA\nGamma ACGG\n;\nend;\n",
     "taxon Alpha has 8 characters over the interleaved blocks, not NCHAR=9"),
    # a taxon missing from the second block
    ("#NEXUS\nbegin data;\n dimensions ntax=3 nchar=8;\n format datatype=dna interleave;\n"
     " matrix\nAlpha ACGT\nBeta ACGA\nGamma ACGG\n\nAlpha ACGT\nBeta ACGA\n;\nend;\n",
     "taxon Gamma has 4 characters over the interleaved blocks, not NCHAR=8"),
    # a taxon too few (the rows fit NCHAR)
    ("#NEXUS\nbegin data;\n dimensions ntax=4 nchar=8;\n format datatype=dna interleave;\n"
     " matrix\nAlpha ACGT\nBeta ACGA\nGamma ACGG\n\nAlpha ACGT\nBeta ACGA\nGamma ACGG\n;\nend;\n",
     "the MATRIX has 3 taxa, not NTAX=4"),
    # the first block's matrix is checked against the first block's NCHAR
    ("#NEXUS\nbegin data;\n dimensions ntax=2 nchar=4;\n format datatype=dna;\n matrix\n"
     "Alpha ACG\nBeta ACGA\n;\nend;\nbegin data;\n dimensions ntax=2 nchar=2;\n"
     " format datatype=dna;\n matrix\nAlpha AC\nBeta AC\n;\nend;\n",
     "taxon Alpha has 3 characters, not NCHAR=4"),
])
def test_nexus_matrix_errors_name_the_right_row(tmp_path, text, fragment):
    with pytest.raises(AlignmentError, match=fragment):
        read_alignment(write(tmp_path, "a.nex", text))
