"""Subsplit support: every unrooted topology as index arrays over all its rootings.

An unrooted topology on ``n`` taxa has ``R = 2n - 3`` edges, and each edge is a
possible root (Zhang & Matsen 2018, section 3). Rooted on an edge, the tree is
one *rootsplit* (the split of that edge) and ``n - 2`` *PCSPs*, one per
internal node: the node's parent subsplit ``{sister, clade}`` and the subsplit
``{child_a, child_b}`` that splits the node's clade. A PCSP is the triple
(sister, clade, child) of clade ids, where child is the smaller id of the two
halves. Conditioning on the clade alone, as CCD does, drops the sister.

:meth:`SubsplitSupport.encode` turns a batch of ``T`` topologies into

- ``rootsplits``: ``[T, R]`` the clade id of the side of each edge's split
  without taxon 0 (edge ``r`` of the topology's canonical edge order);
- ``sisters``, ``clades``, ``children``: ``[T, n - 2, 9]`` the PCSPs each
  internal node can have: its parent is one of 3 neighbours, and its sister
  then depends on where the root lies beyond that neighbour (3 cases);
- ``choice``: ``[T, R, n - 2]`` which of the 9 each node has under each rooting.

All of it is vectorised over the batch, so fitting and queries loop over
arrays, not over Python trees. A clade outside the support has id -1, and an
option no rooting can take (beyond a tip) has sister -1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from phylovi.trees.taxa import TaxonOrder
from phylovi.trees.topology import RootedTopology, Topology

# Topologies encoded per vectorised chunk: bounds the [T, N, N] working arrays.
_CHUNK = 512


@dataclass(frozen=True)
class EncodedTopologies:
    """Clade ids of every rootsplit and PCSP of a batch (see the module docstring)."""

    rootsplits: np.ndarray
    sisters: np.ndarray
    clades: np.ndarray
    children: np.ndarray
    choice: np.ndarray

    def __len__(self) -> int:
        return len(self.rootsplits)

    def at_rootings(self, edges: np.ndarray) -> "EncodedTopologies":
        """Keep one rooting per topology: ``edges`` ``[T]`` gives its edge (``R`` becomes 1)."""
        rows = np.arange(len(self))
        return EncodedTopologies(self.rootsplits[rows, edges][:, None], self.sisters, self.clades,
                                 self.children, self.choice[rows, edges][:, None, :])


class SubsplitSupport:
    """A numbering of clades (bitsets over one taxon order) into ids.

    Args:
        taxa: the taxon order.
        clades: the clades, in id order; both sides of every split a topology
            of the support has.
    """

    def __init__(self, taxa: TaxonOrder, clades: Sequence[int]):
        self.taxa = taxa
        self.clades: tuple[int, ...] = tuple(clades)
        self._ids = {clade: i for i, clade in enumerate(self.clades)}

    @classmethod
    def from_topologies(cls, taxa: TaxonOrder,
                        topologies: Iterable[Topology | RootedTopology]) -> "SubsplitSupport":
        """The support of every clade any rooting of the topologies shows."""
        full = taxa.full_mask
        seen: dict[int, None] = {}
        for topology in topologies:
            if isinstance(topology, RootedTopology):
                topology = topology.unrooted()
            for clade in topology.arrays.clades[:-1]:
                seen[clade] = None
                seen[full ^ clade] = None
        return cls(taxa, sorted(seen))

    @property
    def n_taxa(self) -> int:
        return len(self.taxa)

    def __len__(self) -> int:
        return len(self.clades)

    def clade_id(self, clade: int) -> int:
        """Id of a clade, -1 if it is not in the support."""
        return self._ids.get(clade, -1)

    def encode(self, topologies: Sequence[Topology] | Sequence[RootedTopology]) -> EncodedTopologies:
        """Rootsplits and PCSPs of every rooting of each topology, as clade ids.

        Args:
            topologies: ``T`` unrooted topologies over :attr:`taxa`, or ``T``
                rooted ones, which keep only their own rooting (``R = 1``).
        """
        rooted = [isinstance(t, RootedTopology) for t in topologies]
        if any(rooted):
            if not all(rooted):
                raise ValueError("cannot encode rooted and unrooted topologies together")
            unrooted = [t.unrooted() for t in topologies]
            edges = np.array([u.edge_index(t.root_split) for t, u in zip(topologies, unrooted)],
                             dtype=np.int64)
            return self.encode(unrooted).at_rootings(edges)
        n = self.n_taxa
        if n < 3:
            raise ValueError("subsplit support needs at least 3 taxa")
        parts = [self._encode_chunk(topologies[i:i + _CHUNK])
                 for i in range(0, len(topologies), _CHUNK)]
        if not parts:
            r, empty = 2 * n - 3, np.zeros((0, n - 2, 9), dtype=np.int64)
            return EncodedTopologies(np.zeros((0, r), dtype=np.int64), empty, empty, empty,
                                     np.zeros((0, r, n - 2), dtype=np.uint8))
        return EncodedTopologies(*(np.concatenate(arrays) for arrays in zip(*parts)))

    def _encode_chunk(self, topologies: Sequence[Topology]):
        n, full = self.n_taxa, self.taxa.full_mask
        n_nodes, n_edges = 2 * n - 2, 2 * n - 3
        root = n_nodes - 1
        t_count = len(topologies)
        parent = np.stack([t.arrays.parent for t in topologies])          # [T, N]
        kids = np.stack([t.arrays.children for t in topologies])          # [T, N - n, 3]
        # down[t, v]: id of the clade below edge v; up[t, v]: the other side.
        down = np.empty((t_count, n_edges), dtype=np.int64)
        up = np.empty((t_count, n_edges), dtype=np.int64)
        get = self._ids.get
        for t, topology in enumerate(topologies):
            if topology.taxa != self.taxa:
                raise ValueError("a topology's taxon order differs from the support's")
            clades = topology.arrays.clades
            down[t] = [get(c, -1) for c in clades[:-1]]
            up[t] = [get(full ^ c, -1) for c in clades[:-1]]

        rows = np.arange(t_count)[:, None]
        # below[t, k, c]: node c is node k or below it.
        below = np.zeros((t_count, n_nodes, n_nodes), dtype=bool)
        node = np.broadcast_to(np.arange(n_nodes), (t_count, n_nodes)).copy()
        cols = np.broadcast_to(np.arange(n_nodes), (t_count, n_nodes))
        while (node >= 0).any():
            live = node >= 0
            below[np.nonzero(live)[0], node[live], cols[live]] = True
            node = np.where(live, parent[rows, np.maximum(node, 0)], -1)

        # Every node's three neighbour slots: parent, child 0, child 1 (the
        # root: its three children; a tip: its parent, then padding).
        neighbour = np.full((t_count, n_nodes, 3), -1, dtype=np.int64)
        neighbour[:, :root, 0] = parent[:, :root]
        neighbour[:, n:root, 1:] = kids[:, :-1, :2]
        neighbour[:, root] = kids[:, -1]
        # outward[t, v, j]: id of the side of the tree seen from v through slot j.
        outward = np.full((t_count, n_nodes, 3), -1, dtype=np.int64)
        outward[:, :root, 0] = up
        has = neighbour[:, :, 1:] >= 0
        outward[:, :, 1:][has] = down[np.nonzero(has)[0], neighbour[:, :, 1:][has]]
        outward[:, root, 0] = down[np.arange(t_count), kids[:, -1, 0]]
        # back[t, v, j]: the slot of neighbour j that points back at v.
        back = np.zeros((t_count, n_nodes, 3), dtype=np.int64)  # a child's slot 0 is its parent
        for slot in range(3):
            is_child = kids[:, :, slot]  # [T, N - n]
            back_of_child = np.where(np.arange(n, n_nodes) == root, slot, slot + 1)
            valid = is_child >= 0
            t_idx, j_idx = np.nonzero(valid)
            back[t_idx, is_child[valid], 0] = back_of_child[j_idx]
        # toward[t, v, e]: the slot of v that leads to edge e (the edge above node e).
        edge_below = below[:, :, :n_edges]
        toward = np.zeros((t_count, n_nodes, n_edges), dtype=np.int64)
        for slot in (1, 2):
            child = neighbour[:, n:root, slot]
            hit = edge_below[rows, child]  # [T, N - n - 1, R]
            toward[:, n:root] = np.where(hit, slot, toward[:, n:root])
        root_kids = kids[:, -1]
        toward[:, root] = np.where(edge_below[np.arange(t_count), root_kids[:, 0]], 0,
                                   np.where(edge_below[np.arange(t_count), root_kids[:, 1]], 1, 2))

        # The PCSP instances of every internal node v: option 3 j + s has v's
        # parent through slot j and the sister chosen by s (0: the root is on
        # the edge to the parent; 1, 2: the parent's next slots after v's).
        v2 = np.arange(n, n_nodes)[None, :, None]
        t2 = np.arange(t_count)[:, None, None]
        slots = np.arange(3)[None, None, :]
        x = neighbour[:, n:]                                            # [T, n-2, 3]
        b = back[:, n:]
        clade = outward[t2, np.maximum(x, 0), b]
        child_a = outward[t2, v2, (slots + 1) % 3]
        child_b = outward[t2, v2, (slots + 2) % 3]
        children = np.where((child_a < 0) | (child_b < 0), -1, np.minimum(child_a, child_b))
        sisters = np.stack([outward[:, n:],
                            outward[t2, np.maximum(x, 0), (b + 1) % 3],
                            outward[t2, np.maximum(x, 0), (b + 2) % 3]], axis=-1)  # [T, n-2, 3, 3]

        # Which option every internal node takes under every rooting e.
        t3, v3, e3 = t2, v2, np.arange(n_edges)[None, None, :]
        slot = toward[:, n:]                                            # [T, n-2, R]
        x_e = neighbour[t3, v3, slot]
        b_e = back[t3, v3, slot]
        edge_to_x = np.where((slot == 0) & (v3 != root), v3, x_e)
        x_toward = toward[t3, x_e, e3]
        option = np.where(edge_to_x == e3, 0, np.where(x_toward == (b_e + 2) % 3, 1, 2))
        choice = (3 * slot + option).astype(np.uint8).transpose(0, 2, 1)  # [T, R, n-2]

        rootsplits = down.copy()
        rootsplits[:, 0] = up[:, 0]  # tip 0's edge: the side without taxon 0
        shape = (t_count, n - 2, 9)
        return (rootsplits, sisters.reshape(shape), np.repeat(clade, 3, axis=-1).reshape(shape),
                np.repeat(children, 3, axis=-1).reshape(shape), choice)
