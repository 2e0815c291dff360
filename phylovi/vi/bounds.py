"""Monte Carlo bounds on log p(y) and the losses whose gradients estimate theirs.

- ELBO: ``mean_k log w_k`` with ``log w = log p(y, b) - log q(b)``, ``b ~ q``.
- K-sample importance-weighted bound (Burda et al. 2016):
  ``log mean_k w_k``; it rises with K towards log p(y).

Gradients are pathwise (``rsample``: torch's implicit reparameterisation for
Gamma and Beta-prime) or, for the ELBO, the score-function estimator with a
leave-one-out baseline (each particle's baseline is the mean of the others).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributions import Distribution

from phylovi.errors import ConfigError

BOUNDS = ("elbo", "iwae")
ESTIMATORS = ("pathwise", "score")


def bound_loss(q: Distribution, log_joint: Callable[[torch.Tensor], torch.Tensor],
               n_particles: int, bound: str = "elbo", estimator: str = "pathwise"
               ) -> tuple[torch.Tensor, float]:
    """A loss to minimise and the bound's Monte Carlo value.

    Args:
        q: the variational distribution over ``[n_edges]``.
        log_joint: ``[K, n_edges] -> [K]``, log p(y, b).
        n_particles: ``K`` draws per step.
        bound: ``elbo`` or ``iwae``.
        estimator: ``pathwise`` or ``score`` (ELBO only, ``K >= 2``).
    """
    if bound not in BOUNDS or estimator not in ESTIMATORS:
        raise ConfigError(f"unknown bound {bound!r} or gradient estimator {estimator!r}")
    if estimator == "pathwise":
        draws = q.rsample((n_particles,))
        log_w = log_joint(draws) - q.log_prob(draws)
        value = log_w.mean() if bound == "elbo" else torch.logsumexp(log_w, 0) - math.log(n_particles)
        return -value, float(value.detach())
    if bound != "elbo":
        raise ConfigError("score-function gradients are implemented for the ELBO only")
    if n_particles < 2:
        raise ConfigError("the leave-one-out baseline needs at least 2 particles")
    draws = q.sample((n_particles,))
    log_q = q.log_prob(draws)
    # The draws carry no gradient, so log p(y, b) differentiates only the free model
    # parameters (kappa, rates, ...), whose ELBO gradient is E_q[d log p(y, b) / d phi].
    joint = log_joint(draws)
    with torch.no_grad():
        f = joint - log_q
        baseline = (f.sum() - f) / (n_particles - 1)
    surrogate = ((f - baseline) * log_q).mean() + joint.mean()
    return -surrogate, float(f.mean())


def importance_sampling(q: Distribution, log_joint: Callable[[torch.Tensor], torch.Tensor],
                        n_samples: int, batch: int = 1000) -> tuple[float, float, float]:
    """log p(y) estimated as ``log mean w`` over ``n_samples`` draws of q, its standard
    error, and the weights' :func:`pareto_k`.

    The standard error is the delta-method one, ``sd(w) / (sqrt(n) mean(w))``.
    """
    log_w = []
    with torch.no_grad():
        for start in range(0, n_samples, batch):
            draws = q.sample((min(batch, n_samples - start),))
            log_w.append(log_joint(draws) - q.log_prob(draws))
    return log_mean_exp_with_error(torch.cat(log_w).double())


def log_mean_exp_with_error(log_w: torch.Tensor) -> tuple[float, float, float]:
    """``log mean exp(log_w)``, its delta-method standard error (inf from one draw) and
    the weights' :func:`pareto_k`."""
    top = log_w.max()
    w = torch.exp(log_w - top)
    estimate = float(top + torch.log(w.mean()))
    if len(w) < 2:
        return estimate, math.inf, math.nan
    return estimate, float(w.std() / (math.sqrt(len(w)) * w.mean())), pareto_k(log_w)


def pareto_k(log_w: torch.Tensor) -> float:
    """The shape k of a generalised Pareto fitted to the largest importance weights
    (Vehtari, Simpson, Gelman, Yao and Gabry 2024, "Pareto smoothed importance sampling").

    The tail is the largest ``min(n / 5, 3 sqrt(n))`` weights, as theirs, fitted by
    maximum likelihood (scipy's ``genpareto``) to their excess over the next weight.
    The weights have finite variance only for k < 1/2, and above
    :func:`pareto_k_threshold` the estimate (and its standard error, which assumes a
    finite variance) cannot be trusted at this sample size. NaN when there are too
    few weights to fit (under 50), -inf when the largest are all equal.
    """
    from scipy.stats import genpareto

    log_w = log_w.detach().double().flatten()
    log_w = log_w[torch.isfinite(log_w)]
    n = len(log_w)
    tail = int(min(n / 5, 3 * math.sqrt(n)))
    if n < 50 or tail < 5:
        return math.nan
    largest = torch.topk(log_w, tail + 1).values  # descending
    scaled = torch.exp(largest - largest[0]).numpy()  # the largest weight is 1
    excess = scaled[:-1] - scaled[-1]
    if not excess.max() > 0:  # the largest weights are equal: as light a tail as can be
        return -math.inf
    shape, _, _ = genpareto.fit(excess / excess.max(), floc=0)
    return float(shape)


def pareto_k_threshold(n_samples: int) -> float:
    """The largest :func:`pareto_k` at which ``n_samples`` importance weights give a
    usable estimate, ``min(1 - 1 / log10(n), 0.7)`` (Vehtari et al. 2024)."""
    return min(1 - 1 / math.log10(max(n_samples, 11)), 0.7)
