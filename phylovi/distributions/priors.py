"""Branch-length priors: i.i.d. Exponential or Gamma, and the compound Dirichlet on tree length.

A prior is a distribution over the branch-length vector ``[*batch, n_edges]``
whose ``log_prob`` returns ``[*batch]``. :func:`parse_prior` reads the strings
the command line takes: ``exp(10)``, ``gamma(2,20)``, ``gammadir(1,0.1,1,1)``.
"""

from __future__ import annotations

import numbers
import re

import torch
from torch.distributions import Dirichlet, Distribution, Exponential, Gamma, Independent, constraints

from phylovi.errors import ConfigError


class CompoundDirichlet(Distribution):
    r"""The compound Dirichlet prior on branch lengths (Rannala, Zhu & Yang 2012).

    The tree length ``T = sum(b)`` is Gamma(``tree_shape``, ``tree_rate``) and
    the proportions ``b / T`` are Dirichlet(``concentration``), so

    .. math:: \log p(b) = \log \mathrm{Gamma}(T) + \log \mathrm{Dir}(b / T) - (E - 1) \log T.

    MrBayes' ``gammadir(aT, bT, a, c)`` is ``tree_shape=aT``, ``tree_rate=bT``
    and concentration ``a`` on external and ``a c`` on internal branches.

    Args:
        tree_shape, tree_rate: the Gamma prior on the tree length.
        concentration: ``[n_edges]`` Dirichlet concentrations.
    """

    arg_constraints = {"tree_shape": constraints.positive, "tree_rate": constraints.positive,
                       "concentration": constraints.independent(constraints.positive, 1)}
    support = constraints.independent(constraints.positive, 1)
    has_rsample = True

    def __init__(self, tree_shape, tree_rate, concentration, validate_args=None):
        self.concentration = torch.as_tensor(concentration)
        like = self.concentration
        self.tree_shape = torch.as_tensor(tree_shape, dtype=like.dtype, device=like.device)
        self.tree_rate = torch.as_tensor(tree_rate, dtype=like.dtype, device=like.device)
        super().__init__(torch.Size(), self.concentration.shape[-1:], validate_args=validate_args)

    def rsample(self, sample_shape=torch.Size()):
        length = Gamma(self.tree_shape, self.tree_rate).rsample(sample_shape)
        proportions = Dirichlet(self.concentration).rsample(sample_shape)
        return proportions * length.unsqueeze(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        length = value.sum(-1)
        n_edges = value.shape[-1]
        return (Gamma(self.tree_shape, self.tree_rate).log_prob(length)
                + Dirichlet(self.concentration).log_prob(value / length.unsqueeze(-1))
                - (n_edges - 1) * torch.log(length))


# signed, so that a negative parameter is reported as out of range rather than unknown
_NUMBER = r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
_PATTERNS = {
    "exp": re.compile(rf"exp(?:onential)?\({_NUMBER}\)$"),
    "gamma": re.compile(rf"gamma\({_NUMBER},{_NUMBER}\)$"),
    "gammadir": re.compile(rf"gammadir\({_NUMBER},{_NUMBER},{_NUMBER},{_NUMBER}\)$"),
}
_PARAMETER_RANGE = (1e-6, 1e6)


def parse_prior(text: str, n_edges: int, internal: torch.Tensor | None = None,
                dtype: torch.dtype = torch.float64, device=None) -> Distribution:
    """A branch-length prior over ``[*batch, n_edges]`` from its string.

    Args:
        text: ``exp(RATE)``, ``gamma(SHAPE,RATE)`` or ``gammadir(aT,bT,a,c)``.
        n_edges: number of branches.
        internal: ``[n_edges]`` bool, which branches are internal
            (:attr:`~phylovi.trees.Topology.internal_edges`); needed for gammadir's c
            unless c = 1.

    Raises:
        ConfigError: an unknown or malformed prior, or a parameter outside [1e-6, 1e6].
    """
    if isinstance(n_edges, bool) or not isinstance(n_edges, numbers.Integral) or n_edges < 1:
        raise ConfigError(f"a prior needs a positive number of branches, got {n_edges!r}")
    if not isinstance(text, str):
        raise ConfigError(f"a prior is given by its string (e.g. 'exp(10)'), got {text!r}")
    compact = text.strip().lower().replace(" ", "")
    for name, pattern in _PATTERNS.items():
        match = pattern.match(compact)
        if match:
            values = [float(v) for v in match.groups()]
            break
    else:
        raise ConfigError(f"unknown prior {text!r}; expected exp(RATE), gamma(SHAPE,RATE) "
                          "or gammadir(aT,bT,a,c)")
    # Beyond this range a prior's mean branch length is absurd and its density overflows.
    if any(not _PARAMETER_RANGE[0] <= v <= _PARAMETER_RANGE[1] for v in values):
        raise ConfigError(f"every parameter of the prior {text!r} must be from "
                          f"{_PARAMETER_RANGE[0]:g} to {_PARAMETER_RANGE[1]:g}")
    ones = torch.ones(n_edges, dtype=dtype, device=device)
    if name == "exp":
        return Independent(Exponential(values[0] * ones), 1)
    if name == "gamma":
        return Independent(Gamma(values[0] * ones, values[1] * ones), 1)
    shape, rate, alpha, ratio = values
    concentration = alpha * ones
    if internal is None and ratio != 1:  # c would be ignored without a word
        raise ConfigError(f"the prior {text!r} weights internal branches by c = {ratio:g}: "
                          "say which they are (internal=topology.internal_edges)")
    if internal is not None:
        concentration = torch.where(torch.as_tensor(internal, device=ones.device),
                                    alpha * ratio * ones, concentration)
    return CompoundDirichlet(shape, rate, concentration)
