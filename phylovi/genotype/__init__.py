"""Tumour single-cell genotype matrices: reading them and exact tests.

A genotype matrix is cells x mutations of 0, 1 and missing
(:class:`GenotypeMatrix`); :mod:`phylovi.genotype.perfect_phylogeny` holds the exact
perfect-phylogeny, linear and branching tests on complete 0/1 arrays.
"""

from phylovi.genotype.perfect_phylogeny import (
    conflicting_pairs,
    is_linear,
    is_perfect_phylogeny,
    linear_or_branching,
    mutation_tree_parents,
    perfect_phylogeny_tree,
)
from phylovi.genotype.matrix import MISSING, MISSING_MARKERS, GenotypeMatrix

__all__ = [
    "GenotypeMatrix",
    "MISSING",
    "MISSING_MARKERS",
    "conflicting_pairs",
    "is_linear",
    "is_perfect_phylogeny",
    "linear_or_branching",
    "mutation_tree_parents",
    "perfect_phylogeny_tree",
]
