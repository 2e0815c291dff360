"""Unrooted and rooted binary topologies, and trees with branch lengths.

A topology's identity is its set of splits (unrooted) or clades (rooted) as
bitsets over a fixed :class:`TaxonOrder`, so it does not change with the
rooting or the child order a file happened to use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from phylovi.errors import TreeFileError, require_type
from phylovi.trees.batch import TreeArrays, clade_children, tree_arrays
from phylovi.trees.bitset import is_trivial_split, normalize_split
from phylovi.trees.taxa import TaxonOrder


class Topology:
    """An unrooted binary topology: immutable, hashable, identified by its splits.

    Args:
        taxa: the taxon order the bitsets refer to (at least 3 taxa).
        splits: the ``2 n_taxa - 3`` edge splits, trivial ones included, in
            either orientation.

    Raises:
        TreeFileError: if the splits do not form an unrooted binary tree.

    The edges are numbered by :mod:`phylovi.trees.batch`'s convention;
    ``edges[i]`` is the split of edge ``i``, and every branch-length vector
    ``[*batch, n_edges]`` in phylovi follows that order.
    """

    __slots__ = ("taxa", "splits", "edges", "arrays", "_edge_index", "_hash")

    def __init__(self, taxa: TaxonOrder, splits: Iterable[int]):
        require_type(taxa, TaxonOrder, "a topology's taxa")
        n = len(taxa)
        if n < 3:
            raise TreeFileError(f"an unrooted tree needs at least 3 taxa, got {n}")
        full = taxa.full_mask
        splits = frozenset(normalize_split(s, full) for s in splits)
        if 0 in splits or any(s & ~full for s in splits):
            raise TreeFileError("a split is empty or names a taxon outside the taxon set")
        if len(splits) != 2 * n - 3:
            raise TreeFileError(
                f"an unrooted binary tree on {n} taxa has {2 * n - 3} edges, got {len(splits)} "
                "distinct splits (a polytomy or a missing taxon?)")
        # Root at taxon 0's neighbour: the split of taxon 0's edge becomes clade {0}.
        clades = {s for s in splits if s != full ^ 1} | {1, full}
        self.arrays: TreeArrays = tree_arrays(n, clade_children(n, clades, root_degree=3))
        self.taxa = taxa
        self.splits = splits
        self.edges: tuple[int, ...] = self.arrays.edge_splits(full)
        self._edge_index = {s: i for i, s in enumerate(self.edges)}
        self._hash = hash((taxa, splits))

    @classmethod
    def from_nested(cls, taxa: TaxonOrder | Sequence[str], nested) -> "Topology":
        """Build from nested tuples of taxon names or indices, e.g. ``(("a","b"),"c",("d","e"))``.

        The outermost tuple may have 2 or 3 members (a rooted tree is unrooted).
        """
        taxa = taxa if isinstance(taxa, TaxonOrder) else TaxonOrder(taxa)
        clades = _nested_clades(taxa, nested)
        return cls(taxa, [c for c in clades if c != taxa.full_mask])

    @property
    def n_taxa(self) -> int:
        return len(self.taxa)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def nontrivial_splits(self) -> frozenset[int]:
        return frozenset(s for s in self.splits if not is_trivial_split(s, self.n_taxa))

    @property
    def internal_edges(self) -> tuple[bool, ...]:
        """Per edge (in edge order), whether it is internal rather than a tip's."""
        return tuple(not is_trivial_split(s, self.n_taxa) for s in self.edges)

    def rooted_at(self, split: int) -> "RootedTopology":
        """The rooted topology with the root on the edge of ``split`` (either orientation)."""
        full = self.taxa.full_mask
        side = normalize_split(split, full)
        if side not in self.splits:
            raise TreeFileError("the root's split is not an edge of the topology")
        clades = [side, full ^ side]
        for other in self.splits - {side}:
            # The side of another split that lies within one root side is a clade.
            clades.append(other if other & side == other or other & side == 0 else full ^ other)
        return RootedTopology(self.taxa, clades)

    def edge_index(self, split: int) -> int:
        """Edge number of a split (either orientation); ``KeyError`` if absent."""
        return self._edge_index[normalize_split(split, self.taxa.full_mask)]

    def to_newick(self, branch_lengths: Sequence[float] | np.ndarray | None = None,
                  digits: int = 10) -> str:
        """Newick string, rooted at taxon 0's neighbour, children in taxon order.

        Args:
            branch_lengths: ``[n_edges]`` lengths in edge order, or None.
        """
        arrays = self.arrays

        def write(node: int) -> str:
            if node < self.n_taxa:
                text = _quote(self.taxa[node])
            else:
                kids = [k for k in arrays.children[node - self.n_taxa] if k >= 0]
                text = "(" + ",".join(write(k) for k in kids) + ")"
            if branch_lengths is not None and node != arrays.root:
                text += f":{float(branch_lengths[node]):.{digits}g}"
            return text

        return write(arrays.root) + ";"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Topology) and self._hash == other._hash
                and self.splits == other.splits and self.taxa == other.taxa)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Topology({self.to_newick()!r})"


class RootedTopology:
    """A rooted binary topology: immutable, hashable, identified by its clades.

    Args:
        taxa: the taxon order (at least 2 taxa).
        clades: every clade below the root (singletons included; the root's
            own full clade may be given or not).
    """

    __slots__ = ("taxa", "clades", "arrays", "_hash")

    def __init__(self, taxa: TaxonOrder, clades: Iterable[int]):
        require_type(taxa, TaxonOrder, "a topology's taxa")
        n = len(taxa)
        if n < 2:
            raise TreeFileError(f"a rooted tree needs at least 2 taxa, got {n}")
        full = taxa.full_mask
        clades = frozenset(clades) - {full}
        if len(clades) != 2 * n - 2:
            raise TreeFileError(
                f"a rooted binary tree on {n} taxa has {2 * n - 2} clades below the root, "
                f"got {len(clades)}")
        self.arrays: TreeArrays = tree_arrays(n, clade_children(n, set(clades) | {full}, 2))
        self.taxa = taxa
        self.clades = clades
        self._hash = hash((taxa, clades, "rooted"))

    @classmethod
    def from_nested(cls, taxa: TaxonOrder | Sequence[str], nested) -> "RootedTopology":
        """Build from nested pairs of taxon names or indices."""
        taxa = taxa if isinstance(taxa, TaxonOrder) else TaxonOrder(taxa)
        return cls(taxa, _nested_clades(taxa, nested))

    def unrooted(self) -> Topology:
        """The unrooted topology (the two root edges become one)."""
        return Topology(self.taxa, self.clades)

    @property
    def root_split(self) -> int:
        """The split of the unrooted edge the root sits on (the side without taxon 0)."""
        first_child = self.arrays.children[-1, 0]
        return normalize_split(self.arrays.clades[first_child], self.taxa.full_mask)

    def to_newick(self) -> str:
        """Newick string with the binary root, children in taxon order."""
        arrays, n = self.arrays, len(self.taxa)

        def write(node: int) -> str:
            if node < n:
                return _quote(self.taxa[node])
            return "(" + ",".join(write(k) for k in arrays.children[node - n] if k >= 0) + ")"

        return write(arrays.root) + ";"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RootedTopology) and self._hash == other._hash
                and self.clades == other.clades and self.taxa == other.taxa)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"RootedTopology({sorted(self.clades)!r})"


@dataclass(frozen=True, eq=False)
class Tree:
    """An unrooted topology with one length per edge.

    Attributes:
        topology: the topology.
        branch_lengths: ``[n_edges]`` float64, in the topology's edge order.
    """

    topology: Topology
    branch_lengths: np.ndarray

    def __post_init__(self):
        require_type(self.topology, Topology, "a tree's topology")
        try:
            lengths = np.asarray(self.branch_lengths, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TreeFileError(f"branch lengths must be numbers ({error})") from None
        if lengths.shape != (self.topology.n_edges,):
            raise TreeFileError(
                f"expected {self.topology.n_edges} branch lengths, got shape {lengths.shape}")
        if (lengths < 0).any() or np.isinf(lengths).any():  # NaN stands for a missing length
            raise TreeFileError(f"branch lengths must be finite and >= 0, got {lengths.min():g}"
                                if (lengths < 0).any() else "branch lengths must be finite")
        object.__setattr__(self, "branch_lengths", lengths)

    @property
    def taxa(self) -> TaxonOrder:
        return self.topology.taxa

    def to_newick(self, digits: int = 10) -> str:
        return self.topology.to_newick(self.branch_lengths, digits)


def _nested_clades(taxa: TaxonOrder, nested) -> list[int]:
    clades: list[int] = []

    def visit(node) -> int:
        if isinstance(node, (tuple, list)):
            if len(node) < 2:
                raise TreeFileError(f"a node with {len(node)} children in {nested!r}")
            mask = 0
            for child in node:
                sub = visit(child)
                if mask & sub:
                    raise TreeFileError("a taxon appears twice in the tree")
                mask |= sub
        else:
            mask = 1 << (node if isinstance(node, (int, np.integer)) else taxa.index(node))
        clades.append(mask)
        return mask

    root = visit(nested)
    if root != taxa.full_mask:
        missing = [taxa[i] for i in range(len(taxa)) if not root >> i & 1]
        raise TreeFileError(f"the tree lacks taxa {missing}")
    return clades


def _quote(name: str) -> str:
    if any(ch in name for ch in " (),:;[]'\t\n"):
        return "'" + name.replace("'", "''") + "'"
    return name
