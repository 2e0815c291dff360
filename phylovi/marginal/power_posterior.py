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

The ladder estimators' default kept draws come from independence samplers
instead (:func:`run_independent_chains`, :func:`run_reference_chains`), whose
proposals every chain shares: one likelihood evaluation gives every
temperature a Metropolis-Hastings step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Distribution, Gamma, Independent

from phylovi.marginal import mcmc
from phylovi.marginal.optimize import diagonal_hessian, gradient
from phylovi.marginal.posterior import Posterior


_SMALLEST_START = 1e-10
# Lower than the usual 0.8: on DS1's ladder (200 warm-up iterations, 5 leapfrog
# steps) 0.65 gave about 30% more effective draws of the log-likelihood per
# gradient than 0.8.
TARGET_ACCEPTANCE = 0.65
# The share of an independence proposal drawn from the path's start (prior or reference).
DEFENSIVE_WEIGHT = 0.05


@dataclass
class ChainSamples:
    """Draws of every chain after warm-up.

    Attributes:
        betas: ``[C]`` temperatures.
        recorded: ``[C, S, k]`` the recorded values at each draw: log-likelihood, log
            prior and, on the GSS path, log r(b) (also as ``log_likelihood``,
            ``log_prior`` and ``log_reference``, ``[C, S]``, the last None off that path).
        start: ``[C, k]`` the recorded values of the state each chain started from.
        lengths: ``[C, S, n_edges]`` branch lengths, if kept.
        ess: ``[C]`` effective sample size of the log-likelihood.
        acceptance: ``[C]`` mean acceptance probability.
        exchange: ``[C-1]`` how often neighbours ``(c, c+1)`` exchanged states when
            asked (every other iteration); zeros when all temperatures are equal, and
            for the samplers on shared proposals, which do not exchange.
        proposed: ``[C, S, k]`` the recorded values of each iteration's proposal.
        move_probability: ``[C, S]`` the acceptance probability of each iteration's
            Metropolis-Hastings step.
    """

    betas: torch.Tensor
    recorded: torch.Tensor
    start: torch.Tensor
    lengths: torch.Tensor | None
    ess: torch.Tensor
    acceptance: torch.Tensor
    exchange: torch.Tensor
    proposed: torch.Tensor
    move_probability: torch.Tensor

    @property
    def log_likelihood(self) -> torch.Tensor:
        return self.recorded[..., 0]

    @property
    def log_prior(self) -> torch.Tensor:
        return self.recorded[..., 1]

    @property
    def log_reference(self) -> torch.Tensor | None:
        return self.recorded[..., 2] if self.recorded.shape[-1] > 2 else None

    @property
    def before(self) -> torch.Tensor:
        """``[C, S, k]`` the recorded values of each iteration's state before its
        Metropolis-Hastings step: the previous iteration's draw (the start for the first)."""
        return torch.cat([self.start[:, None], self.recorded[:, :-1]], 1)

    def expected(self, function) -> torch.Tensor:
        """``[C, S]``: per chain and iteration, an estimate of the chain's E[f], with ``f``
        mapping recorded values ``[C, S, k]`` to ``[C, S]``.

        Each is the Metropolis-Hastings step's expectation over its accept-or-reject
        coin, α f(proposal) + (1 - α) f(state before), rather than f of the state it
        landed in (Rao-Blackwellisation, as in Casella & Robert 1996): the same
        draws, less noise. On DS1's first tree it cut the variance of stepping
        stone by a fifth (docs/marginal-history.md, "Blocks of proposals").
        """
        alpha = self.move_probability
        stay = function(self.before)
        # A rejected proposal may be a diverged point whose values are not finite.
        return torch.where(alpha > 0, alpha * function(self.proposed) + (1 - alpha) * stay, stay)


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

    log_density = _log_density(posterior, reference)
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
    first = state.recorded
    recorded, proposed, alphas, lengths = [], [], [], []
    for _ in range(n_samples):
        state, info = transition(state)
        recorded.append(state.recorded)
        proposed.append(info.proposed)
        alphas.append(info.acceptance)
        if keep_lengths:
            lengths.append(state.position.exp())
    recorded, proposed, alphas = (torch.stack(v, 1) for v in (recorded, proposed, alphas))
    return _chain_samples(betas, recorded, first, proposed, alphas,
                          exchanged / max(n_samples / 2, 1),
                          torch.stack(lengths, 1) if keep_lengths else None)


def _chain_samples(betas, recorded, start, proposed, alphas, exchange,
                   lengths=None) -> ChainSamples:
    """ChainSamples from ``[C, S, k]`` recorded values (``[C, S]`` for ``alphas``)."""
    return ChainSamples(
        betas=betas, recorded=recorded, start=start, lengths=lengths,
        ess=mcmc.effective_sample_size(recorded[..., 0]), acceptance=alphas.mean(1),
        exchange=exchange, proposed=proposed, move_probability=alphas)


def _log_density(posterior: Posterior, reference: Distribution | None) -> mcmc.LogDensity:
    """Log branch lengths ``x`` -> (A, B, recorded): chain c targets β_c A + B.

    A power posterior has A = log p(y|b), B = log p(b) + Σ x (the Jacobian); the
    generalised-stepping-stone path has A = log p(y|b) + log p(b) - log r(b), B =
    log r(b) + Σ x. Recorded: log p(y|b), log p(b) and, on that path, log r(b).
    """
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

    return log_density


def run_independent_chains(posterior: Posterior, betas: torch.Tensor, start: torch.Tensor,
                           n_samples: int, n_warmup: int, n_adapt: int,
                           generator: torch.Generator, n_leapfrog: int = 2,
                           defensive: float = DEFENSIVE_WEIGHT) -> ChainSamples:
    """Like :func:`run_chains` on power posteriors, but the kept draws come from an
    independence sampler whose proposals every chain shares (GSS's path has its own,
    :func:`run_reference_chains`).

    Each proposal is drawn from the ladder's mixture q: with weight ``defensive`` the
    prior, otherwise, for a chain chosen at
    random, a product of gammas fitted (by moments, per branch) to that chain's earlier
    draws. Every chain then takes an independence Metropolis-Hastings step towards it,
    so one likelihood evaluation gives every temperature a step: on DS1's 42 trees,
    80,000 shared proposals gave stepping stone the spread over replicates of 10,000
    own proposals per chain (500,000 evaluations) with neighbours exchanging states,
    in a third of the time, though with a heavier tail (docs/marginal-history.md, "Shared
    proposals").

    Chains that share their proposals are no longer independent of each other, so
    they do not exchange states: an exchange move keeps each chain's target only when
    the pair's joint distribution is the product of the two.

    Each step's importance ratio target / q is at most L^β / (defensive x E_prior[L^β]).

    Stages: ``n_warmup`` iterations of :func:`run_chains` (its adaptation, then half of
    them as draws) give the first fit; ``n_adapt`` iterations in which each chain
    proposes from its own fit, and neighbours exchange states, give the final fit (fits
    from shared proposals were worse: a chain that rarely moves gives a narrow fit,
    which makes it move more rarely still); then ``n_samples`` shared proposals (one
    evaluation and one step of every chain each) are kept.
    """
    dtype = posterior.dtype
    betas = torch.as_tensor(betas, dtype=dtype)
    warm = run_chains(posterior, betas, start, max(n_warmup // 2, 2), n_warmup - n_warmup // 2,
                      generator, n_leapfrog=n_leapfrog, keep_lengths=True)
    log_density = _log_density(posterior, None)
    exchange = bool((betas != betas[0]).any())
    # Gamma draws use torch's global generator: seed a private copy of it from ours.
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        proposal = _GammaMixture(_fit_gammas(warm.lengths), posterior.prior, defensive)
        x = warm.lengths[:, -1].log()
        adapt = _independence_iterations(log_density, betas, proposal, x, log_density(x),
                                         n_adapt, generator, exchange)
        if n_adapt > 0:
            proposal = _GammaMixture(_fit_gammas(adapt.positions.exp()), posterior.prior,
                                     defensive)
        kept = _shared_steps(log_density, betas, proposal, adapt.x, adapt.current, n_samples,
                             generator)
    return _chain_samples(betas, kept.recorded, kept.start, kept.proposed, kept.alphas,
                          torch.zeros(max(len(betas) - 1, 0), dtype=dtype))


def run_reference_chains(posterior: Posterior, betas: torch.Tensor, reference: Independent,
                         n_samples: int, n_burn: int, generator: torch.Generator,
                         defensive: float = DEFENSIVE_WEIGHT) -> ChainSamples:
    """Chains on the generalised-stepping-stone path (p(y|b) p(b))^β r(b)^(1-β), all
    stepping towards shared proposals from the reference r itself.

    r, a product of gammas fitted to posterior draws, is meant to be close to the
    posterior, so it is a good independence proposal for every temperature of the
    path and no adaptation is needed. It is mixed at weight ``defensive`` with r
    widened (each gamma's variance times 4, the same mean), whose heavier tails keep
    target / proposal bounded where r's are too light. The chains start at one draw
    from the proposal; the first ``n_burn`` steps are discarded.
    """
    betas = torch.as_tensor(betas, dtype=posterior.dtype)
    log_density = _log_density(posterior, reference)
    proposal = _WidenedReference(reference, defensive)
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        x = proposal.sample_shared(1, generator).expand(len(betas), -1)
        burn = _shared_steps(log_density, betas, proposal, x, log_density(x), n_burn, generator)
        kept = _shared_steps(log_density, betas, proposal, burn.x, burn.current, n_samples,
                             generator)
    return _chain_samples(betas, kept.recorded, kept.start, kept.proposed, kept.alphas,
                          torch.zeros(max(len(betas) - 1, 0), dtype=posterior.dtype))


class _WidenedReference:
    """Shared proposal over log branch lengths: a product of gammas r, mixed at weight
    ``defensive`` with r widened (variance x 4, same mean)."""

    def __init__(self, reference: Independent, defensive: float):
        a, b = reference.base_dist.concentration, reference.base_dist.rate
        self.parts = Independent(Gamma(torch.stack([a, a / 4]), torch.stack([b, b / 4])), 1)
        self.log_mixing = torch.tensor([math.log1p(-defensive), math.log(defensive)], dtype=a.dtype)
        self.defensive = defensive

    def sample_shared(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, E]`` log branch lengths."""
        both = self.parts.sample((n,))  # [n, 2, E]
        widened = torch.rand(n, generator=generator, dtype=both.dtype) < self.defensive
        return _log_lengths(widened, both[:, 1], both[:, 0])

    def log_prob_shared(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, E]`` log branch lengths -> ``[N]`` log density (with the Jacobian)."""
        log_parts = self.parts.log_prob(x.exp()[:, None, :]) + self.log_mixing
        return torch.logsumexp(log_parts, -1) + x.sum(-1)


class _GammaMixture:
    """Independence proposal over log branch lengths ``[*, E]``: per chain ``c``, a product of
    gammas (batch ``[C, E]``) mixed with ``origin`` (one distribution for all chains) at
    weight ``defensive``; and the shared proposal, the average of all chains' ones."""

    def __init__(self, gammas: Gamma, origin: Distribution, defensive: float):
        self.gammas, self.origin, self.defensive = gammas, origin, defensive
        a, b = gammas.concentration, gammas.rate  # [C, E]
        # log Gamma(x; a, b) summed over branches is linear in (log x, x, 1), so every
        # chain's density at every point is one matrix product.
        self.coefficients = torch.cat(
            [a - 1, -b, (a * b.log() - torch.lgamma(a)).sum(-1, keepdim=True)], -1).T

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, C, E]`` log branch lengths, chain c's from its own proposal."""
        fitted = self.gammas.sample((n,))
        start = self.origin.sample(fitted.shape[:2])
        use_start = torch.rand(fitted.shape[:2], generator=generator,
                               dtype=fitted.dtype) < self.defensive
        return _log_lengths(use_start, start, fitted)

    def sample_shared(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, E]`` log branch lengths from the mixture of every chain's proposal (with
        equal weights)."""
        a, b = self.gammas.concentration, self.gammas.rate
        chain = torch.randint(len(a), (n,), generator=generator)
        fitted = Gamma(a[chain], b[chain]).sample()
        start = self.origin.sample((n,))
        use_start = torch.rand(n, generator=generator, dtype=fitted.dtype) < self.defensive
        return _log_lengths(use_start, start, fitted)

    def log_prob_shared(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, E]`` log branch lengths -> ``[N]``: that mixture's density there."""
        log_q = self.log_prob(x)
        return torch.logsumexp(log_q, -1) - math.log(log_q.shape[-1])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, E]`` log branch lengths -> ``[N, C]``: each chain's proposal density there
        (of the log lengths, so with the Jacobian)."""
        lengths = x.exp()
        features = torch.cat([x, lengths, torch.ones_like(x[:, :1])], -1)
        fitted = math.log1p(-self.defensive) + features @ self.coefficients
        start = math.log(self.defensive) + self.origin.log_prob(lengths)
        return torch.logaddexp(fitted, start[:, None]) + x.sum(-1, keepdim=True)


def _log_lengths(choose: torch.Tensor, chosen: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Log of ``chosen`` where ``choose`` (a mask over all but the last dimension) holds,
    of ``other`` elsewhere; lengths that underflowed to 0 become the smallest normal."""
    lengths = torch.where(choose[..., None], chosen, other)
    return lengths.clamp(min=torch.finfo(lengths.dtype).tiny).log()


@dataclass
class _IndependenceRun:
    x: torch.Tensor  # [C, E] the chains' last states
    current: tuple  # log_density's values at x
    positions: torch.Tensor | None  # [C, n, E] log lengths after each iteration


# Iterations whose proposals are drawn and evaluated together (a block), and rows per
# kernel call: blocks keep Python's per-iteration work out of the kernel's way.
_BLOCK_ITERATIONS = 200
_ROWS_PER_CALL = 250


def _independence_iterations(log_density: mcmc.LogDensity, betas: torch.Tensor,
                             proposal: _GammaMixture, x: torch.Tensor, current: tuple,
                             n_iterations: int, generator: torch.Generator,
                             exchange: bool) -> _IndependenceRun:
    """``n_iterations`` of independence Metropolis-Hastings for every chain, each followed
    (on a ladder) by one even-odd exchange round; the adaptation stage of
    :func:`run_independent_chains`, which fits its proposals to the positions.

    A proposal does not depend on the chain's state, so a block's proposals are drawn
    and evaluated first, in large kernel calls, and the accept and exchange decisions
    then only pick among them: a chain's state is an index into the block's pool, whose
    first ``C`` rows are the states it started from.
    """
    n_chains = len(betas)
    chains = torch.arange(n_chains)
    run = _IndependenceRun(x, current, None)
    positions = []
    for first in range(0, n_iterations, _BLOCK_ITERATIONS):
        n = min(_BLOCK_ITERATIONS, n_iterations - first)
        proposed = proposal.sample(n, generator).reshape(n * n_chains, -1)
        values = [log_density(rows) for rows in proposed.split(_ROWS_PER_CALL)]
        pool = torch.cat([run.x, proposed])
        tempered, base, record = (torch.cat([c, *(v[i] for v in values)])
                                  for i, c in enumerate(run.current))
        log_q = proposal.log_prob(pool)
        log_uniform = torch.rand(n, n_chains, generator=generator, dtype=betas.dtype).log()
        state = chains.clone()
        for t in range(n):
            new = (t + 1) * n_chains + chains
            log_ratio = (betas * (tempered[new] - tempered[state]) + base[new] - base[state]
                         - log_q[new, chains] + log_q[state, chains]).nan_to_num(nan=-math.inf)
            state = torch.where(log_uniform[t] < log_ratio, new, state)
            if exchange:
                parity = (first + t) % 2
                order, _ = mcmc.exchange_order(betas, tempered[state], parity, generator)
                state = state[order]
            positions.append(pool[state])
        run.x, run.current = pool[state], (tempered[state], base[state], record[state])
    if positions:
        run.positions = torch.stack(positions, 1)
    return run


@dataclass
class _SharedRun:
    x: torch.Tensor  # [C, E] the chains' last states
    current: tuple  # log_density's values at x
    # [C, S, k] recorded values after each step and at its proposal (a view of one
    # [S, k] tensor, as every chain has the same proposals); [C, k] those of the states
    # the chains started from; [C, S] acceptance probabilities
    recorded: torch.Tensor
    start: torch.Tensor
    proposed: torch.Tensor
    alphas: torch.Tensor


# Shared proposals drawn and evaluated together (a block).
_BLOCK_PROPOSALS = 5000


def _shared_steps(log_density: mcmc.LogDensity, betas: torch.Tensor, proposal,
                  x: torch.Tensor, current: tuple, n_proposals: int,
                  generator: torch.Generator) -> _SharedRun:
    """``n_proposals`` independence Metropolis-Hastings steps of every chain, step t of
    every chain towards the same proposal t, drawn by ``proposal.sample_shared`` (whose
    density is ``proposal.log_prob_shared``).

    A block's proposals are drawn and evaluated first, in large kernel calls; a
    chain's state is then an index into the block's pool, whose first ``C`` rows are
    the states the chains started from, and a step only compares log importance
    weights β A + B - log q (numbers in a ``[pool, C]`` table).
    """
    n_chains = len(betas)
    chains = torch.arange(n_chains)
    parts = {name: [] for name in ("recorded", "proposed", "alphas")}
    start = current[2]
    for first in range(0, n_proposals, _BLOCK_PROPOSALS):
        n = min(_BLOCK_PROPOSALS, n_proposals - first)
        proposed = proposal.sample_shared(n, generator)
        values = [log_density(rows) for rows in proposed.split(_ROWS_PER_CALL)]
        pool = torch.cat([x, proposed])
        tempered, base, record = (torch.cat([c, *(v[i] for v in values)])
                                  for i, c in enumerate(current))
        log_weight = (betas * tempered[:, None] + base[:, None]
                      - proposal.log_prob_shared(pool)[:, None]).nan_to_num(nan=-math.inf)
        log_uniform = torch.rand(n, n_chains, generator=generator, dtype=betas.dtype).log()
        after = _metropolis_hastings(log_weight.numpy(), log_uniform.numpy())
        before = torch.cat([chains[None], after[:-1]])
        steps = torch.arange(n_chains, n_chains + n)[:, None]
        log_ratio = log_weight[steps, chains] - log_weight[before, chains]
        # A diverged proposal (weight -inf) has acceptance 0, also against a diverged state.
        alphas = log_ratio.clamp(max=0).exp().nan_to_num(nan=0.0)
        parts["recorded"].append(record[after].transpose(0, 1))
        parts["proposed"].append(record[n_chains:][None])  # [1, n, k], the same for every chain
        parts["alphas"].append(alphas.T)
        last = after[-1]
        x, current = pool[last], (tempered[last], base[last], record[last])
    recorded, proposed, alphas = (torch.cat(parts[name], 1)
                                  for name in ("recorded", "proposed", "alphas"))
    return _SharedRun(x, current, recorded, start, proposed.expand(n_chains, -1, -1), alphas)


def _metropolis_hastings(log_weight: np.ndarray, log_uniform: np.ndarray) -> torch.Tensor:
    """``[n, C]`` pool indices of every chain after each of ``n`` steps: at step t every
    chain ``c`` moves from its state to point ``C + t`` when ``log_uniform[t, c]`` is below
    the difference of their log weights ``log_weight[., c]``; chain c starts at point c."""
    n, n_chains = log_uniform.shape
    state = np.arange(n_chains)
    weight = log_weight[state, state]
    after = np.empty((n, n_chains), dtype=np.int64)
    for t in range(n):
        candidate = log_weight[n_chains + t]
        # -inf - -inf is NaN, and a NaN comparison is False: a diverged point never moves.
        move = log_uniform[t] < candidate - weight
        state = np.where(move, n_chains + t, state)
        weight = np.where(move, candidate, weight)
        after[t] = state
    return torch.from_numpy(after)


def _fit_gammas(lengths: torch.Tensor) -> Gamma:
    """Per chain and branch, the gamma with the mean and variance of ``lengths`` ``[C, S, E]``.

    A branch that never moved gets a variance of (1e-3 x its mean)^2 rather than none.
    """
    mean = lengths.mean(1)
    variance = torch.maximum(lengths.var(1), (1e-3 * mean) ** 2).clamp(min=torch.finfo(mean.dtype).tiny)
    return Gamma(mean**2 / variance, mean / variance)


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
