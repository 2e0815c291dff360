"""Mean-field variational families over the branch lengths ``[*batch, n_edges]``.

Each family keeps two unconstrained parameters per branch (log shapes and
rates for Gamma and Beta-prime, location and log scale for the log-normal)
and builds ``Independent(Family(...), 1)``, so ``q.rsample((K,))`` is
``[K, n_edges]`` and ``q.log_prob`` sums over branches.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats
import torch
from torch.distributions import Gamma, Independent, LogNormal

from phylovi.distributions.beta_prime import BetaPrime
from phylovi.errors import ConfigError

FAMILIES = ("gamma", "betaprime", "lognormal")


class MeanField(torch.nn.Module):
    """A product of one-dimensional positive distributions, one per branch.

    Args:
        family: ``gamma``, ``betaprime`` or ``lognormal``.
        mean: ``[n_edges]`` initial means (e.g. the MAP branch lengths).
        cv: initial coefficient of variation of every branch.
    """

    def __init__(self, family: str, mean: torch.Tensor, cv: float = 0.1):
        super().__init__()
        if family not in FAMILIES:
            raise ConfigError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
        self.family = family
        mean = torch.as_tensor(mean).detach().clamp(min=1e-6)
        if family == "gamma":
            shape = torch.full_like(mean, 1 / cv**2)
            first, second = shape.log(), (shape / mean).log()
        elif family == "betaprime":
            # For a large second shape, BetaPrime(a, b) is close to Gamma(a, b - 1).
            a = torch.full_like(mean, 1 / cv**2)
            first, second = a.log(), (a / mean + 1).log()
        else:
            sigma = math.sqrt(math.log1p(cv**2))
            first, second = mean.log() - sigma**2 / 2, torch.full_like(mean, math.log(sigma))
        self.first = torch.nn.Parameter(first)
        self.second = torch.nn.Parameter(second)

    def distribution(self) -> Independent:
        a, b = self.first, self.second
        if self.family == "gamma":
            base = Gamma(a.exp(), b.exp())
        elif self.family == "betaprime":
            base = BetaPrime(a.exp(), b.exp())
        else:
            base = LogNormal(a, b.exp())
        return Independent(base, 1)

    def scipy_marginals(self):
        """The per-branch marginals as a frozen ``scipy.stats`` distribution (vectorised)."""
        a = self.first.detach().cpu().numpy().astype(np.float64)
        b = self.second.detach().cpu().numpy().astype(np.float64)
        if self.family == "gamma":
            return scipy.stats.gamma(np.exp(a), scale=np.exp(-b))
        if self.family == "betaprime":
            return scipy.stats.betaprime(np.exp(a), np.exp(b))
        return scipy.stats.lognorm(np.exp(b), scale=np.exp(a))

    def summary(self) -> dict[str, list[float]]:
        """Per-branch mean, median and central 95% interval (inf where a mean does not exist)."""
        marginals = self.scipy_marginals()
        return {"mean": marginals.mean().tolist(), "median": marginals.median().tolist(),
                "lower_95": marginals.ppf(0.025).tolist(), "upper_95": marginals.ppf(0.975).tolist()}
