"""Many tempered chains at once: power posteriors L^β p(b) and the generalised-stepping-stone path.

Each chain is a row of one batch for the kernel (see :mod:`phylovi.marginal.mcmc`),
so a whole 50-temperature ladder costs one batched call per leapfrog step.
Chains sample log branch lengths (the Jacobian is part of the target), start
at the MAP like the study's, and adapt during warm-up: a diagonal mass
matrix, first from the curvature at the MAP, then from the warm-up draws, and
a step size tuned towards 80% acceptance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution

from phylovi.marginal import mcmc
from phylovi.marginal.optimize import diagonal_hessian, gradient
from phylovi.marginal.posterior import Posterior


_SMALLEST_START = 1e-10


@dataclass
class ChainSamples:
    """Draws of every chain after warm-up.

    Attributes:
        betas: ``[C]`` temperatures.
        log_likelihood, log_prior: ``[C, S]`` at each draw.
        log_reference: ``[C, S]`` log r(b) for the GSS path, else None.
        lengths: ``[C, S, n_edges]`` branch lengths, if kept.
        ess: ``[C]`` effective sample size of the log-likelihood.
        acceptance: ``[C]`` mean acceptance probability.
    """

    betas: torch.Tensor
    log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    log_reference: torch.Tensor | None
    lengths: torch.Tensor | None
    ess: torch.Tensor
    acceptance: torch.Tensor


def run_chains(posterior: Posterior, betas: torch.Tensor, start: torch.Tensor, n_samples: int,
               n_warmup: int, generator: torch.Generator, reference: Distribution | None = None,
               n_leapfrog: int = 5, keep_lengths: bool = False) -> ChainSamples:
    """Sample ``C`` chains, chain ``c`` targeting p(y|b)^β_c p(b) (or, with a
    ``reference`` r, (p(y|b) p(b))^β_c r(b)^(1-β_c)).

    Args:
        betas: ``[C]`` temperatures in [0, 1].
        start: ``[n_edges]`` starting branch lengths (the MAP).
        n_samples, n_warmup: draws kept and warm-up iterations per chain.
        generator: the source of randomness.
        reference: a distribution over ``[*batch, n_edges]`` for GSS.
        n_leapfrog: leapfrog steps per HMC iteration.
        keep_lengths: also return the draws themselves.
    """
    dtype = posterior.dtype
    betas = torch.as_tensor(betas, dtype=dtype)
    n_chains = len(betas)
    # A MAP branch collapsed to ~1e-14 sits where the sampler treats log lengths as
    # diverged (|log b| >= 30); start such branches at 1e-10 instead.
    start = start.clamp(min=_SMALLEST_START)

    def log_density(x: torch.Tensor):
        lengths = x.exp()
        log_like = posterior.log_likelihood(lengths)
        log_prior = posterior.log_prior(lengths)
        jacobian = x.sum(-1)
        if reference is None:
            value = betas * log_like + log_prior + jacobian
            recorded = torch.stack([log_like, log_prior], -1)
        else:
            log_ref = reference.log_prob(lengths)
            value = betas * (log_like + log_prior) + (1 - betas) * log_ref + jacobian
            recorded = torch.stack([log_like, log_prior, log_ref], -1)
        return value, recorded

    inverse_mass = _initial_inverse_mass(posterior, start, betas, reference)
    step_size = torch.full((n_chains,), 0.5 / math.sqrt(posterior.n_edges), dtype=dtype)
    state = mcmc.init(start.log().expand(n_chains, -1).clone(), log_density, step_size,
                      inverse_mass)
    warm_positions = []
    for t in range(n_warmup):
        state, info = mcmc.step(state, log_density, n_leapfrog, generator)
        adapted = state.step_size * torch.exp((info.acceptance - 0.8) / math.sqrt(t + 1))
        state = state._replace(step_size=adapted)
        if n_warmup // 4 <= t < n_warmup // 2:
            warm_positions.append(state.position)
        if t == n_warmup // 2 - 1 and len(warm_positions) > 10:
            variance = torch.stack(warm_positions).var(0).clamp(min=1e-8)
            state = state._replace(inverse_mass=variance)
    recorded, lengths, acceptance = [], [], torch.zeros(n_chains, dtype=dtype)
    for _ in range(n_samples):
        state, info = mcmc.step(state, log_density, n_leapfrog, generator)
        recorded.append(state.recorded)
        acceptance += info.acceptance
        if keep_lengths:
            lengths.append(state.position.exp())
    values = torch.stack(recorded, 1)  # [C, S, k]
    return ChainSamples(
        betas=betas, log_likelihood=values[..., 0], log_prior=values[..., 1],
        log_reference=values[..., 2] if reference is not None else None,
        lengths=torch.stack(lengths, 1) if keep_lengths else None,
        ess=mcmc.effective_sample_size(values[..., 0]), acceptance=acceptance / max(n_samples, 1))


def _initial_inverse_mass(posterior: Posterior, start: torch.Tensor, betas: torch.Tensor,
                          reference: Distribution | None) -> torch.Tensor:
    """Diagonal of the inverse curvature of each chain's target in log space, at ``start``.

    In log space, d²/dx² f(e^x) = b² f'' + b f'.
    """
    b = start.detach()

    def curvature(function):
        return b**2 * diagonal_hessian(function, b) + b * gradient(function, b.unsqueeze(0))[0]

    like = curvature(posterior.log_likelihood)
    prior = curvature(posterior.log_prior)
    if reference is None:
        precision = -(betas[:, None] * like + prior)
    else:
        ref = curvature(reference.log_prob)
        precision = -(betas[:, None] * (like + prior) + (1 - betas[:, None]) * ref)
    return 1 / precision.clamp(min=1e-2)
