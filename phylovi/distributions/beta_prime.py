"""The Beta-prime (inverted Beta) distribution, reparameterised through two Gamma draws."""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Gamma, constraints
from torch.distributions.utils import broadcast_all


class BetaPrime(Distribution):
    r"""Beta-prime distribution: the law of ``G1 / G0`` for independent Gamma draws.

    .. math:: p(x) = x^{a - 1} (1 + x)^{-a - b} / B(a, b), \quad x > 0

    ``rsample`` divides two :class:`torch.distributions.Gamma` ``rsample``
    draws, so its gradients are torch's implicit reparameterisation
    gradients (Figurnov, Mohamed & Mnih 2018); phylovi writes none of its own.

    Args:
        concentration1: ``a`` > 0, the shape of the numerator.
        concentration0: ``b`` > 0, the shape of the denominator.
    """

    arg_constraints = {"concentration1": constraints.positive,
                       "concentration0": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, concentration1, concentration0, validate_args=None):
        self.concentration1, self.concentration0 = broadcast_all(concentration1, concentration0)
        super().__init__(self.concentration1.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BetaPrime, _instance)
        batch_shape = torch.Size(batch_shape)
        new.concentration1 = self.concentration1.expand(batch_shape)
        new.concentration0 = self.concentration0.expand(batch_shape)
        super(BetaPrime, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        b = self.concentration0
        return torch.where(b > 1, self.concentration1 / (b - 1), torch.full_like(b, torch.inf))

    @property
    def mode(self):
        a, b = self.concentration1, self.concentration0
        return torch.where(a >= 1, (a - 1) / (b + 1), torch.zeros_like(a))

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        value = a * (a + b - 1) / ((b - 2) * (b - 1) ** 2)
        return torch.where(b > 2, value, torch.full_like(b, torch.inf))

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        ones = torch.ones_like(self.concentration1)
        numerator = Gamma(self.concentration1, ones).rsample(sample_shape)
        denominator = Gamma(self.concentration0, ones).rsample(sample_shape)
        tiny = torch.finfo(numerator.dtype).tiny
        return (numerator.clamp(min=tiny) / denominator.clamp(min=tiny)).expand(shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration1, self.concentration0
        log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
        return (a - 1) * torch.log(value) - (a + b) * torch.log1p(value) - log_beta

    def entropy(self):
        a, b = self.concentration1, self.concentration0
        log_beta = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
        return (log_beta - (a - 1) * torch.digamma(a) - (b + 1) * torch.digamma(b)
                + (a + b) * torch.digamma(a + b))
