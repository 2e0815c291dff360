"""The target: a fixed unrooted topology, a substitution model and a branch-length prior.

All functions take branch lengths ``[*batch, n_edges]`` and return ``[*batch]``
(per-site values ``[*batch, n_patterns]``), and count the likelihood
evaluations they make.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees.topology import Topology


class Posterior:
    """p(b | y, topology) ∝ p(y | b) p(b) over the branch lengths b.

    Args:
        likelihood: the tree likelihood (alignment and fixed model).
        topology: the unrooted topology.
        prior: a distribution over ``[*batch, n_edges]`` (default i.i.d. Exp(10)).
    """

    def __init__(self, likelihood: TreeLikelihood, topology: Topology,
                 prior: Distribution | None = None):
        from phylovi.distributions.priors import parse_prior
        from phylovi.errors import ConfigError, require_type

        require_type(likelihood, TreeLikelihood, "the posterior's likelihood")
        require_type(topology, Topology, "the posterior's topology (a Tree's .topology)")
        require_type(prior, (Distribution, type(None)), "the posterior's prior (parse_prior)")
        self.likelihood = likelihood
        self.topology = topology
        self.prior = prior or parse_prior("exp(10)", topology.n_edges, dtype=likelihood.dtype,
                                          device=likelihood.device)
        shape = tuple(self.prior.batch_shape + self.prior.event_shape)
        if shape[-1:] != (topology.n_edges,):
            raise ConfigError(f"the prior is over shape {shape}, not over the topology's "
                              f"{topology.n_edges} branches")
        self.n_likelihood_evals = 0

    @property
    def n_edges(self) -> int:
        return self.topology.n_edges

    @property
    def dtype(self) -> torch.dtype:
        return self.likelihood.dtype

    def log_likelihood(self, lengths: torch.Tensor) -> torch.Tensor:
        batch = lengths.shape[:-1]
        flat = lengths.reshape(-1, self.n_edges)
        self.n_likelihood_evals += flat.shape[0]
        return self.likelihood.log_likelihood(self.topology, flat).reshape(batch)

    def log_prior(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(lengths)

    def log_joint(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.log_likelihood(lengths) + self.log_prior(lengths)

    def site_log_likelihoods(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[S, n_edges] -> [S, n_patterns]``; pattern weights are ``self.pattern_weights``."""
        self.n_likelihood_evals += lengths.shape[0]
        return self.likelihood.site_log_likelihoods(self.topology, lengths)

    @property
    def pattern_weights(self) -> torch.Tensor:
        return torch.as_tensor(self.likelihood.patterns.weights, dtype=self.dtype)
