"""The trees layer: bitsets, taxon orders, topologies and their identity."""

from __future__ import annotations

import random

import numpy as np
import pytest

from phylovi.errors import ConfigError, TaxonMismatchError, TreeFileError
from phylovi.io.trees import read_rooted_topology, read_tree
from phylovi.trees import RootedTopology, TaxonOrder, Topology, TopologyBatch, Tree
from phylovi.trees.bitset import bits_of, is_trivial_split, lowest_bit, mask_of, normalize_split


# --- random unrooted trees, written out with any rooting and child order ---

def random_adjacency(n_taxa: int, rng: random.Random) -> dict[int, list[int]]:
    """A random unrooted binary tree by stepwise addition: tips 0..n-1, inner nodes after."""
    adjacency = {0: [n_taxa], 1: [n_taxa], 2: [n_taxa], n_taxa: [0, 1, 2]}
    next_node = n_taxa + 1
    for tip in range(3, n_taxa):
        u = rng.choice([node for node in adjacency if node != tip])
        v = rng.choice(adjacency[u])
        middle, next_node = next_node, next_node + 1
        adjacency[u][adjacency[u].index(v)] = middle
        adjacency[v][adjacency[v].index(u)] = middle
        adjacency[middle] = [u, v, tip]
        adjacency[tip] = [middle]
    return adjacency


def nested(adjacency, node: int, parent: int | None, rng: random.Random):
    """Nested tuples of tip indices below ``node``, children in random order."""
    kids = [k for k in adjacency[node] if k != parent]
    if not kids:
        return node
    rng.shuffle(kids)
    return tuple(nested(adjacency, k, node, rng) for k in kids)


def rootings(adjacency, n_taxa: int, rng: random.Random):
    """The tree as nested tuples, rooted at every inner node and on every edge."""
    for node in adjacency:
        if node >= n_taxa:
            yield nested(adjacency, node, None, rng)
    for u in adjacency:
        for v in adjacency[u]:
            if u < v:
                yield (nested(adjacency, u, v, rng), nested(adjacency, v, u, rng))


def expected_splits(adjacency, n_taxa: int) -> set[int]:
    """Every edge's split, computed directly from the adjacency."""
    def below(node, parent):
        kids = [k for k in adjacency[node] if k != parent]
        return 1 << node if not kids else sum(below(k, node) for k in kids)

    full = (1 << n_taxa) - 1
    return {normalize_split(below(v, u), full) for u in adjacency for v in adjacency[u]}


# --- bitsets ---

def test_mask_of_and_bits_of_round_trip():
    assert mask_of([0, 3, 5]) == 0b101001
    assert bits_of(0b101001) == [0, 3, 5]
    assert bits_of(0) == [] and mask_of([]) == 0
    big = [0, 64, 130]  # beyond one machine word
    assert bits_of(mask_of(big)) == big


def test_lowest_bit_finds_smallest_index():
    assert lowest_bit(0b1000) == 3
    assert lowest_bit(0b1010) == 1
    assert lowest_bit(1 << 100 | 1 << 70) == 70


def test_normalize_split_picks_side_without_taxon_0():
    full = 0b11111
    assert normalize_split(0b00110, full) == 0b00110
    assert normalize_split(0b11001, full) == 0b00110
    assert normalize_split(0b00001, full) == 0b11110


def test_is_trivial_split_only_for_tip_edges():
    assert is_trivial_split(0b00100, 5)
    assert is_trivial_split(0b11110, 5)
    assert not is_trivial_split(0b00110, 5)


# --- taxon orders ---

def test_taxon_order_rejects_duplicates():
    with pytest.raises(TaxonMismatchError, match="'b' appears more than once"):
        TaxonOrder(["a", "b", "c", "b"])


def test_taxon_order_index_of_unknown_taxon_raises():
    taxa = TaxonOrder(["a", "b"])
    assert taxa.index("b") == 1 and "a" in taxa and "z" not in taxa
    assert taxa.full_mask == 0b11
    with pytest.raises(TaxonMismatchError, match="'z'"):
        taxa.index("z")


def test_require_same_set_passes_for_another_order():
    TaxonOrder("abc").require_same_set(TaxonOrder("cab"))
    assert TaxonOrder("abc") != TaxonOrder("cab")


def test_require_same_set_names_taxa_on_each_side():
    left, right = TaxonOrder(["a", "b", "x"]), TaxonOrder(["a", "b", "y", "z"])
    with pytest.raises(TaxonMismatchError) as caught:
        left.require_same_set(right, "the alignment", "tree.nwk")
    error = caught.value
    assert error.only_left == ("x",) and error.only_right == ("y", "z")
    assert str(error) == ("taxa 'y', 'z' in tree.nwk are not in the alignment; "
                          "taxon 'x' in the alignment is not in tree.nwk")


def test_require_same_set_shortens_long_lists():
    with pytest.raises(TaxonMismatchError, match=r"'t0', 't1', 't2', 't3', 't4' and 3 more"):
        TaxonOrder(["a"]).require_same_set(TaxonOrder(["a"] + [f"t{i}" for i in range(8)]))


# --- topology identity ---

@pytest.mark.parametrize("n_taxa", [3, 4, 5, 8, 13])
def test_topology_unchanged_under_rerooting_and_rotation(n_taxa):
    rng = random.Random(n_taxa)
    taxa = TaxonOrder(f"t{i}" for i in range(n_taxa))
    for _ in range(5):
        adjacency = random_adjacency(n_taxa, rng)
        topologies = [Topology.from_nested(taxa, n) for n in rootings(adjacency, n_taxa, rng)]
        first = topologies[0]
        assert first.splits == expected_splits(adjacency, n_taxa)
        for other in topologies[1:]:
            assert other == first and hash(other) == hash(first)
            # Edge numbering depends on the topology only, never on the input.
            assert other.edges == first.edges
            np.testing.assert_array_equal(other.arrays.parent, first.arrays.parent)


def test_topologies_with_other_splits_differ():
    taxa = TaxonOrder("abcde")
    one = Topology.from_nested(taxa, (("a", "b"), "c", ("d", "e")))
    two = Topology.from_nested(taxa, (("a", "c"), "b", ("d", "e")))
    assert one != two and len({one, two}) == 2
    other_order = Topology.from_nested(TaxonOrder("edcba"), (("a", "b"), "c", ("d", "e")))
    assert other_order != one  # same shape, but bitsets over another taxon order


def test_topology_edges_cover_every_split_once():
    rng = random.Random(7)
    taxa = TaxonOrder(f"t{i}" for i in range(10))
    topology = Topology.from_nested(taxa, next(rootings(random_adjacency(10, rng), 10, rng)))
    assert topology.n_edges == 17 and set(topology.edges) == topology.splits
    assert len(topology.nontrivial_splits) == 10 - 3
    for i, split in enumerate(topology.edges):
        assert topology.edge_index(split) == i
        assert topology.edge_index(split ^ taxa.full_mask) == i  # other orientation
    # Edge i is the edge above node i: tips first, in taxon order.
    assert topology.edges[: len(taxa)] == tuple(normalize_split(1 << i, taxa.full_mask)
                                                for i in range(len(taxa)))
    with pytest.raises(KeyError):
        topology.edge_index(0b11 << 4 | 0b1 << 8 | 0b1 << 1)


def test_rooted_topology_unrooted_is_same_for_every_root_edge():
    rng = random.Random(3)
    taxa = TaxonOrder(f"t{i}" for i in range(7))
    adjacency = random_adjacency(7, rng)
    unrooted = Topology.from_nested(taxa, nested(adjacency, 7, None, rng))
    rooted = [RootedTopology.from_nested(taxa, r) for r in rootings(adjacency, 7, rng)
              if len(r) == 2]
    assert len(rooted) == 2 * 7 - 3  # one rooting per edge
    assert len(set(rooted)) == len(rooted)  # rooted identities differ by root
    assert all(r.unrooted() == unrooted for r in rooted)


def test_rooted_topology_ignores_child_order():
    taxa = TaxonOrder("abcd")
    one = RootedTopology.from_nested(taxa, (("a", "b"), ("c", "d")))
    two = RootedTopology.from_nested(taxa, (("d", "c"), ("b", "a")))
    assert one == two and hash(one) == hash(two)


# --- non-binary and malformed input ---

@pytest.mark.parametrize("nested_tree", [
    (("a", "b", "c"), "d", "e"),  # polytomy below the root
    ("a", "b", "c", ("d", "e")),  # root of degree 4
    (("a", "b", "c"), ("d", "e")),  # rooted, with a polytomy
])
def test_topology_rejects_non_binary(nested_tree):
    with pytest.raises(TreeFileError):
        Topology.from_nested(TaxonOrder("abcde"), nested_tree)


def test_topology_rejects_wrong_split_sets():
    taxa = TaxonOrder("abcde")
    tips = [1 << i for i in range(5)]
    with pytest.raises(TreeFileError, match="has 7 edges, got 6"):
        Topology(taxa, tips + [0b00011])
    with pytest.raises(TreeFileError, match="not compatible"):
        Topology(taxa, tips + [0b00110, 0b01100])
    with pytest.raises(TreeFileError, match="outside the taxon set"):
        Topology(taxa, tips + [0b00110, 0b100000])
    with pytest.raises(TreeFileError, match="at least 3 taxa"):
        Topology(TaxonOrder("ab"), [1, 2])


def test_from_nested_rejects_repeated_or_missing_taxa():
    taxa = TaxonOrder("abcd")
    with pytest.raises(TreeFileError, match="twice"):
        Topology.from_nested(taxa, (("a", "b"), "a", ("c", "d")))
    with pytest.raises(TreeFileError, match="lacks taxa"):
        Topology.from_nested(taxa, (("a", "b"), "c"))


def test_rooted_topology_rejects_wrong_clade_count():
    with pytest.raises(TreeFileError, match="6 clades below the root, got 5"):
        RootedTopology(TaxonOrder("abcd"), [1, 2, 4, 8, 0b0011])


# --- Newick ---

def test_topology_to_newick_round_trips():
    rng = random.Random(11)
    names = ["Homo sapiens", "O'Brien", "plain", "x(1)", "t:5", "a_b", "Z"]
    taxa = TaxonOrder(names)
    for _ in range(10):
        topology = Topology.from_nested(taxa, nested(random_adjacency(7, rng), 7, None, rng))
        assert read_tree(topology.to_newick(), taxa=taxa).topology == topology


def test_tree_to_newick_round_trips_branch_lengths():
    rng = random.Random(5)
    taxa = TaxonOrder(f"t{i}" for i in range(9))
    topology = Topology.from_nested(taxa, nested(random_adjacency(9, rng), 9, None, rng))
    lengths = np.array([rng.expovariate(10.0) for _ in range(topology.n_edges)])
    back = read_tree(Tree(topology, lengths).to_newick(digits=17), taxa=taxa)
    assert back.topology == topology
    np.testing.assert_array_equal(back.branch_lengths, lengths)


def test_tree_rejects_wrong_number_of_lengths():
    topology = Topology.from_nested(TaxonOrder("abcd"), (("a", "b"), "c", "d"))
    with pytest.raises(TreeFileError, match="expected 5 branch lengths"):
        Tree(topology, np.ones(4))
    assert Tree(topology, [1, 2, 3, 4, 5]).branch_lengths.dtype == np.float64
    for bad in ([1, 2, 3, 4, -5], [1, 2, 3, 4, np.inf]):
        with pytest.raises(TreeFileError):
            Tree(topology, bad)
    assert np.isnan(Tree(topology, [1, 2, 3, 4, np.nan]).branch_lengths[-1])  # missing


# --- batches ---

def test_topology_batch_rejects_mismatched_taxa():
    one = Topology.from_nested(TaxonOrder("abcd"), (("a", "b"), "c", "d"))
    other_set = Topology.from_nested(TaxonOrder("abce"), (("a", "b"), "c", "e"))
    other_order = Topology.from_nested(TaxonOrder("dcba"), (("a", "b"), "c", "d"))
    with pytest.raises(TaxonMismatchError) as caught:
        TopologyBatch([one, other_set])
    assert caught.value.only_left == ("e",) and caught.value.only_right == ("d",)
    with pytest.raises(TreeFileError, match="different orders"):
        TopologyBatch([one, other_order])
    with pytest.raises(ConfigError):
        TopologyBatch([])
    batch = TopologyBatch([one, one])
    assert len(batch) == 2 and batch.n_taxa == 4 and batch.n_edges == 5


def test_rooting_on_every_edge_round_trips():
    taxa = TaxonOrder([f"t{i}" for i in range(7)])
    topology = Topology.from_nested(taxa, ((0, (1, 2)), 3, ((4, 5), 6)))
    rooted = set()
    for split in topology.edges:
        tree = topology.rooted_at(split)
        assert tree.unrooted() == topology and tree.root_split == split
        assert read_rooted_topology(tree.to_newick(), taxa) == tree
        rooted.add(tree)
    assert len(rooted) == topology.n_edges  # every rooting is a different rooted tree
