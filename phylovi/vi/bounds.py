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
                        n_samples: int, batch: int = 1000) -> tuple[float, float]:
    """log p(y) estimated as ``log mean w`` over ``n_samples`` draws of q, and its standard error.

    The standard error is the delta-method one, ``sd(w) / (sqrt(n) mean(w))``.
    """
    log_w = []
    with torch.no_grad():
        for start in range(0, n_samples, batch):
            draws = q.sample((min(batch, n_samples - start),))
            log_w.append(log_joint(draws) - q.log_prob(draws))
    log_w = torch.cat(log_w).double()
    top = log_w.max()
    w = torch.exp(log_w - top)
    estimate = float(top + torch.log(w.mean()))
    std_error = float(w.std() / (math.sqrt(n_samples) * w.mean())) if n_samples > 1 else math.inf
    return estimate, std_error
