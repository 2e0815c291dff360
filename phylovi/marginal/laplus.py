"""Laplus: the candidate's formula with independent univariate densities matched at the MAP.

log Z ≈ log p(y, θ̂) - Σ_i log q_i(θ̂_i), each q_i matched to the mode θ̂_i and
the curvature f''_i = ∂² log p(y, θ) / ∂θ_i² there (Fourment et al. 2020;
physher ``laplace.c``). A branch collapsed to zero (θ̂ < 1e-6 or f'' ≥ 0)
gets the exponential whose log density has the posterior's slope f' there:
the study fits a gamma shape in [0.001, 1] to the log-posterior profile on
[θ̂, 0.5] instead, but that fit is driven by the profile far beyond the
branch's posterior mass, lands near shape 0.001 on DS1, and a density that
diverges at θ̂ ≈ 0 then pulls the estimate 13.6 nats low (the exponential is
0.43 nats from 1-D quadrature of that branch; see docs/marginal.md). A tiny
but interior mode with a wide gamma keeps the study's mode-preserving profile
fit (:func:`_profile_gamma`).

Where the prior's density diverges at zero (a gamma prior of shape below 1, say),
the MAP of a collapsed branch is no mode at all and f' there is unbounded, so
neither fit applies; such a branch gets its conditional density itself,
normalised by 1-D quadrature (:class:`BranchProfile`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
import torch

from phylovi.marginal.posterior import Posterior

FAMILIES = ("gamma", "lognormal", "betaprime")


def laplus_densities(posterior: Posterior, theta: torch.Tensor, first: torch.Tensor,
                     second: torch.Tensor, family: str) -> list:
    """One frozen ``scipy.stats`` density per branch, matched at the MAP ``theta``.

    Args:
        theta: ``[n_edges]`` MAP branch lengths.
        first, second: ``[n_edges]`` f' and f'' of log p(y, θ) at ``theta``.
        family: ``gamma``, ``lognormal`` or ``betaprime``.
    """
    densities = []
    for i, (t, d1, d2) in enumerate(zip(theta.tolist(), first.tolist(), second.tolist())):
        gamma_ok = t >= 1e-6 and d2 < 0
        if family == "gamma" or not gamma_ok:
            if gamma_ok:
                rate = -d2 * t
                density = scipy.stats.gamma(rate * t + 1, scale=1 / rate)
                if density.var() > 0.1 and t < 1e-4:
                    density = _profile_gamma(posterior, theta, i, rate, keep_mode=True)
            elif d1 < 0 and (shape := shape_at_zero(posterior, theta, i)) < 1 - 1e-3:
                density = BranchProfile(posterior, theta, i, shape)
            elif d1 < 0:
                # A collapsed branch: the exponential with the profile's slope at zero.
                density = scipy.stats.gamma(1.0, scale=1 / -d1)
            else:
                density = _profile_gamma(posterior, theta, i, max(abs(d1), 1e-3), keep_mode=False)
            densities.append(density)
        elif family == "lognormal":
            sigma = math.sqrt(-1 / (d2 * t * t))
            mu = math.log(t) + sigma**2
            densities.append(scipy.stats.lognorm(sigma, scale=math.exp(mu)) if mu <= 5
                             else laplus_densities(posterior, theta, first, second, "gamma")[i])
        else:
            a = 1 - d2 * t * t * (t + 1)
            b = -d2 * t * (t + 1) - 1
            if b <= 0:
                a, b = 1.0, abs(d1) - 1
            densities.append(scipy.stats.betaprime(a, b) if b > 0
                             else laplus_densities(posterior, theta, first, second, "gamma")[i])
    return densities


def shape_at_zero(posterior: Posterior, theta: torch.Tensor, i: int) -> float:
    """The k of the posterior's θ^(k-1) behaviour as branch ``i`` goes to 0 (the others at
    ``theta``): 1 + the log-posterior's slope in log θ there, where the likelihood is flat
    and only the prior bends it (k = 1 for an exponential prior, its shape for a gamma)."""
    low, high = _along_branch(posterior, theta, i, np.array([1e-30, 1e-20]))
    return 1 + (high - low) / math.log(1e10)


def _along_branch(posterior: Posterior, theta: torch.Tensor, i: int,
                  lengths: np.ndarray) -> np.ndarray:
    """log p(y, θ) with branch ``i`` at each of ``lengths`` and the others at ``theta``."""
    points = theta.detach().repeat(len(lengths), 1)
    points[:, i] = torch.as_tensor(lengths, dtype=points.dtype)
    with torch.no_grad():
        return posterior.log_joint(points).double().numpy()


class BranchProfile:
    """The conditional density of branch ``i`` (the others at the MAP), normalised by
    quadrature over log θ in [1e-40, 10], for a branch whose prior diverges at zero.

    ``logpdf`` is the normalised profile (so the candidate's formula counts this branch
    exactly, given the others); ``proposal`` is a gamma with the profile's mean, its
    shape the smaller of the moment match and ``shape_at_zero`` (the profile's own,
    :func:`shape_at_zero`), so that importance weights stay bounded there.
    """

    def __init__(self, posterior: Posterior, theta: torch.Tensor, i: int, shape_at_zero: float,
                 n_points: int = 2000):
        self.log_lengths = np.linspace(math.log(1e-40), math.log(10.0), n_points)
        self.profile = _along_branch(posterior, theta, i, np.exp(self.log_lengths))
        integrand = self.profile + self.log_lengths  # over log θ
        step = self.log_lengths[1] - self.log_lengths[0]
        self.log_normaliser = float(scipy.special.logsumexp(integrand) + math.log(step))
        weights = np.exp(integrand - integrand.max())
        weights /= weights.sum()
        lengths = np.exp(self.log_lengths)
        mean = float(weights @ lengths)
        variance = float(weights @ (lengths - mean) ** 2)
        shape = min(mean * mean / variance, shape_at_zero)
        self.proposal = scipy.stats.gamma(shape, scale=mean / shape)

    def logpdf(self, length: float) -> float:
        log_length = math.log(max(length, 1e-40))
        return float(np.interp(log_length, self.log_lengths, self.profile)) - self.log_normaliser


def _profile_gamma(posterior: Posterior, theta: torch.Tensor, i: int, rate: float,
                   keep_mode: bool):
    """A gamma for branch ``i`` whose log density best matches the log-posterior profile.

    The profile is log p(y, θ) along branch ``i`` (the others at the MAP) at 10
    log-spaced points in [θ̂_i, 0.5], shifted by its maximum; the gamma's shape
    is fitted by least squares in [0.001, 1] with the given rate, or, with
    ``keep_mode``, in [1, 100] with the rate that keeps the mode at θ̂_i.
    (physher compares densities rather than log densities here; phylovi
    compares log densities, which is what the least squares intends.)
    """
    t = max(float(theta[i]), 1e-8)
    grid = np.geomspace(t, 0.5, 10)
    profile = _along_branch(posterior, theta, i, grid)
    profile = profile - profile.max()

    def make(shape: float):
        r = (shape - 1) / t if keep_mode else rate
        return scipy.stats.gamma(shape, scale=1 / max(r, 1e-12))

    def loss(shape: float) -> float:
        log_density = make(shape).logpdf(grid)
        return float(np.sum((log_density - log_density.max() - profile) ** 2))

    bounds = (1.0 + 1e-6, 100.0) if keep_mode else (1e-3, 1.0)
    shape = scipy.optimize.minimize_scalar(loss, bounds=bounds, method="bounded").x
    return make(shape)


def laplus_log_marginal(log_joint_at_map: float, theta: torch.Tensor, densities) -> float:
    """log p(y, θ̂) - Σ log q_i(θ̂_i)."""
    return log_joint_at_map - float(sum(d.logpdf(t) for d, t in zip(densities, theta.tolist())))
