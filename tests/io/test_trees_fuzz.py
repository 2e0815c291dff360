"""Property tests: whatever a tree file holds, read_trees fails only with PhyloviError.

DendroPy raises many exception types (and once looped forever on a NEXUS file
cut inside its TAXA block); the reader must turn each into a one-line
phylovi error.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from phylovi.errors import PhyloviError
from phylovi.io.trees import read_tree, read_trees

NEWICK = "((a:1,b:2.5e-1):0.3,'c d':4,[comment](e:0.5,f):1e-3);\n[&R] ((a,b),((c d,e),f));\n"
MRBAYES_T = """#NEXUS
[ID: 42]
begin trees;
   translate
      1 a,
      2 b,
      3 c,
      4 d;
   tree gen.0 = [&U] ((1:0.1,2:0.2):0.3,3:0.4,4:0.5);
   tree gen.100 = [&U] ((1:0.1,3:0.2):0.3,2:0.4,4:0.5);
end;
"""
TRPROBS = """#NEXUS
begin trees;
   translate 1 a, 2 b, 3 c, 4 d;
   tree tree_1 [p = 0.750, P = 0.750] = [&W 0.75] (1,(2,3),4);
   tree tree_2 [p = 0.250, P = 1.000] = [&W 0.25] (1,2,(3,4));
end;
"""
BEAST = """#NEXUS
Begin taxa;
	Dimensions ntax=4;
	Taxlabels a b c d ;
End;
Begin trees;
	Translate 1 a, 2 b, 3 c, 4 d;
tree STATE_0 [&lnP=-12.5] = [&R] ((1[&rate=0.5,hpd={0.1,0.2}]:0.1,2:0.2)[&rate=1]:0.3,(3:0.1,4:0.1):0.4);
End;
"""
VALID = [NEWICK, MRBAYES_T, TRPROBS, BEAST]
# Characters that mean something to a Newick or NEXUS parser, and a few that do not.
ALPHABET = "()[],:;'\"&=#_-+./\\{} \t\nabcdRUWe0123456789é\x00"
EXTENSIONS = [".nwk", ".nex", ".t", ".trprobs", ".trees", ".txt"]
FUZZ = settings(max_examples=200, deadline=None)


@st.composite
def mutated(draw) -> str:
    """A valid file with a few characters deleted, inserted or replaced, or cut short."""
    chars = list(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, max(len(chars) - 1, 0)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        if action == "insert" or not chars:
            chars.insert(i, draw(st.sampled_from(ALPHABET)))
        elif action == "delete":
            del chars[i]
        elif action == "replace":
            chars[i] = draw(st.sampled_from(ALPHABET))
        else:
            del chars[i:]
    return "".join(chars)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def read_or_fail_cleanly(folder, content: str | bytes, extension: str, **kwargs) -> None:
    path = folder / ("trees" + extension)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    try:
        sample = read_trees(path, **kwargs)
    except PhyloviError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    # What is read is whole: every tree binary over one taxon set, one weight each.
    assert len(sample.trees) == len(sample.weights) >= 1
    for tree in sample.trees:
        assert tree.taxa == sample.taxa
        assert tree.topology.n_edges == 2 * len(sample.taxa) - 3
        assert all(math.isnan(x) or x >= 0 for x in tree.branch_lengths)


@FUZZ
@given(text=mutated(), extension=st.sampled_from(EXTENSIONS))
@example(text=BEAST[:40], extension=".trees")  # once hung DendroPy (TAXA block cut short)
@example(text=MRBAYES_T.replace("0.4", "-0.4"), extension=".t")
@example(text=TRPROBS.replace("0.25]", "x]"), extension=".trprobs")
def test_mutated_files_fail_only_with_phylovi_errors(folder, text, extension):
    read_or_fail_cleanly(folder, text, extension)


@FUZZ
@given(text=st.text(alphabet=ALPHABET, max_size=80), extension=st.sampled_from(EXTENSIONS),
       nexus=st.booleans())
def test_random_text_fails_only_with_phylovi_errors(folder, text, extension, nexus):
    prefix = "#NEXUS\nbegin trees;\n tree t = " if nexus else ""
    read_or_fail_cleanly(folder, prefix + text, extension)


@settings(max_examples=50, deadline=None)
@given(content=st.binary(max_size=60), extension=st.sampled_from(EXTENSIONS))
def test_random_bytes_fail_only_with_phylovi_errors(folder, content, extension):
    read_or_fail_cleanly(folder, content, extension)


@settings(max_examples=50, deadline=None)
@given(text=mutated(), burnin=st.floats(allow_nan=True, allow_infinity=True),
       format=st.sampled_from([None, "newick", "nexus", "fasta"]))
def test_any_options_fail_only_with_phylovi_errors(folder, text, burnin, format):
    read_or_fail_cleanly(folder, text, ".t", burnin=burnin, format=format)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=ALPHABET, max_size=60))
def test_newick_strings_fail_only_with_phylovi_errors(text):
    try:
        read_tree("(" + text)
    except PhyloviError as error:
        assert "\n" not in str(error)
