"""Simulate alignments under a substitution model along a tree."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from phylovi.errors import ConfigError, require_type
from phylovi.likelihood.model_string import Model
from phylovi.trees import Tree

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


def simulate_alignment(tree: Tree, model: Model, n_sites: int,
                       generator: torch.Generator | None = None) -> list[str]:
    """Sequences evolved down ``tree`` under ``model``, one per taxon in taxon order.

    Each site draws a rate category (invariable with probability ``pinv``,
    else one of the Gamma categories), a root state from the stationary
    frequencies, and then a state at every node from ``P(t r)`` of its parent's.

    Args:
        tree: topology and branch lengths (the root is taxon 0's neighbour;
            the model is reversible, so the root's place does not matter).
        model: substitution model and site rates.
        n_sites: alignment length.
        generator: source of randomness, for reproducible runs.

    Returns:
        ``n_taxa`` strings of ``n_sites`` letters from ACGT.

    Raises:
        ConfigError: a branch without a length (NaN: a tree read without lengths, which
            once gave all-'A' sequences), or ``n_sites`` not a positive integer.
    """
    require_type(tree, Tree, "the tree to simulate on (with branch lengths)")
    require_type(model, Model, "the model to simulate under (parse_model)")
    require_type(generator, (torch.Generator, type(None)), "the random generator")
    if isinstance(n_sites, bool) or not isinstance(n_sites, numbers.Integral) or n_sites < 1:
        raise ConfigError(f"the number of sites must be a positive integer, got {n_sites!r}")
    missing = int(np.isnan(np.asarray(tree.branch_lengths, dtype=np.float64)).sum())
    if missing:
        raise ConfigError(f"{missing} of the tree's {len(tree.branch_lengths)} edges have no "
                          "branch length; simulating needs every one")
    with torch.no_grad():
        substitution, site_rates = model.substitution, model.site_rates
        rates = site_rates.rates(torch.float64)
        pinv = float(site_rates.pinv) if site_rates.has_invariant else 0.0
        u = lambda *shape: torch.rand(shape, generator=generator, dtype=torch.float64)  # noqa: E731
        category = torch.randint(len(rates), (n_sites,), generator=generator)
        # One matrix per branch and distinct rate (the categories', then 0 for invariable
        # sites), indexed per site: memory per site is a byte per node, not a 4 x 4 matrix.
        invariable = u(n_sites) < pinv
        rate_index = torch.where(invariable, len(rates), category)
        del category, invariable
        distinct = torch.cat([rates, torch.zeros(1, dtype=torch.float64)])
        arrays = tree.topology.arrays
        states = torch.empty(arrays.n_nodes, n_sites, dtype=torch.uint8)
        pi = substitution.frequencies.to(torch.float64)
        states[arrays.root] = _draw(pi.expand(n_sites, 4), u(n_sites))
        lengths = torch.as_tensor(tree.branch_lengths, dtype=torch.float64)
        for node in range(arrays.n_nodes - 2, -1, -1):  # parents before children
            matrices = substitution.transition_matrices(lengths[node] * distinct)  # [R + 1, 4, 4]
            rows = matrices[rate_index, states[arrays.parent[node]].long()]
            states[node] = _draw(rows, u(n_sites))
    letters = _BASES[states[: arrays.n_taxa].numpy()]
    return [row.tobytes().decode("ascii") for row in letters]


def _draw(probabilities: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw of one state per row of ``[n, 4]`` probabilities."""
    cumulative = probabilities.cumsum(-1)
    return (uniform[:, None] * cumulative[:, -1:] > cumulative).sum(-1).clamp(max=3)
