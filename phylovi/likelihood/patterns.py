"""Site patterns: the distinct columns of an alignment and how often each occurs.

Each character becomes a 4-bit mask over the states ``A=1, C=2, G=4, T=8``:
the set of bases it allows. The likelihood of a site depends only on its
column of masks, so the kernel evaluates each distinct column once and weights
it by its count.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from phylovi.errors import AlignmentError, require_type
from phylovi.io.alignment import Alignment
from phylovi.trees.taxa import TaxonOrder

STATES = "ACGT"

#: Character (upper case) -> 4-bit mask of the bases it allows (IUPAC).
STATE_CODES = MappingProxyType({
    "A": 1, "C": 2, "G": 4, "T": 8, "U": 8,
    "R": 1 | 4, "Y": 2 | 8, "K": 4 | 8, "M": 1 | 2, "S": 2 | 4, "W": 1 | 8,
    "B": 2 | 4 | 8, "D": 1 | 4 | 8, "H": 1 | 2 | 8, "V": 1 | 2 | 4,
    "N": 15, "X": 15, "?": 15, "-": 15,
})

#: ``CODE_STATES[code, k]`` is True when 4-bit ``code`` allows state ``k``; shape [16, 4].
CODE_STATES = ((np.arange(16)[:, None] >> np.arange(4)) & 1) == 1

# IQ-TREE's Alignment::convertCountToFreq runs this many rounds from uniform.
_IQTREE_FREQUENCY_ROUNDS = 8

# Code points up to 127 index this table; every other character maps to 0 ("no base").
_CODE_OF_CHARACTER = np.zeros(128, dtype=np.uint8)
for _character, _code in STATE_CODES.items():
    _CODE_OF_CHARACTER[ord(_character)] = _code


@dataclass(frozen=True, eq=False)
class SitePatterns:
    """The distinct columns of an alignment, in order of first appearance.

    Attributes:
        taxa: the alignment's taxon order; row ``i`` of ``codes`` is taxon ``i``.
        codes: uint8 ``[n_taxa, n_patterns]``, the 4-bit mask of each character.
        weights: float64 ``[n_patterns]``, the number of sites with each pattern.
        site_pattern: int64 ``[n_sites]``, the pattern index of each site, so
            ``codes[:, site_pattern]`` is the whole alignment.
    """

    taxa: TaxonOrder
    codes: np.ndarray
    weights: np.ndarray
    site_pattern: np.ndarray

    @property
    def n_taxa(self) -> int:
        return len(self.taxa)

    @property
    def n_patterns(self) -> int:
        return self.codes.shape[1]

    @property
    def n_sites(self) -> int:
        return self.site_pattern.shape[0]


def encode_alignment(alignment: Alignment) -> np.ndarray:
    """The 4-bit mask of every character.

    Args:
        alignment: sequences over :data:`STATE_CODES` (as ``read_alignment`` ensures).

    Returns:
        uint8 ``[n_taxa, n_sites]``.

    Raises:
        AlignmentError: a character is not in :data:`STATE_CODES` (only possible
            for an :class:`Alignment` built by hand).
    """
    shape = (alignment.n_taxa, alignment.n_sites)
    # UTF-32 gives one integer per character, so any string indexes safely.
    points = np.frombuffer("".join(alignment.sequences).encode("utf-32-le"), dtype="<u4")
    if points.size != shape[0] * shape[1]:
        raise AlignmentError("the sequences differ in length", path=alignment.path)
    codes = _CODE_OF_CHARACTER[np.minimum(points, 127)].reshape(shape)
    if not codes.all():
        taxon, site = np.argwhere(codes == 0)[0]
        character = alignment.sequences[taxon][site]
        raise AlignmentError(f"taxon {alignment.taxa[taxon]!r} has {character!r} at site "
                             f"{site + 1}, which is not a DNA character", path=alignment.path)
    return codes


def compress_patterns(alignment: Alignment) -> SitePatterns:
    """Collapse identical alignment columns into weighted site patterns.

    Args:
        alignment: the alignment.

    Returns:
        The patterns, numbered in order of first appearance in the alignment.
    """
    require_type(alignment, Alignment, "compress_patterns' argument")
    codes = encode_alignment(alignment)
    _, first, inverse, counts = np.unique(codes, axis=1, return_index=True,
                                          return_inverse=True, return_counts=True)
    # np.unique sorts the columns; renumber them by first appearance instead.
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return SitePatterns(
        taxa=alignment.taxa,
        codes=np.ascontiguousarray(codes[:, first[order]]),
        weights=counts[order].astype(np.float64),
        site_pattern=rank[inverse.reshape(-1)].astype(np.int64),
    )


def empirical_frequencies(patterns: SitePatterns) -> np.ndarray:
    """Base frequencies counted from the data, exactly as IQ-TREE's ``+F`` does.

    IQ-TREE (``Alignment::convertCountToFreq``) starts from uniform
    frequencies and runs 8 rounds of expectation-maximisation: each character
    shares its count among the bases it allows in proportion to their current
    frequencies. A fully ambiguous character (``N ? - X``) therefore counts
    too, but only pulls towards the current estimate; in the first round a
    partly ambiguous one splits evenly (1/k to each of its k bases). With only
    unambiguous bases the result is their plain proportions.

    Args:
        patterns: the site patterns.

    Returns:
        float64 ``[4]`` frequencies of A, C, G, T, summing to 1.
    """
    counts = np.bincount(patterns.codes.ravel(), minlength=16,
                         weights=np.broadcast_to(patterns.weights, patterns.codes.shape).ravel())
    present = np.flatnonzero(counts)  # an absent code may allow only bases of frequency 0
    allowed, counts = CODE_STATES[present], counts[present]
    frequencies = np.full(4, 0.25)
    for _ in range(_IQTREE_FREQUENCY_ROUNDS):
        share = allowed * frequencies
        share /= share.sum(axis=1, keepdims=True)
        expected = counts @ share
        frequencies = expected / expected.sum()
    return frequencies


def constant_pattern_states(patterns: SitePatterns) -> np.ndarray:
    """Which states every taxon of a pattern allows (the +I model's constant sites).

    Args:
        patterns: the site patterns.

    Returns:
        bool ``[n_patterns, 4]``: entry ``[p, k]`` is True when pattern ``p``
        could be all state ``k``.
    """
    shared = np.bitwise_and.reduce(patterns.codes, axis=0)
    return CODE_STATES[shared]
