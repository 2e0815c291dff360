"""Clades and splits as Python-int bitsets over a :class:`TaxonOrder`.

Bit ``i`` stands for taxon ``i``. A clade is the set of taxa below a node of a
rooted tree. A split is the bipartition an edge of an unrooted tree makes; it
is stored as the side that does *not* hold taxon 0, so every split has exactly
one representation.
"""

from __future__ import annotations

from collections.abc import Iterable


def mask_of(indices: Iterable[int]) -> int:
    """The bitset with the given taxon indices set."""
    mask = 0
    for i in indices:
        mask |= 1 << i
    return mask


def bits_of(mask: int) -> list[int]:
    """Taxon indices set in ``mask``, ascending."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def lowest_bit(mask: int) -> int:
    """Index of the lowest taxon in a non-empty bitset."""
    return (mask & -mask).bit_length() - 1


def normalize_split(mask: int, full_mask: int) -> int:
    """The side of the split ``mask | ~mask`` that does not hold taxon 0."""
    return mask ^ full_mask if mask & 1 else mask


def is_trivial_split(split: int, n_taxa: int) -> bool:
    """True for a split that separates one taxon from the rest (a tip's edge)."""
    size = split.bit_count()
    return size == 1 or size == n_taxa - 1
