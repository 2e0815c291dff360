"""Many tempered chains at once: power posteriors L^β p(b) and the generalised-stepping-stone path.

Each chain is a row of one batch for the kernel (see :mod:`phylovi.marginal.mcmc`),
so a whole 50-temperature ladder costs one batched call per leapfrog step.
Chains sample log branch lengths (the Jacobian is part of the target), start
at the MAP like the study's, and adapt during warm-up: a diagonal mass
matrix, first from the curvature at the MAP, then from the warm-up draws, and
a step size tuned by dual averaging towards 65% acceptance and jittered by
up to ±20% at every transition.

On a ladder, neighbouring temperatures also exchange states after every
transition (replica exchange, alternating even and odd pairs). The
exchanges cost no likelihood evaluations and carry states that mixed at
low temperatures up the ladder: on DS2's first tree they doubled the
effective sample size of the log-likelihood at the same cost, and so halved
the variance of stepping stone and path sampling.
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
# Lower than the usual 0.8: on DS1's ladder (200 warm-up iterations, 5 leapfrog
# steps) 0.65 gave about 30% more effective draws of the log-likelihood per
# gradient than 0.8.
TARGET_ACCEPTANCE = 0.65


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
        exchange: ``[C-1]`` how often neighbours ``(c, c+1)`` exchanged states when
            asked (every other iteration); zeros when all temperatures are equal.
    """

    betas: torch.Tensor
    log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    log_reference: torch.Tensor | None
    lengths: torch.Tensor | None
    ess: torch.Tensor
    acceptance: torch.Tensor
    exchange: torch.Tensor


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
            return log_like, log_prior + jacobian, torch.stack([log_like, log_prior], -1)
        log_ref = reference.log_prob(lengths)
        return (log_like + log_prior - log_ref, log_ref + jacobian,
                torch.stack([log_like, log_prior, log_ref], -1))

    exchange = bool((betas != betas[0]).any())
    exchanged = torch.zeros(max(n_chains - 1, 0), dtype=dtype)
    iteration = 0

    def transition(state):
        """One jittered HMC step of every chain, then (on a ladder) one even-odd exchange."""
        nonlocal iteration
        new, info = mcmc.step(mcmc.jittered(state, generator), log_density, n_leapfrog, generator)
        new = new._replace(step_size=state.step_size)
        if exchange:
            parity = iteration % 2
            new, accepted = mcmc.swap(new, parity, generator)
            exchanged[parity::2] += accepted.to(dtype)
        iteration += 1
        return new, info

    inverse_mass = _initial_inverse_mass(posterior, start, betas, reference)
    step_size = torch.full((n_chains,), posterior.n_edges ** -0.25, dtype=dtype)
    state = mcmc.init(start.log().expand(n_chains, -1).clone(), log_density, betas, step_size,
                      inverse_mass)
    adaptation = mcmc.StepSizeAdaptation(step_size, TARGET_ACCEPTANCE)
    # Warm-up: the first quarter tunes the step size to the curvature at the MAP;
    # the middle half's draws then give the mass matrix; the last quarter retunes
    # the step size to it.
    mass_window = range(n_warmup // 4, 3 * n_warmup // 4)
    warm_positions = []
    for t in range(n_warmup):
        state, info = transition(state)
        state = state._replace(step_size=adaptation.update(info.acceptance))
        if t in mass_window:
            warm_positions.append(state.position)
        if t == mass_window.stop - 1 and len(warm_positions) > 10:
            state = state._replace(inverse_mass=_regularised_variance(torch.stack(warm_positions)))
            adaptation.restart(state.step_size)
    if n_warmup > 0:
        state = state._replace(step_size=adaptation.final())
    exchanged.zero_()
    recorded, lengths, acceptance = [], [], torch.zeros(n_chains, dtype=dtype)
    for _ in range(n_samples):
        state, info = transition(state)
        recorded.append(state.recorded)
        acceptance += info.acceptance
        if keep_lengths:
            lengths.append(state.position.exp())
    values = torch.stack(recorded, 1)  # [C, S, k]
    return ChainSamples(
        betas=betas, log_likelihood=values[..., 0], log_prior=values[..., 1],
        log_reference=values[..., 2] if reference is not None else None,
        lengths=torch.stack(lengths, 1) if keep_lengths else None,
        ess=mcmc.effective_sample_size(values[..., 0]), acceptance=acceptance / max(n_samples, 1),
        exchange=exchanged / max(n_samples / 2, 1))


def _regularised_variance(positions: torch.Tensor) -> torch.Tensor:
    """Per-chain variance of warm-up positions ``[T, C, E]``, shrunk towards 1e-3 like Stan's
    (a few correlated draws underestimate it)."""
    n = positions.shape[0]
    return (n / (n + 5)) * positions.var(0) + 1e-3 * 5 / (n + 5)


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
