"""Which substitution model the data support, on a fixed topology: every candidate fitted by
maximum likelihood (its free parameters and the branch lengths), then ranked by AIC, AICc
and BIC, as IQ-TREE's ModelFinder ranks them (``-te TREE -m TESTONLY -mset
JC,F81,K2P,HKY,TN,SYM,GTR -mrate E,I,G,I+G``).

The parameters counted (``df``) are the branch lengths (2n - 3 for n taxa) and the
model's own: 3 for empirical base frequencies, which IQ-TREE counts as estimated, 1
per kappa, 5 for SYM's and GTR's exchangeabilities, 1 each for +I and +G.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.optimize import optimize_branch_lengths
from phylovi.likelihood.patterns import SitePatterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees import Tree

# Substitution models and their parameter counts; rate types and theirs (IQ-TREE's names).
SUBSTITUTIONS = (("JC", 0), ("F81+F", 3), ("K2P", 1), ("HKY+F", 4), ("TN+F", 5), ("SYM", 5),
                 ("GTR+F", 8))
RATE_TYPES = (("", 0), ("+I", 1), ("+G4", 1), ("+I+G4", 2))
CANDIDATES = tuple((name + rates, count + extra) for name, count in SUBSTITUTIONS
                   for rates, extra in RATE_TYPES)


@dataclass(frozen=True)
class ModelFit:
    """One candidate fitted: ``name`` as IQ-TREE writes it, ``model`` with the estimated
    values (a model string phylovi reads back), and the tree with its estimated lengths."""

    name: str
    log_likelihood: float
    df: int
    aic: float
    aicc: float
    bic: float
    model: str
    tree: Tree


def information_criteria(log_likelihood: float, df: int, n_sites: float) -> tuple[float, ...]:
    """``(AIC, AICc, BIC)``; AICc is infinite where there are not more sites than
    parameters + 1 (its correction is undefined there)."""
    aic = 2 * df - 2 * log_likelihood
    aicc = aic + 2 * df * (df + 1) / (n_sites - df - 1) if n_sites > df + 1 else math.inf
    return aic, aicc, df * math.log(n_sites) - 2 * log_likelihood


def select_model(patterns: SitePatterns, tree: Tree,
                 candidates: Iterable[tuple[str, int]] = CANDIDATES,
                 dtype: torch.dtype = torch.float64, device=None,
                 progress: Callable[[ModelFit], None] | None = None) -> list[ModelFit]:
    """Every candidate ``(model string, its own parameter count)`` fitted on ``tree``,
    sorted by BIC (then by name); branch lengths start from the tree's own (0.1 where it
    has none). ``progress`` is called with each fit as it is done."""
    n_sites = float(patterns.weights.sum())
    n_edges = len(tree.branch_lengths)
    fits = []
    for name, own in candidates:
        model = parse_model(name, patterns, dtype=dtype)
        likelihood = TreeLikelihood(patterns, model, dtype=dtype, device=device)
        value, fitted = optimize_branch_lengths(likelihood, tree)
        df = own + n_edges
        fits.append(ModelFit(name, value, df, *information_criteria(value, df, n_sites),
                             model.to_string(), fitted))
        if progress is not None:
            progress(fits[-1])
    return sorted(fits, key=lambda fit: (fit.bic, fit.name))
