"""Rate heterogeneity across sites: discrete Gamma (+G) and invariable sites (+I)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy import special


def discrete_gamma_rates(shape: torch.Tensor, n_categories: int) -> torch.Tensor:
    """Mean rates of ``n_categories`` equal-probability Gamma categories (Yang 1994).

    Each category's rate is the mean of a unit-mean Gamma(shape, shape) over its
    quantile interval (IQ-TREE's and MrBayes' default), so the rates average
    to one. Differentiable in ``shape``.

    Args:
        shape: scalar tensor, the Gamma shape alpha > 0.
        n_categories: K >= 1.

    Returns:
        ``[n_categories]`` rates, ascending, with ``shape``'s dtype and device.
    """
    return _DiscreteGammaRates.apply(shape, n_categories)


@functools.lru_cache(maxsize=256)  # the quantiles cost ~0.1 ms; shapes repeat
def _mean_rates(alpha: float, k: int) -> np.ndarray:
    if k == 1:
        return np.ones(1)
    # The quantiles of Gamma(a, 1) (a times those of the unit-mean Gamma(a, a)): the same
    # function as scipy.stats.gamma.ppf, without scipy.stats' half-second import.
    cuts = special.gammaincinv(alpha, np.arange(1, k) / k)
    # The mean of Gamma(a, a) below x / a is the Gamma(a + 1, 1) CDF at x.
    below = special.gammainc(alpha + 1.0, np.concatenate([[0.0], cuts, [np.inf]]))
    rates = k * np.diff(below)
    rates.flags.writeable = False  # shared by the cache
    return rates


class _DiscreteGammaRates(torch.autograd.Function):
    # scipy has the Gamma quantile torch lacks; its derivative in the shape is
    # taken by a central difference, accurate to about 1e-9 relative.

    @staticmethod
    def forward(ctx, shape, n_categories):
        alpha = float(shape.detach().cpu())
        ctx.alpha, ctx.k = alpha, n_categories
        return torch.tensor(_mean_rates(alpha, n_categories), dtype=shape.dtype,
                               device=shape.device)

    @staticmethod
    def backward(ctx, grad):
        h = 1e-5 * max(ctx.alpha, 1e-3)
        slope = (_mean_rates(ctx.alpha + h, ctx.k) - _mean_rates(ctx.alpha - h, ctx.k)) / (2 * h)
        slope = torch.as_tensor(slope, dtype=grad.dtype, device=grad.device)
        return (grad * slope).sum(), None


class SiteRates:
    """Rate categories: +G with ``n_categories`` classes and/or +I.

    Args:
        n_categories: number of Gamma categories (1 means no +G).
        shape: Gamma shape alpha (tensor or float); ignored when ``n_categories`` is 1.
        pinv: proportion of invariable sites in [0, 1) (tensor or float).

    With +I, the variable sites' rates are divided by ``1 - pinv`` so that the
    mean rate over all sites stays one (IQ-TREE and MrBayes do the same).
    """

    def __init__(self, n_categories: int = 1, shape=None, pinv=0.0):
        self.n_categories = n_categories
        self.shape = _tensor(1.0 if shape is None else shape)
        self.pinv = _tensor(pinv)

    @property
    def has_gamma(self) -> bool:
        return self.n_categories > 1

    @property
    def has_invariant(self) -> bool:
        return self.pinv.requires_grad or float(self.pinv) > 0

    def rates(self, dtype=None, device=None) -> torch.Tensor:
        """``[n_categories]`` relative rates of the variable-site categories."""
        rates = (discrete_gamma_rates(self.shape, self.n_categories) if self.has_gamma
                 else torch.ones(1, dtype=self.shape.dtype, device=self.shape.device))
        if self.has_invariant:
            rates = rates / (1 - self.pinv)
        return rates.to(dtype=dtype, device=device)

    def weights(self, dtype=None, device=None) -> torch.Tensor:
        """``[n_categories]`` probabilities of the categories (equal, summing to one)."""
        return torch.full((self.n_categories,), 1.0 / self.n_categories, dtype=dtype,
                          device=device)


def _tensor(value) -> torch.Tensor:
    return value if torch.is_tensor(value) else torch.tensor(float(value), dtype=torch.float64)
