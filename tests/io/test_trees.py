"""Reading and writing tree files: Newick, NEXUS, MrBayes .t/.trprobs, BEAST .trees."""

from __future__ import annotations

import math
import os
import random
import re

import numpy as np
import pytest

from phylovi.errors import ConfigError, OutputError, PhyloviError, TaxonMismatchError, TreeFileError
from phylovi.io.trees import TreeSample, read_tree, read_trees, write_newick
from phylovi.trees import TaxonOrder, Topology, Tree
from phylovi.trees.bitset import mask_of, normalize_split

MRBAYES_T = """#NEXUS
[ID: 1234]
begin trees;
   translate
      1 Homo_sapiens,
      2 Pan_troglodytes,
      3 Gorilla_gorilla,
      4 Pongo_abelii,
      5 Hylobates_lar;
{trees}
end;
"""
TRPROBS = """#NEXUS

[This file contains the trees that were found during the MCMC search]

begin trees;
   translate
    1 Homo_sapiens,
    2 Pan_troglodytes,
    3 Gorilla_gorilla,
    4 Pongo_abelii;
   tree tree_1 [p = 0.600, P = 0.600] = [&W 0.600000] (1,(2,3),4);
   tree tree_2 [p = 0.300, P = 0.900] = [&W 0.300000] (1,(2,4),3);
   tree tree_3 [p = 0.100, P = 1.000] = [&W 0.100000] (1,2,(3,4));
end;
"""
BEAST = """#NEXUS

Begin taxa;
\tDimensions ntax=4;
\tTaxlabels
\t\tD_outgroup
\t\tC
\t\tB
\t\tA
\t\t;
End;
Begin trees;
\tTranslate
\t\t   1 A,
\t\t   2 B,
\t\t   3 C,
\t\t   4 D_outgroup
;
tree STATE_0 [&lnP=-1234.5,joint=-1300.25] = [&R] ((1[&rate=0.5,height_95%_HPD={0.1,0.2}]:0.1,\
2[&rate=1.0]:0.2)[&rate=0.9]:0.3,(3:0.15,4:0.25)[&posterior=1.0]:0.4)[&rate=1.0];
tree STATE_1000 [&lnP=-1200.5] = [&R] ((1:0.1,3:0.2):0.5,(2:0.1,4:0.1):0.25);
End;
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def split_of(taxa: TaxonOrder, *names: str) -> int:
    return normalize_split(mask_of(taxa.index(n) for n in names), taxa.full_mask)


def length_of(tree: Tree, *names: str) -> float:
    return float(tree.branch_lengths[tree.topology.edge_index(split_of(tree.taxa, *names))])


def mrbayes_t(n_trees: int) -> str:
    """A MrBayes-style .t file whose tree i has length i + 1 on taxon 1's edge."""
    lines = [f"   tree gen.{100 * i} = [&U] (1:{i + 1},((2:0.1,3:0.2):0.3,4:0.4):0.5,5:0.6);"
             for i in range(n_trees)]
    return MRBAYES_T.format(trees="\n".join(lines))


# --- formats ---

def test_read_trees_newick_one_tree_per_semicolon(tmp_path):
    path = write(tmp_path, "two.nwk", "((a:1,b:2):3,c:4,d:5);\n\n(a:1,\n(b:2,c:3):4,d:5);\n")
    sample = read_trees(path)
    assert isinstance(sample, TreeSample) and len(sample.trees) == 2
    assert sample.taxa == TaxonOrder("abcd") and sample.path == str(path)
    np.testing.assert_array_equal(sample.weights, [1.0, 1.0])
    assert sample.weights.dtype == np.float64
    assert length_of(sample.trees[0], "a", "b") == 3.0
    assert length_of(sample.trees[1], "b", "c") == 4.0


@pytest.mark.parametrize("name, text, format, n_trees", [
    ("newick_named.nex", "(a,b,(c,d));", None, 1),  # content beats extension
    ("nexus_named.nwk", "#NEXUS\nbegin trees; tree t = (a,b,(c,d)); end;", None, 1),
    ("rooted.nwk", "[&R] ((a,b),(c,d));", None, 1),  # extension when content is unclear
    ("rooted.tre", "[&R] ((a,b),(c,d));", None, 1),
    ("rooted.txt", "[&R] ((a,b),(c,d));", "newick", 1),  # format= overrides
    ("MrBayes.t", "\n  #nexus\nbegin trees; tree t = (a,b,(c,d)); end;", None, 1),
])
def test_read_trees_detects_format(tmp_path, name, text, format, n_trees):
    assert len(read_trees(write(tmp_path, name, text), format=format).trees) == n_trees


def test_read_trees_gzipped_reads_like_the_plain_file(tmp_path):
    import gzip

    text = "#NEXUS\r\nbegin trees;\r\n tree t1 = (a,b,(c,d));\r\n tree t2 = ((a,c),b,d);\r\nend;\r\n"
    path = tmp_path / "run.t.gz"
    path.write_bytes(gzip.compress(text.encode()))
    sample = read_trees(path)
    assert len(sample.trees) == 2 and sample.taxa == TaxonOrder("abcd")
    rooted = tmp_path / "rooted.tre.gz"  # the extension under .gz tells the format
    rooted.write_bytes(gzip.compress(b"[&R] ((a,b),(c,d));"))
    assert len(read_trees(rooted).trees) == 1


def test_read_trees_reads_paups_utree_statements(tmp_path):
    text = ("#NEXUS\nbegin trees;\n tree * PAUP_1 = [&U] ((a,b),c,d);\n"
            " utree PAUP_2 = ((a,c),b,d);\nUTREE PAUP_3 = ((a,d),b,c);\nend;\n")
    sample = read_trees(write(tmp_path, "paup.tre", text))
    assert len({tree.topology for tree in sample.trees}) == 3


def test_read_trees_unclear_format_is_an_error(tmp_path):
    with pytest.raises(TreeFileError, match="cannot tell the tree format"):
        read_trees(write(tmp_path, "trees.txt", "[&R] a tree: ((a,b),(c,d));"))
    # a comment before the tree does not hide it
    assert len(read_trees(write(tmp_path, "tree.txt", "[&R] ((a,b),(c,d));")).trees) == 1
    with pytest.raises(ConfigError, match="unknown tree format 'phylip'"):
        read_trees(write(tmp_path, "x.nwk", "(a,b,(c,d));"), format="phylip")


def test_read_trees_nexus_without_translate(tmp_path):
    text = "#NEXUS\nbegin trees;\n tree one = ((b:1,a:2):0.5,c:1,d:1);\n" \
           " tree two = [&R] ((a:1,c:2):0.5,(b:1,d:1):0.25);\nend;\n"
    sample = read_trees(write(tmp_path, "plain.nex", text))
    assert sample.taxa == TaxonOrder("bacd")  # first appearance in the first tree
    assert length_of(sample.trees[1], "a", "c") == 0.75  # root edges merged


def test_read_trees_nexus_translate_sets_taxon_order(tmp_path):
    sample = read_trees(write(tmp_path, "run.t", mrbayes_t(3)))
    assert sample.taxa.names == ("Homo_sapiens", "Pan_troglodytes", "Gorilla_gorilla",
                                 "Pongo_abelii", "Hylobates_lar")
    tree = sample.trees[0]
    assert length_of(tree, "Homo_sapiens") == 1.0
    assert length_of(tree, "Pan_troglodytes", "Gorilla_gorilla") == 0.3


def test_read_trees_nexus_taxa_block_sets_taxon_order(tmp_path):
    text = "#NEXUS\nbegin taxa; dimensions ntax=4; taxlabels d c b a; end;\n" \
           "begin trees; translate 1 a, 2 b, 3 c, 4 d; tree one = ((1:1,2:2):0.5,3:1,4:1);\nend;\n"
    sample = read_trees(write(tmp_path, "taxa.nex", text))
    assert sample.taxa == TaxonOrder("dcba")
    assert length_of(sample.trees[0], "b") == 2.0


def test_read_trees_mrbayes_t_with_burnin(tmp_path):
    path = write(tmp_path, "run1.t", mrbayes_t(10))
    assert len(read_trees(path).trees) == 10
    kept = read_trees(path, burnin=0.25)  # floor(2.5) = 2 trees dropped
    assert [length_of(t, "Homo_sapiens") for t in kept.trees] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert len(kept.weights) == 8
    assert len(read_trees(path, burnin=0.999).trees) == 1
    # The samples share one topology, and so one Topology object.
    assert all(t.topology is kept.trees[0].topology for t in kept.trees)


def test_burnin_counts_forgive_the_products_rounding():
    from phylovi.io.trees import burnin_count

    assert 0.57 * 100 < 57  # 56.99999999999999
    assert burnin_count(0.57, 100) == 57
    assert burnin_count(0.25, 10) == 2 and burnin_count(0.999, 5) == 4
    assert burnin_count(0.0, 7) == 0


@pytest.mark.parametrize("burnin", [1.0, -0.1, float("nan"), "0.1", True, None])
def test_read_trees_burnin_outside_unit_interval_is_config_error(tmp_path, burnin):
    with pytest.raises(ConfigError, match="burn-in"):
        read_trees(write(tmp_path, "run.t", mrbayes_t(2)), burnin=burnin)


def test_read_trees_trprobs_weights(tmp_path):
    sample = read_trees(write(tmp_path, "DS.trprobs", TRPROBS))
    np.testing.assert_allclose(sample.weights, [0.6, 0.3, 0.1])
    assert len({t.topology for t in sample.trees}) == 3
    assert all(np.isnan(t.branch_lengths).all() for t in sample.trees)


@pytest.mark.parametrize("length", ["-0.1", "NaN", "1e400"])
def test_topology_readers_ignore_lengths_that_tree_readers_refuse(length):
    # a neighbour-joining tree's negative lengths are no reason to refuse its topology
    newick = f"((a:0,b:{length}):0.1,c:0.1,d:0.1);"
    with pytest.raises(TreeFileError, match="branch length"):
        read_tree(newick)
    tree = read_tree(newick, lengths=False)
    assert tree.topology == read_tree("((a,b),c,d);").topology
    assert np.isnan(tree.branch_lengths).all()


def test_read_trees_refuses_a_weighted_file_with_a_tree_left_unweighted(tmp_path):
    # DendroPy gives such a tree weight 1, which would outweigh the others
    text = TRPROBS.replace("[&W 0.300000] ", "")
    with pytest.raises(TreeFileError, match="2 of the 3 trees carry a"):
        read_trees(write(tmp_path, "DS.trprobs", text))


def test_read_trees_refuses_burnin_on_weighted_trees(tmp_path):
    # .trprobs lists topologies by decreasing probability: a burn-in would drop the best
    with pytest.raises(TreeFileError, match="carry weights"):
        read_trees(write(tmp_path, "DS.trprobs", TRPROBS), burnin=0.25)


@pytest.mark.parametrize("weight, message", [
    ("0.5x", "Invalid tree weight"), ("-0.25", "weight -0.25"), ("inf", "weight inf"),
])
def test_read_trees_trprobs_bad_weight(tmp_path, weight, message):
    text = TRPROBS.replace("[&W 0.300000]", f"[&W {weight}]")
    with pytest.raises(TreeFileError, match=re.escape(message)) as caught:
        read_trees(write(tmp_path, "bad.trprobs", text))
    assert "bad.trprobs:" in str(caught.value)


def test_read_trees_beast_rooted_annotated(tmp_path):
    sample = read_trees(write(tmp_path, "beast.trees", BEAST))
    assert sample.taxa == TaxonOrder(["D_outgroup", "C", "B", "A"])  # TAXA block order
    first, second = sample.trees
    assert length_of(first, "A") == 0.1 and length_of(first, "B") == 0.2
    assert length_of(first, "A", "B") == pytest.approx(0.7)  # 0.3 + 0.4 at the root
    assert length_of(second, "A", "C") == 0.75
    assert first.topology != second.topology


# --- rooting, lengths, taxa ---

def test_read_tree_unroots_a_binary_root():
    tree = read_tree("(a:1,(b:1,(c:1,d:2):2):3);")
    assert tree.topology == read_tree("(a,b,(c,d));").topology
    assert length_of(tree, "a") == 4.0  # a's edge and its sibling's edge become one
    assert length_of(tree, "c", "d") == 2.0
    assert sorted(tree.branch_lengths) == [1.0, 1.0, 2.0, 2.0, 4.0]


def test_read_tree_missing_lengths_are_nan():
    tree = read_tree("((a:1,b),(c,d:4):2);")
    assert length_of(tree, "a") == 1.0 and length_of(tree, "d") == 4.0
    assert math.isnan(length_of(tree, "b")) and math.isnan(length_of(tree, "c"))
    assert math.isnan(length_of(tree, "a", "b"))  # NaN + 2.0: part of the edge is unknown


def test_read_trees_given_taxa_set_bit_order(tmp_path):
    taxa = TaxonOrder(["d", "c", "b", "a"])  # bit 0 is d, bit 3 is a
    sample = read_trees(write(tmp_path, "t.nwk", "((a:1,b:2):3,c:4,d:5);"), taxa=taxa)
    assert sample.taxa is taxa
    topology = sample.trees[0].topology
    assert topology.splits == {0b1110, 0b0010, 0b0100, 0b1000, 0b1100}
    assert topology.edges[0] == 0b1110  # edge 0 is above taxon 0, d
    assert sample.trees[0].branch_lengths[0] == 5.0
    assert sample.trees[0].branch_lengths[topology.edge_index(0b1100)] == 3.0


def test_read_trees_taxon_mismatch_names_both_sides_and_file(tmp_path):
    path = write(tmp_path, "t.nwk", "((a,b),c,(d,x));")
    with pytest.raises(TaxonMismatchError) as caught:
        read_trees(path, taxa=TaxonOrder("abcde"))
    error = caught.value
    assert error.only_left == ("x",) and error.only_right == ("e",)
    assert str(error).startswith(f"{path}: ")
    assert "'x' in tree 1 is not in the expected taxa" in str(error)
    assert "'e' in the expected taxa is not in tree 1" in str(error)


def test_read_trees_later_tree_with_other_taxa(tmp_path):
    path = write(tmp_path, "t.nwk", "(a,b,(c,d));\n(a,b,(c,e));\n")
    with pytest.raises(TaxonMismatchError, match="'e' in tree 2 is not in tree 1"):
        read_trees(path)


def test_read_trees_keeps_underscores_and_case(tmp_path):
    sample = read_trees(write(tmp_path, "t.nwk", "(Homo_sapiens,a,(A,'Pan troglodytes'));"))
    assert sample.taxa.names == ("Homo_sapiens", "a", "A", "Pan troglodytes")


@pytest.mark.parametrize("text, message", [
    ("((a,b),c,(d,e));\n((a,b,c),d,e);", "tree 2 is not binary: the node above the clade of "
                                     "'a', 'b', 'c' has 3 children"),
    ("(a,b,c,d,e);", "tree 1 is not binary: the root has 5 children"),
    ("((a,b),(c,(d)),e);", "tree 1 is not binary: the node above taxon 'd' has 1 child"),
    ("((((a,b),(d,e)),c));", "tree 1 is not binary: the root has 1 child"),
])
def test_read_trees_rejects_non_binary_naming_the_tree(tmp_path, text, message):
    with pytest.raises(TreeFileError, match=re.escape(message)):
        read_trees(write(tmp_path, "t.nwk", text), taxa=TaxonOrder("abcde"))


@pytest.mark.parametrize("text, message", [
    ("((a:-0.5,b:1):1,c:1,d:1);", "tree 1 has branch length -0.5 above taxon 'a'"),
    ("(a,b,(c,d));(a,b,(c,d):-1e-3);", "tree 2 has branch length -0.001 above the clade "
                                      "of 'c', 'd'"),
    ("((a:inf,b:1):1,c:1,d:1);", "branch length inf above taxon 'a'"),
])
def test_read_trees_rejects_bad_branch_lengths(tmp_path, text, message):
    with pytest.raises(TreeFileError, match=re.escape(message)):
        read_trees(write(tmp_path, "t.nwk", text))


# --- failures: each one PhyloviError, one line, naming the file ---

@pytest.mark.parametrize("name, content, message", [
    ("empty.nwk", "", "the tree file is empty"),
    ("blank.txt", "  \n\n", "the tree file is empty"),
    ("comment.nwk", "[only a comment]", "malformed newick"),
    ("open.nwk", "((a,b),(c,d);", "malformed newick"),
    ("length.nwk", "((a:x,b),c,d);", "Invalid edge length"),
    ("dup.nwk", "((a,b),(a,c),d);", "taxon 'a' appears more than once"),
    ("noname.nwk", "((a,b),,(c,d));", "tree 1 has a tip without a taxon name"),
    ("open_comment.nwk", "((a,b),[c,d);", "malformed newick"),
    ("open_quote.nwk", "((a,b),'c,d);", "malformed newick"),
    ("two.nwk", "(a,b);", "at least 3 taxa"),
    ("trailing.nwk", "((a,b),c,d); garbage\n", "text after the last tree's ';'"),
    ("notrees.nex", "#NEXUS\nbegin taxa; dimensions ntax=2; taxlabels a b; end;\n", "no trees"),
    ("truncated.nex", "#NEXUS\n\nBegin taxa;\n\tDimen", "unexpected end of file"),
    ("truncated.t", MRBAYES_T[:120], "holds no trees"),
    ("badtree.t", MRBAYES_T.format(trees="tree t = (1,2,(3,4);"), "malformed nexus"),
    ("unknown.t", MRBAYES_T.format(trees="tree t = ((1,2),(3,9),(4,5));"),
     "taxon '9' in tree 1 is not in the NEXUS taxa"),
    ("fewer.t", MRBAYES_T.format(trees="tree t = ((1,2),3,4);"),
     "taxon 'Hylobates_lar' in the NEXUS taxa is not in tree 1"),
    ("nexdup.nex", "#NEXUS\nbegin trees; tree t = ((a,b),(a,c),d); end;", "more than once"),
])
def test_read_trees_failures_are_one_line_phylovi_errors(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(PhyloviError, match=re.escape(message)) as caught:
        read_trees(path)
    text = str(caught.value)
    assert text.startswith(str(path) + ":") and "\n" not in text


def test_read_trees_missing_file_or_folder_or_binary(tmp_path):
    with pytest.raises(TreeFileError, match="no such tree file"):
        read_trees(tmp_path / "absent.nwk")
    with pytest.raises(TreeFileError, match="cannot read"):
        read_trees(tmp_path)
    binary = tmp_path / "trees.nwk"
    binary.write_bytes(b"(a,b,(c,\xff\xfed));")
    with pytest.raises(TreeFileError, match="not UTF-8"):
        read_trees(binary)


def test_read_trees_error_carries_line_number(tmp_path):
    path = write(tmp_path, "t.nex", "#NEXUS\nbegin trees;\n tree a = (a,b,(c,d));\n"
                                    " tree b = (a,b,(c,d);\nend;\n")
    with pytest.raises(TreeFileError) as caught:
        read_trees(path)
    # DendroPy notices the open parenthesis at the next line's "end".
    assert caught.value.line == 5 and str(caught.value).startswith(f"{path}:5:")
    assert "reading tree 2" in str(caught.value)


# --- read_tree ---

def test_read_tree_from_string_or_file(tmp_path):
    from_string = read_tree("((a:1,b:2):3,c:4,d:5);")
    from_file = read_tree(write(tmp_path, "one.nwk", "((a:1,b:2):3,c:4,d:5);"))
    assert from_string.topology == from_file.topology
    np.testing.assert_array_equal(from_string.branch_lengths, from_file.branch_lengths)
    assert read_tree(str(tmp_path / "one.nwk"), taxa=TaxonOrder("dcba")).taxa.names == \
        ("d", "c", "b", "a")


def test_read_tree_needs_exactly_one_tree(tmp_path):
    with pytest.raises(TreeFileError, match="expected exactly one tree, found 2"):
        read_tree(write(tmp_path, "two.nwk", "(a,b,(c,d));(a,c,(b,d));"))
    with pytest.raises(TreeFileError, match="<newick string>: expected exactly one tree"):
        read_tree("(a,b,(c,d));(a,c,(b,d));")
    with pytest.raises(TreeFileError, match="no such tree file"):
        read_tree("tree.nwk")


# --- writing ---

def test_write_newick_round_trips_trees_and_topologies(tmp_path):
    sample = read_trees(write(tmp_path, "beast.trees", BEAST))
    out = tmp_path / "out.nwk"
    write_newick(out, [*sample.trees, sample.trees[1].topology])
    assert len(out.read_text().splitlines()) == 3
    back = read_trees(out, taxa=sample.taxa)
    for original, copy in zip(sample.trees, back.trees):
        assert copy.topology == original.topology
        np.testing.assert_allclose(copy.branch_lengths, original.branch_lengths, rtol=1e-9)
    assert back.trees[2].topology == sample.trees[1].topology
    assert np.isnan(back.trees[2].branch_lengths).all()
    assert sorted(os.listdir(tmp_path)) == ["beast.trees", "out.nwk"]  # no temporary left


def test_write_newick_writes_unknown_lengths_as_topology(tmp_path):
    out = tmp_path / "out.nwk"
    write_newick(out, read_trees(write(tmp_path, "DS.trprobs", TRPROBS)).trees)
    assert "nan" not in out.read_text() and ":" not in out.read_text()


def test_write_newick_failures(tmp_path):
    tree = read_tree("(a,b,(c,d));")
    with pytest.raises(OutputError, match="cannot write"):
        write_newick(tmp_path / "absent" / "out.nwk", [tree])
    with pytest.raises(ConfigError, match="Tree or Topology objects, got str"):
        write_newick(tmp_path / "out.nwk", ["(a,b,(c,d));"])
    with pytest.raises(ConfigError, match="a list of trees"):
        write_newick(tmp_path / "out.nwk", tree)
    assert not (tmp_path / "out.nwk").exists()


# --- random trees, written with every rooting and child order ---

def random_tree(n_taxa: int, rng: random.Random):
    """A random unrooted binary tree: adjacency, and a length per edge (keyed by node pair)."""
    adjacency = {0: [n_taxa], 1: [n_taxa], 2: [n_taxa], n_taxa: [0, 1, 2]}
    for tip in range(3, n_taxa):
        u = rng.choice([node for node in adjacency if node != tip])
        v = rng.choice(adjacency[u])
        middle = len(adjacency) + 1 + n_taxa
        adjacency[u][adjacency[u].index(v)] = middle
        adjacency[v][adjacency[v].index(u)] = middle
        adjacency[middle] = [u, v, tip]
        adjacency[tip] = [middle]
    lengths = {frozenset((u, v)): round(rng.expovariate(10.0), 6) + 1e-6
               for u in adjacency for v in adjacency[u]}
    return adjacency, lengths


def newick_below(adjacency, lengths, node, parent, rng, length=None) -> str:
    kids = [k for k in adjacency[node] if k != parent]
    rng.shuffle(kids)
    text = f"t{node}" if not kids else \
        "(" + ",".join(newick_below(adjacency, lengths, k, node, rng) for k in kids) + ")"
    if parent is not None:
        text += f":{lengths[frozenset((node, parent))] if length is None else length!r}"
    return text


def all_newicks(adjacency, lengths, n_taxa, rng):
    """Newick strings rooted at every inner node and in the middle of every edge."""
    for node in adjacency:
        if node >= n_taxa:
            yield newick_below(adjacency, lengths, node, None, rng) + ";"
    for u in adjacency:
        for v in adjacency[u]:
            if u < v:
                part = lengths[frozenset((u, v))] * rng.random()
                left = newick_below(adjacency, lengths, u, v, rng, part)
                right = newick_below(adjacency, lengths, v, u, rng,
                                     lengths[frozenset((u, v))] - part)
                yield f"[&R] ({left},{right});"


def split_lengths(adjacency, lengths, n_taxa, taxa: TaxonOrder) -> dict[int, float]:
    def below(node, parent):
        kids = [k for k in adjacency[node] if k != parent]
        return 1 << taxa.index(f"t{node}") if not kids else sum(below(k, node) for k in kids)

    return {normalize_split(below(v, u), taxa.full_mask): lengths[frozenset((u, v))]
            for u in adjacency for v in adjacency[u]}


@pytest.mark.parametrize("n_taxa", [3, 4, 6, 11])
def test_reading_any_rooting_and_rotation_gives_one_topology(tmp_path, n_taxa):
    rng = random.Random(n_taxa)
    taxa = TaxonOrder(f"t{i}" for i in rng.sample(range(n_taxa), n_taxa))
    for _ in range(3):
        adjacency, lengths = random_tree(n_taxa, rng)
        newicks = list(all_newicks(adjacency, lengths, n_taxa, rng))
        assert len(newicks) == (n_taxa - 2) + (2 * n_taxa - 3)
        path = write(tmp_path, "rerooted.nwk", "\n".join(newicks))
        sample = read_trees(path, taxa=taxa)
        expected = split_lengths(adjacency, lengths, n_taxa, taxa)
        topology = Topology(taxa, expected)
        for tree in sample.trees:
            assert tree.topology == topology and hash(tree.topology) == hash(topology)
            for split, length in expected.items():  # lengths follow their splits
                assert tree.branch_lengths[tree.topology.edge_index(split)] == \
                    pytest.approx(length, rel=1e-12)


# --- the shared benchmark data ---

def tree_lines(path) -> int:
    lines = path.read_text().splitlines()
    return sum(1 for line in lines if line.lstrip().lower().startswith("tree "))


def fasta_names(path) -> list[str]:
    return [line[1:].split()[0] for line in path.read_text().splitlines() if line.startswith(">")]


def test_shared_short_run_trprobs_ds1(shared):
    path = shared("ds/short_runs/DS1/rep_1/DS1.trprobs")
    sample = read_trees(path)
    assert len(sample.taxa) == 27 and sample.taxa[0] == "Alligator_mississippiensis"
    assert set(sample.taxa) == set(fasta_names(shared("ds/DS1.fasta")))
    n = tree_lines(path)
    assert len(sample.trees) == n == 1278
    assert len({t.topology for t in sample.trees}) == n  # one line per topology
    assert all(t.topology.n_edges == 51 for t in sample.trees)
    # Weights are printed to 6 decimals, so their sum is 1 up to n rounding errors.
    assert abs(sample.weights.sum() - 1) <= n * 5e-7
    assert np.all(np.diff(sample.weights) <= 0)  # sorted by probability


def test_shared_short_run_weights_sum_to_one_ds2(shared):
    sample = read_trees(shared("ds/short_runs/DS2/rep_1/DS2.trprobs"))
    assert len(sample.trees) == 7 and len(sample.taxa) == 29
    assert abs(sample.weights.sum() - 1) <= 1e-6


@pytest.mark.parametrize("name, n_taxa", [("DS1", 27), ("DS2", 29), ("DS3", 36)])
def test_shared_golden_run_topologies_are_distinct(shared, name, n_taxa):
    path = shared(f"ds/ground_truth/golden_run/{name}/rep_1/{name}.trprobs")
    alignment_order = TaxonOrder(fasta_names(shared(f"ds/{name}.fasta")))
    sample = read_trees(path, taxa=alignment_order)
    assert sample.taxa is alignment_order and len(sample.taxa) == n_taxa
    n = tree_lines(path)
    assert len(sample.trees) == n and len({t.topology for t in sample.trees}) == n
    assert abs(sample.weights.sum() - 1) <= n * 5e-7


def test_shared_golden_run_burnin(shared):
    path = shared("ds/ground_truth/golden_run/DS2/rep_1/DS2.trprobs")
    assert len(read_trees(path).trees) == 26
    # ranked by probability, not a chain: a burn-in would drop the most probable topologies
    with pytest.raises(TreeFileError, match="carry weights"):
        read_trees(path, burnin=0.5)


@pytest.mark.parametrize("name, n_taxa", [("sim27", 27), ("sim100", 100)])
def test_shared_simulated_tree(shared, name, n_taxa):
    path = shared(f"sim/{name}.nwk")
    tree = read_tree(path)
    assert len(tree.taxa) == n_taxa and tree.topology.n_edges == 2 * n_taxa - 3
    in_text = sum(float(x) for x in re.findall(r":([-+0-9.eE]+)", path.read_text()))
    # The file may be rooted: its two root edges become one, keeping the total.
    assert tree.branch_lengths.sum() == pytest.approx(in_text, rel=1e-12)
    assert np.all(tree.branch_lengths >= 0)


@pytest.mark.parametrize("text,fragment", [
    ("((a:0.1,b:0.2):0.05,c:0.3,d:0.1", "ends before its closing ';'"),
    ("((a:nan,b:0.2):0.05,c:0.3,d:0.1);", "branch length nan"),
])
def test_read_tree_messages_say_what_is_wrong(tmp_path, text, fragment):
    with pytest.raises(TreeFileError, match=fragment):
        read_tree(write(tmp_path, "tree.nwk", text))


def test_a_ladder_deeper_than_pythons_recursion_limit_is_read(tmp_path):
    # DendroPy recurses once per level; 990 levels once hit Python's default limit of 1000
    import sys

    n = 2500
    text = "t0:0.5"
    for i in range(1, n - 1):
        text = f"({text},t{i}:{i / 1000}):0.25"
    path = write(tmp_path, "ladder.nwk", f"({text},t{n - 1}:0.75);")
    limit = sys.getrecursionlimit()
    tree = read_tree(path)
    assert sys.getrecursionlimit() == limit
    assert tree.topology.n_taxa == n
    lengths = dict(zip(tree.topology.edges, tree.branch_lengths))
    assert lengths[1 << tree.topology.taxa.index("t1234")] == pytest.approx(1.234)


@pytest.mark.parametrize("tail", ["\n[saved by PAUP; score 123]\n", "[a [nested] comment]"])
def test_a_comment_after_the_last_tree_may_hold_semicolons_and_brackets(tmp_path, tail):
    tree = read_tree(write(tmp_path, "t.nwk", "((a:0.1,b:0.2):0.05,'c;d':0.3,e:0.1);" + tail))
    assert tree.topology.taxa.names == ("a", "b", "c;d", "e")
    with pytest.raises(TreeFileError, match="text after the last tree's ';': 'oops'"):
        read_tree(write(tmp_path, "u.nwk", "((a,b),c,d);" + tail + " oops"))


def test_underscores_in_a_tree_match_spaces_in_the_taxa():
    # Newick writes a name's space as '_': IQ-TREE's tree of taxa named "Alpha sp" says Alpha_sp
    taxa = TaxonOrder(["Alpha sp", "Beta sp", "Gamma", "Delta_x"])
    tree = read_tree("((Alpha_sp:0.1,'Beta sp':0.2):0.05,Gamma:0.3,Delta_x:0.4);", taxa=taxa)
    assert tree.topology.taxa == taxa
    assert tree.branch_lengths[tree.topology.edge_index(1)] == pytest.approx(0.1)
    with pytest.raises(TaxonMismatchError, match="taxon 'Delta_x' in the alignment is not in"):
        read_tree("((Alpha_sp,Beta_sp),Gamma,Delta_y);", taxa=taxa, taxa_source="the alignment")
