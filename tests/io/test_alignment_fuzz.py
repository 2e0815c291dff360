"""Property tests: whatever the input, the reader returns a valid alignment or
raises a :class:`~phylovi.errors.PhyloviError`, never anything else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phylovi.errors import PhyloviError
from phylovi.io.alignment import DNA_CHARACTERS, parse_alignment, read_alignment

FASTA = """>Homo_sapiens human
ACGTRYKM
SWACGTAC
>Pan
ACGTBDHVNXACG?A-
>Gorilla
ACGTACGTACGUACGT
"""

NEXUS = """#NEXUS
BEGIN TAXA; DIMENSIONS NTAX=3; TAXLABELS Homo Pan 'Gorilla g'; END;
BEGIN CHARACTERS;
    DIMENSIONS NCHAR=12;
    FORMAT DATATYPE=DNA MISSING=? GAP=- MATCHCHAR=. INTERLEAVE;
MATRIX
[comment] Homo  ACGTRY
Pan   A.G.BD
'Gorilla g' ACGT-?

Homo  KMSWAC
Pan   HVN?A-
'Gorilla g' ACGTAC
;
END;
"""

PHYLIP = """3 12
Homo_sapiens ACGTRY
Pan          ACGTBD
Gorilla      ACGT-?

KMSWAC
HVN?A-
ACGTAC
"""

PHYLIP_STRICT = """ 3 12
Homo_sapieACGTRYKMSW AC
Pan       ACGTBDHVN? A-
Gorilla   ACGT-?ACGT AC
"""

SEEDS = (FASTA, NEXUS, PHYLIP, PHYLIP_STRICT)
EXTENSIONS = ("", ".fasta", ".nex", ".phy", ".txt")
# Characters that matter to some parser, so mutations hit the interesting paths.
SYNTAX = DNA_CHARACTERS + "acgtnZ.>;#[]'\" \t\n\r=(){},0123456789\x00\u00e9"

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def check_reads_or_rejects(read, *args, **kwargs) -> None:
    """Call ``read``; it must return a valid alignment or raise a PhyloviError."""
    try:
        alignment = read(*args, **kwargs)
    except PhyloviError as error:
        assert "\n" not in str(error)
        return
    assert alignment.n_taxa >= 1 and alignment.n_sites >= 1
    assert len(alignment.sequences) == alignment.n_taxa
    assert {len(sequence) for sequence in alignment.sequences} == {alignment.n_sites}
    assert set("".join(alignment.sequences)) <= set(DNA_CHARACTERS)


@st.composite
def mutated_files(draw):
    """A valid alignment file with a few characters deleted, inserted or replaced,
    or cut short."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        character = draw(st.sampled_from(SYNTAX) | st.characters(codec="utf-8"))  # no surrogates
        if edit == "delete":
            text = text[:where] + text[where + 1:]
        elif edit == "insert":
            text = text[:where] + character + text[where:]
        elif edit == "replace":
            text = text[:where] + character + text[where + 1:]
        else:
            text = text[:where]
    return text


@FUZZ
@given(text=st.text(), extension=st.sampled_from(EXTENSIONS))
def test_parse_alignment_random_text_reads_or_raises_phylovi_error(text, extension):
    check_reads_or_rejects(parse_alignment, text, path="fuzz" + extension)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(SYNTAX)), extension=st.sampled_from(EXTENSIONS),
       format=st.sampled_from([None, "fasta", "nexus", "phylip"]))
def test_parse_alignment_random_syntax_reads_or_raises_phylovi_error(text, extension, format):
    check_reads_or_rejects(parse_alignment, text, format, path="fuzz" + extension)


@FUZZ
@given(text=mutated_files(), format=st.sampled_from([None, None, "fasta", "nexus", "phylip"]))
def test_parse_alignment_mutated_file_reads_or_raises_phylovi_error(text, format):
    check_reads_or_rejects(parse_alignment, text, format, path="fuzz")


@FUZZ
@given(data=st.binary(max_size=300) | mutated_files().map(str.encode),
       extension=st.sampled_from(EXTENSIONS))
def test_read_alignment_random_bytes_reads_or_raises_phylovi_error(tmp_path_factory, data,
                                                                   extension):
    path = tmp_path_factory.mktemp("fuzz") / ("input" + extension)
    path.write_bytes(data)
    check_reads_or_rejects(read_alignment, path)


def test_fuzz_seed_files_are_valid_alignments():
    for seed in SEEDS:
        assert parse_alignment(seed).n_sites in (12, 16)
