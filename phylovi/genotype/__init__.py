"""Tumour single-cell genotype matrices: reading them, exact tests and networks.

A genotype matrix is cells x mutations of 0, 1 and missing
(:class:`GenotypeMatrix`); :mod:`phylovi.genotype.perfect_phylogeny` holds the exact
perfect-phylogeny, linear and branching tests on complete 0/1 arrays,
:mod:`phylovi.genotype.correct` the classical maximum-likelihood correction, and
:func:`load_model` the trained networks (imported on first use, as they need torch).
"""

from phylovi.genotype.perfect_phylogeny import (
    conflicting_pairs,
    is_linear,
    is_perfect_phylogeny,
    linear_or_branching,
    mutation_tree_parents,
    n_conflicting_pairs,
    perfect_phylogeny_tree,
)
from phylovi.genotype.matrix import MISSING, MISSING_MARKERS, GenotypeMatrix

__all__ = [
    "GenotypeMatrix",
    "load_model",
    "MISSING",
    "MISSING_MARKERS",
    "conflicting_pairs",
    "is_linear",
    "is_perfect_phylogeny",
    "linear_or_branching",
    "mutation_tree_parents",
    "n_conflicting_pairs",
    "perfect_phylogeny_tree",
]


def __getattr__(name):
    if name == "load_model":
        from phylovi.genotype.nets import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
