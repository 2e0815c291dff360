"""The vectorised encoding of every rooting equals a direct construction, rooting by rooting."""

from __future__ import annotations

import numpy as np
import pytest

from phylovi.sbn.network import by_rooting
from phylovi.sbn.support import SubsplitSupport


def rooted_pcsps(topology, split):
    """Rootsplit and PCSP set of ``topology`` rooted on the edge of ``split``, built directly."""
    full = topology.taxa.full_mask
    side_a, side_b = split, full ^ split
    clades = {side_a, side_b}
    for other in topology.splits:
        if other == split:
            continue
        for side in (other, full ^ other):
            if side & side_a == side or side & side_b == side:
                clades.add(side)
    children = {}
    for clade in clades:
        inside = [c for c in clades if c != clade and c & clade == c]
        maximal = [c for c in inside if not any(c != d and c & d == c for d in inside)]
        if maximal:
            assert len(maximal) == 2 and maximal[0] | maximal[1] == clade
            children[clade] = maximal
    parent_of = {kid: clade for clade, kids in children.items() for kid in kids}
    parent_of[side_a], parent_of[side_b] = full, full
    pcsps = set()
    for clade, kids in children.items():
        sister = (full if parent_of[clade] == full else parent_of[clade]) ^ clade
        pcsps.add((sister, clade, frozenset(kids)))
    return split, pcsps


def decoded(support, encoded, t, r):
    clades = support.clades
    full = support.taxa.full_mask
    sisters = by_rooting(encoded.sisters, encoded.choice)[t, r]
    kids = by_rooting(encoded.children, encoded.choice)[t, r]
    own = by_rooting(encoded.clades, encoded.choice)[t, r]
    pcsps = {(clades[s], clades[c], frozenset({clades[k], clades[c] ^ clades[k]}))
             for s, c, k in zip(sisters, own, kids)}
    root = clades[encoded.rootsplits[t, r]]
    return (root if not root & 1 else root ^ full), pcsps


@pytest.mark.parametrize("n_taxa", [3, 4, 5, 8, 11])
def test_encode_every_rooting_equals_direct_construction(n_taxa, random_topologies):
    topologies = random_topologies(n_taxa, 12, seed=n_taxa)
    support = SubsplitSupport.from_topologies(topologies[0].taxa, topologies)
    encoded = support.encode(topologies)
    assert encoded.choice.shape == (12, 2 * n_taxa - 3, n_taxa - 2)
    for t, topology in enumerate(topologies):
        for r, split in enumerate(topology.edges):
            assert decoded(support, encoded, t, r) == rooted_pcsps(topology, split)


def test_encode_marks_unknown_clades(enumerate_topologies):
    topologies = enumerate_topologies(6)
    support = SubsplitSupport.from_topologies(topologies[0].taxa, topologies[:1])
    encoded = support.encode(topologies)
    known_everywhere = (encoded.rootsplits >= 0).all(axis=1)
    # Only the support's own topology has every clade known.
    assert known_everywhere[0] and not known_everywhere[1:].all()
    assert np.array_equal(support.encode(topologies[:1]).rootsplits, encoded.rootsplits[:1])
