"""The array form of topologies that the likelihood kernel consumes.

Node numbering (one convention for all of phylovi): tips are ``0..n_taxa-1``
in taxon order; internal nodes follow in post-order, so children always have
smaller numbers than their parent, and the root is the last node. ``edge i`` is
the edge above node ``i``. An unrooted topology is rooted at the internal node
next to taxon 0, which then has three children; a rooted one has a root of
two children. Children are ordered by their lowest taxon, so the numbering
depends only on the topology, never on how a file wrote it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from phylovi.errors import ConfigError, TreeFileError
from phylovi.trees.bitset import bits_of, lowest_bit, normalize_split

if TYPE_CHECKING:
    from phylovi.trees.taxa import TaxonOrder
    from phylovi.trees.topology import Topology


@dataclass(frozen=True, eq=False)
class TreeArrays:
    """One topology as index arrays.

    Attributes:
        n_taxa: number of tips.
        parent: ``[n_nodes]`` parent of each node, ``-1`` at the root.
        children: ``[n_internal, 3]`` children of internal node ``n_taxa + j``
            in row ``j``, padded with ``-1`` (only an unrooted root has 3).
        height: ``[n_nodes]`` longest path down to a tip, in edges (tips 0).
        clades: the clade bitset of every node.
    """

    n_taxa: int
    parent: np.ndarray
    children: np.ndarray
    height: np.ndarray
    clades: tuple[int, ...]

    @property
    def n_nodes(self) -> int:
        return len(self.parent)

    @property
    def n_edges(self) -> int:
        return self.n_nodes - 1

    @property
    def root(self) -> int:
        return self.n_nodes - 1

    def edge_splits(self, full_mask: int) -> tuple[int, ...]:
        """Normalised split of every edge, in edge order."""
        return tuple(normalize_split(c, full_mask) for c in self.clades[:-1])


def clade_children(n_taxa: int, clades: set[int], root_degree: int) -> dict[int, list[int]]:
    """Children of every clade of a tree given as its set of clades.

    Args:
        n_taxa: number of taxa; every singleton and the full set must be in ``clades``.
        clades: every clade of the tree, the root's included.
        root_degree: 3 for an unrooted tree rooted at a node, 2 for a rooted tree.

    Returns:
        A mapping from each internal clade to its children, ordered by lowest taxon.

    Raises:
        TreeFileError: when the clades do not form a binary tree.
    """
    full = (1 << n_taxa) - 1
    ordered = sorted(clades, key=lambda c: -c.bit_count())
    if not ordered or ordered[0] != full:
        raise TreeFileError("the splits do not cover every taxon")
    owner = [full] * n_taxa
    children: dict[int, list[int]] = {full: []}
    for clade in ordered[1:]:
        parent = owner[lowest_bit(clade)]
        members = bits_of(clade)
        if any(owner[t] != parent for t in members):
            raise TreeFileError("the tree's splits are not compatible with one another")
        children[parent].append(clade)
        if clade.bit_count() > 1:
            children[clade] = []
        for t in members:
            owner[t] = clade
    for clade, kids in children.items():
        expected = root_degree if clade == full else 2
        if len(kids) != expected:
            what = "a polytomy" if len(kids) > expected else "a node with one child"
            raise TreeFileError(f"the tree is not binary: it has {what} ({len(kids)} children)")
        if sum(kids) != clade:
            raise TreeFileError("the tree's clades do not nest")
        kids.sort(key=lowest_bit)
    return children


def tree_arrays(n_taxa: int, children: dict[int, list[int]]) -> TreeArrays:
    """Number the nodes of a tree (see the module docstring) and build its arrays."""
    full = (1 << n_taxa) - 1
    n_nodes = 2 * n_taxa - 1 if len(children[full]) == 2 else 2 * n_taxa - 2
    parent = np.full(n_nodes, -1, dtype=np.int64)
    table = np.full((n_nodes - n_taxa, 3), -1, dtype=np.int64)
    height = np.zeros(n_nodes, dtype=np.int64)
    clades = [0] * n_nodes
    next_internal = n_taxa

    def visit(clade: int) -> int:  # post-order numbering; recursion depth <= n_taxa
        nonlocal next_internal
        if clade not in children:
            node = lowest_bit(clade)
        else:
            kids = [visit(c) for c in children[clade]]
            node = next_internal
            next_internal += 1
            table[node - n_taxa, : len(kids)] = kids
            parent[kids] = node
            height[node] = 1 + height[kids].max()
        clades[node] = clade
        return node

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * n_taxa + 100))
    try:
        visit(full)
    finally:
        sys.setrecursionlimit(limit)
    return TreeArrays(n_taxa, parent, table, height, tuple(clades))


class TopologyBatch:
    """Topologies over one taxon set, possibly of different shapes, as one batch.

    Args:
        topologies: unrooted topologies sharing one :class:`TaxonOrder`.

    The kernel's plan for a batch is cached on the batch, so build a batch
    once and evaluate it many times.
    """

    def __init__(self, topologies: "list[Topology]"):
        from phylovi.trees.topology import Topology  # topology.py imports this module

        if isinstance(topologies, (str, Topology)) or not hasattr(topologies, "__iter__"):
            raise ConfigError(f"a topology batch is built from a list of topologies, got "
                              f"{type(topologies).__name__}")
        topologies = list(topologies)
        if not topologies:
            raise ConfigError("a topology batch needs at least one topology")
        for topology in topologies:
            if not isinstance(topology, Topology):
                raise ConfigError(f"a topology batch holds Topology objects (a Tree's "
                                  f".topology), got {type(topology).__name__}")
        taxa = topologies[0].taxa
        for topology in topologies[1:]:
            topology.taxa.require_same_set(taxa, "the first topology", "another topology")
            if topology.taxa != taxa:
                raise TreeFileError("the topologies list their taxa in different orders")
        self.taxa: TaxonOrder = taxa
        self.topologies = tuple(topologies)
        self.cache: dict = {}

    def __len__(self) -> int:
        return len(self.topologies)

    @property
    def n_taxa(self) -> int:
        return len(self.taxa)

    @property
    def n_edges(self) -> int:
        return 2 * self.n_taxa - 3

    def arrays(self) -> list[TreeArrays]:
        return [t.arrays for t in self.topologies]
