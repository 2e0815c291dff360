"""The marginal-likelihood estimators of Fourment et al. (2020), each selectable by name.

Every estimator is a function ``(posterior, generator, settings, shared) ->
(value, std_error)``, or ``(value, std_error, diagnostics)`` (a dict, e.g. the
importance weights' ``pareto_k``), registered in :data:`ESTIMATORS` with its default
settings; ``shared`` (:class:`SharedWork`) holds the draws and fits that
several methods reuse;
:func:`phylovi.marginal.estimate` runs one and wraps the answer in a
:class:`MarginalResult`. Exact definitions follow ``../shared/references/marginal.md``
(physher ``marginal-v1.1``); where phylovi samples differently (batched HMC and
independence samplers on shared proposals instead of scaler/slider Metropolis),
the estimator's formula is unchanged.
"""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import torch
from torch.distributions import Categorical, Gamma, Independent, MixtureSameFamily, Normal

from phylovi.errors import PhyloviError
from phylovi.marginal.laplus import (BranchProfile, laplus_densities, laplus_log_marginal,
                                     shape_at_zero)
from phylovi.marginal.mcmc import effective_sample_size
from phylovi.marginal.optimize import diagonal_hessian, gradient, maximize
from phylovi.marginal.posterior import Posterior
from phylovi.marginal.power_posterior import (ChainSamples, run_chains, run_independent_chains,
                                             run_reference_chains)
from phylovi.vi.bounds import log_mean_exp_with_error, pareto_k_threshold

# SS, PS and MPS: after 200 HMC iterations (adaptation, then draws that give a first
# fit) and 1,000 iterations in which each temperature's chain proposes from gammas
# fitted to its own draws (neighbours exchanging states), the fits are refitted and
# the kept draws come from proposals that every chain shares: ``n_samples`` draws from
# the mixture of all chains' fits, each one likelihood evaluation and a
# Metropolis-Hastings step of every chain. On DS1's and DS2's first trees 80,000 of
# them gave SS a spread of 0.045 and 0.11 nats over seeds (reported 0.085) in 10-13 s,
# against 0.085-0.09 nats in 29-37 s for 10,000 own proposals per chain (500,000
# evaluations); docs/marginal-history.md, "Shared proposals". SS needs about that accuracy
# for split RMSD below 0.01: at 2,500 HMC draws its spread on DS2 was 0.18-0.27 nats
# and its split RMSD 0.012.
# GSS needs no adaptation: its reference r, fitted to the posterior draws, is close to
# every target on its path, so its chains step towards ``n_samples`` proposals drawn
# from r itself (mixed at 5% with r widened), shared by every chain, after ``n_warmup``
# discarded ones. On DS1's and DS2's first trees 20,000 of them cost about 1 s on top
# of the posterior draws, against 6-10 s for 500 HMC draws per chain (independent =
# 0), for standard errors of 0.008-0.014 against 0.014 (docs/marginal-history.md, "Shared
# proposals").
LADDER = {"n_temperatures": 50, "ladder_shape": 0.3, "n_samples": 80000, "n_warmup": 200,
          "n_leapfrog": 2, "independent": 1, "n_adapt": 1000}
GSS_LADDER = {**LADDER, "n_samples": 20000}
POSTERIOR_DRAWS = {"n_chains": 8, "n_samples": 250, "n_warmup": 200, "n_leapfrog": 5}
# GLIS's share of a diverging branch's proposal given to the gamma of the divergence's
# shape (see _gamma_laplus_product)
_ZERO_WEIGHT = 0.1


class SharedWork:
    """What several methods reuse (the MAP, a ladder's draws, posterior draws, a VI fit), with its cost.

    ``get(key, compute)`` returns the stored value, computing it on first use as
    ``compute(generator)``, and notes that the method now running used it, so each
    result can also report what its method costs on its own (:meth:`cost_of_reused`).
    Every method and every shared computation draws from its own generator, seeded by
    ``seed`` and its name (:meth:`generator_for`), so that a method's estimate for a seed
    does not depend on which other methods run, nor in which order.
    """

    def __init__(self, posterior: Posterior, seed: int | None = None):
        self.posterior = posterior
        self.seed = int(torch.randint(0, 2**63 - 1, (1,))) if seed is None else int(seed)
        self.used: set = set()
        self._values: dict = {}
        self._costs: dict = {}  # key -> (seconds, evals), excluding work nested inside
        self._needs: dict = {}  # key -> the keys its computation used (the MAP, say)
        self._nested = [0.0, 0]

    def generator_for(self, name) -> torch.Generator:
        """A generator seeded by the seed and ``name`` (a method, or a shared work's key)."""
        digest = hashlib.sha256(f"{self.seed}|{name!r}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def get(self, key, compute):
        if key not in self._values:
            outer, self._nested = self._nested, [0.0, 0]
            outer_used, self.used = self.used, set()
            evals, started = self.posterior.n_likelihood_evals, time.perf_counter()
            self._values[key] = compute(self.generator_for(key))
            seconds = time.perf_counter() - started
            evals = self.posterior.n_likelihood_evals - evals
            self._costs[key] = (seconds - self._nested[0], evals - self._nested[1])
            self._nested = [outer[0] + seconds, outer[1] + evals]
            self._needs[key], self.used = self.used, outer_used
        self.used |= {key} | self._needs[key]
        return self._values[key]

    def cost_of_reused(self, computed_before: set) -> tuple[float, int]:
        """Seconds and evaluations of the work the current method used but found done."""
        reused = self.used & computed_before
        return (sum(self._costs[k][0] for k in reused), sum(self._costs[k][1] for k in reused))

    def computed(self) -> set:
        return set(self._values)


def ladder(n_temperatures: int, shape: float, dtype=torch.float64) -> torch.Tensor:
    """β_k = (k / (K-1))^(1/shape), k = 0..K-1: the Beta(shape, 1) quantiles of the study."""
    k = torch.arange(n_temperatures, dtype=dtype)
    return (k / (n_temperatures - 1)) ** (1 / shape)


# -- optimisation-based --------------------------------------------------------------------


def _map(posterior: Posterior, cache: SharedWork) -> tuple[torch.Tensor, float]:
    return cache.get("map", lambda _: maximize(posterior, include_prior=True))


def ml(posterior, generator, settings, cache):
    return maximize(posterior, include_prior=False)[1], None


def map_estimate(posterior, generator, settings, cache):
    return _map(posterior, cache)[1], None


def _laplus_fit(posterior, cache, family):
    theta, value = _map(posterior, cache)
    # the log joint's slope and curvature at the MAP, shared by every family, GLIS and nested
    first, second = cache.get("curvature", lambda _: (
        gradient(posterior.log_joint, theta.unsqueeze(0))[0],
        diagonal_hessian(posterior.log_joint, theta)))
    return theta, value, laplus_densities(posterior, theta, first, second, family)


def _laplus(family):
    def estimator(posterior, generator, settings, cache):
        theta, value, densities = _laplus_fit(posterior, cache, family)
        return laplus_log_marginal(value, theta, densities), None

    estimator.__name__ = f"laplus_{family}"
    return estimator


def _gamma_laplus_product(posterior, cache) -> Independent:
    """The product of the gamma Laplus densities at the MAP: GLIS's proposal.

    Where the posterior diverges at zero like θ^(k-1), k < 1 (a gamma prior of shape
    below 1), a gamma of shape above k matched to an interior mode has no mass where the
    posterior has the most density, and the importance weights no bound: GLIS then read
    0.01-0.03 nats low with a standard error of 0.005-0.009 (3 taxa, exact value by
    quadrature). Such a branch's density is mixed with a gamma of shape k and the same
    mean, at weight :data:`_ZERO_WEIGHT`, which bounds the weights there.
    """
    return cache.get("gamma-laplus-product", lambda _: _gamma_laplus_fit(posterior, cache))


def _gamma_laplus_fit(posterior, cache) -> Independent:
    theta, _, densities = _laplus_fit(posterior, cache, "gamma")
    densities = [d.proposal if isinstance(d, BranchProfile) else d for d in densities]
    shapes = torch.tensor([d.args[0] for d in densities], dtype=posterior.dtype)
    rates = torch.tensor([1 / d.kwds["scale"] for d in densities], dtype=posterior.dtype)
    at_zero = shapes.clone()
    for i, shape in enumerate(shapes.tolist()):
        k = shape_at_zero(posterior, theta, i)
        if k < min(shape, 1 - 1e-3):
            at_zero[i] = k
    if bool((at_zero == shapes).all()):
        return Independent(Gamma(shapes, rates), 1)
    weights = torch.where(at_zero < shapes, _ZERO_WEIGHT, 0.0).to(shapes)
    mixture = MixtureSameFamily(
        Categorical(probs=torch.stack([1 - weights, weights], -1)),
        Gamma(torch.stack([shapes, at_zero], -1),
              torch.stack([rates, rates * at_zero / shapes], -1)))  # same mean
    return Independent(mixture, 1)


def glis(posterior, generator, settings, cache):
    """Importance sampling from the gamma Laplus product (10,000 draws by default)."""
    proposal = _gamma_laplus_product(posterior, cache)
    return _importance_sampling(posterior, proposal, settings["n_samples"], generator)


def _importance_sampling(posterior, proposal, n_samples, generator, batch=1000):
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    log_w = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, n_samples, batch):
            draws = proposal.sample((min(batch, n_samples - start),))
            log_w.append(posterior.log_joint(draws) - proposal.log_prob(draws))
    return _log_mean_exp_with_error(torch.cat(log_w))


def _log_mean_exp_with_error(log_w: torch.Tensor):
    """log mean exp(log_w), its delta-method standard error (None from one draw) and the
    weights' Pareto k (see :func:`phylovi.vi.bounds.pareto_k`)."""
    value, std_error, tail = log_mean_exp_with_error(log_w)
    return value, std_error if math.isfinite(std_error) else None, _tail(tail, len(log_w))


def _tail(pareto_k: float, n_samples: int) -> dict:
    """The diagnostics of importance weights: their Pareto k, and the largest k at which
    ``n_samples`` of them give a usable estimate."""
    return {"pareto_k": pareto_k, "pareto_k_threshold": pareto_k_threshold(n_samples)}


def _vi(posterior, settings, cache):
    from phylovi.vi.branch_lengths import BranchLengthVI, VISettings

    def fit(generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            vi = BranchLengthVI(posterior.likelihood, posterior.topology, posterior.prior,
                                VISettings(family="lognormal", n_particles=settings["n_particles"],
                                           is_samples=settings["n_samples"]))
            result = vi.fit()
        posterior.n_likelihood_evals += result.n_likelihood_evals
        return result

    return cache.get(("vi", settings["n_particles"], settings["n_samples"]), fit)


def vbis(posterior, generator, settings, cache):
    """Importance sampling (10,000 draws) from a mean-field log-normal VI fit."""
    result = _vi(posterior, settings, cache)
    error = result.std_error if math.isfinite(result.std_error) else None  # as nmc and glis
    return result.value, error, _tail(result.pareto_k, settings["n_samples"])


def elbo(posterior, generator, settings, cache):
    return _vi(posterior, settings, cache).elbo, None


def nmc(posterior, generator, settings, cache):
    """Naive Monte Carlo: log mean p(y | b) over draws from the prior."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    values = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, settings["n_samples"], 1000):
            draws = posterior.prior.sample((min(1000, settings["n_samples"] - start),))
            values.append(posterior.log_likelihood(draws))
    return _log_mean_exp_with_error(torch.cat(values))


# -- power posteriors -----------------------------------------------------------------------


def _ladder_samples(posterior, settings, cache, reference=None) -> ChainSamples:
    def sample(generator):
        betas = ladder(settings["n_temperatures"], settings["ladder_shape"], posterior.dtype)
        if reference is not None and settings["independent"]:
            return run_reference_chains(posterior, betas, reference, settings["n_samples"],
                                        settings["n_warmup"], generator)
        theta, _ = _map(posterior, cache)
        if settings["independent"]:
            return run_independent_chains(posterior, betas, theta, settings["n_samples"],
                                          settings["n_warmup"], settings["n_adapt"], generator,
                                          settings["n_leapfrog"])
        return run_chains(posterior, betas, theta, settings["n_samples"], settings["n_warmup"],
                          generator, reference, settings["n_leapfrog"])

    return cache.get(("ladder", reference is not None, *(settings[k] for k in LADDER)), sample)


def _ladder_error(influence: torch.Tensor) -> float:
    """Standard error of a sum over the ladder of per-temperature means, from each
    draw's first-order influence ``[K, S]`` on the estimate.

    The influences are summed over temperatures before their variance and effective
    sample size are taken, so correlation between temperatures counts: replica
    exchange hands states from one temperature to the next, which a sum of
    per-temperature errors ignores (those were 1.3-2 times too small on DS2, see
    docs/marginal-history.md, "Standard errors of the ladder estimators").
    """
    summed = influence.sum(0)
    if len(summed) < 2:  # one draw has no variance (and torch would warn about it)
        return math.nan
    return math.sqrt(float(summed.var() / effective_sample_size(summed[None])[0]))


def _stepping_stone(samples: ChainSamples, value) -> tuple[float, float]:
    """Σ_k log E_{k-1}[exp(Δβ_k v)], the expectation over the draws at β_{k-1}
    (:meth:`ChainSamples.expected`), with ``value`` mapping recorded values
    ``[C, S, k]`` to v ``[C, S]``; delta-method standard error."""
    betas = samples.betas
    # Chain c serves stone c + 1; the last chain serves none (its Δβ of 0 is dropped below).
    delta = torch.cat([betas[1:] - betas[:-1], betas.new_zeros(1)])[:, None]

    def scaled(recorded):
        return delta * value(recorded)

    proposed = torch.where(samples.move_probability > 0, scaled(samples.proposed), -torch.inf)
    top = torch.maximum(scaled(samples.before).amax(1), proposed.amax(1))[:, None]
    w = samples.expected(lambda recorded: torch.exp(scaled(recorded) - top))[:-1]
    mean = w.mean(1)
    total = float((top[:-1, 0] + mean.log()).sum())
    return total, _ladder_error(w / mean[:, None] - 1)  # d log(mean w) per draw


def _log_likelihood(recorded: torch.Tensor) -> torch.Tensor:
    return recorded[..., 0]


def ss(posterior, generator, settings, cache):
    return _stepping_stone(_ladder_samples(posterior, settings, cache), _log_likelihood)


def _path_terms(samples: ChainSamples):
    """Temperatures, per-temperature means and variances of ℓ, and the standard error
    of the trapezoid Σ_k c_k E_k[ℓ] (the MPS correction's own error is left out)."""
    betas = samples.betas
    # Centred, so that the variance is not a small difference of large numbers.
    centre = samples.log_likelihood.mean(1, keepdim=True)
    values = samples.expected(lambda recorded: _log_likelihood(recorded) - centre)
    means = values.mean(1)
    variances = samples.expected(lambda recorded: (_log_likelihood(recorded) - centre) ** 2
                                 ).mean(1) - means**2
    delta = betas[1:] - betas[:-1]
    weights = torch.zeros_like(betas)
    weights[1:] += delta / 2
    weights[:-1] += delta / 2
    error = _ladder_error(weights[:, None] * (values - means[:, None]))
    return betas, means + centre[:, 0], variances, error


def ps(posterior, generator, settings, cache):
    """Trapezoid rule over the ladder: Σ Δβ_k (E_k[ℓ] + E_{k-1}[ℓ]) / 2."""
    betas, means, _, error = _path_terms(_ladder_samples(posterior, settings, cache))
    delta = betas[1:] - betas[:-1]
    return float((delta * (means[1:] + means[:-1]) / 2).sum()), error


def mps(posterior, generator, settings, cache):
    """Modified path sampling (Friel, Hurn & Wyse 2014): the trapezoid minus Δβ²(V_k - V_{k-1})/12."""
    betas, means, variances, error = _path_terms(
        _ladder_samples(posterior, settings, cache))
    delta = betas[1:] - betas[:-1]
    value = float((delta * (means[1:] + means[:-1]) / 2
                   - delta**2 * (variances[1:] - variances[:-1]) / 12).sum())
    return value, error


def _posterior_draws(posterior, settings, cache) -> ChainSamples:
    def sample(generator):
        theta, _ = _map(posterior, cache)
        betas = torch.ones(POSTERIOR_DRAWS["n_chains"], dtype=posterior.dtype)
        return run_chains(posterior, betas, theta, POSTERIOR_DRAWS["n_samples"],
                          POSTERIOR_DRAWS["n_warmup"], generator,
                          n_leapfrog=POSTERIOR_DRAWS["n_leapfrog"], keep_lengths=True)

    return cache.get("posterior", sample)


def gss(posterior, generator, settings, cache):
    """Generalised stepping stone (Fan et al. 2011) with a gamma reference fitted by moments."""
    draws = _posterior_draws(posterior, settings, cache).lengths.reshape(
        -1, posterior.n_edges)
    mean, variance = draws.mean(0), draws.var(0)
    if not bool((variance > 0).all()):
        raise PhyloviError(f"gss: the posterior draws of branch {int(variance.argmin())} never "
                           "moved, so no gamma reference can be fitted")
    reference = Independent(Gamma(mean**2 / variance, mean / variance), 1)
    samples = _ladder_samples(posterior, settings, cache, reference)
    # On this path the tempered part is log p(y|b) + log p(b) - log r(b).
    return _stepping_stone(samples, lambda recorded: recorded[..., 0] + recorded[..., 1]
                           - recorded[..., 2])


def _posterior_log_likelihoods(posterior, settings, cache) -> torch.Tensor:
    return _posterior_draws(posterior, settings, cache).log_likelihood.reshape(-1)


def hm(posterior, generator, settings, cache):
    """Harmonic mean: -log mean exp(-ℓ) over posterior draws (known to be biased upwards)."""
    log_like = _posterior_log_likelihoods(posterior, settings, cache)
    value, _, tail = log_mean_exp_with_error(-log_like)
    return -value, None, _tail(tail, len(log_like))  # the weights 1 / likelihood


def shm(posterior, generator, settings, cache):
    """Stabilised harmonic mean (Newton & Raftery 1994) with δ = 0.01, by fixed-point iteration."""
    log_like = _posterior_log_likelihoods(posterior, settings, cache).double()
    delta, n = settings["delta"], len(log_like)
    top = log_like.max()
    likelihood = torch.exp(log_like - top)
    z = math.exp(-(float(torch.logsumexp(-(log_like - top), 0)) - math.log(n)))  # HM start
    for _ in range(10000):
        mixture = delta * z + (1 - delta) * likelihood
        numerator = delta * n / (1 - delta) + float((likelihood / mixture).sum())
        denominator = delta * n / ((1 - delta) * z) + float((1 / mixture).sum())
        new = numerator / denominator
        if abs(new - z) <= 1e-7 * z:
            z = new
            break
        z = new
    return float(top) + math.log(z), None


def bridge(posterior, generator, settings, cache):
    """Meng & Wong (1996) iterative bridge sampling with independent normals on log branch lengths.

    The proposal is fitted to half of the posterior draws and the estimate made
    from the other half. Independent normals, not a full covariance: fitted to
    the 1,000 correlated draws of the default budget, a 55-dimensional
    covariance (DS2) is too noisy for the proposal to overlap the posterior, and
    the estimate came out 2 nats low on every DS2 tree (0.6 nats low with four
    times the draws); independent normals came within 0.1 nats of GSS.
    """
    samples = _posterior_draws(posterior, settings, cache)
    x = samples.lengths.reshape(-1, posterior.n_edges).log()
    order = torch.randperm(len(x), generator=generator)
    first, second = x[order[: len(x) // 2]], x[order[len(x) // 2:]]
    spread = first.std(0)
    if not bool((spread > 0).all()):
        raise PhyloviError(f"bridge: the posterior draws of branch {int(spread.argmin())} never "
                           "moved, so no proposal can be fitted")
    proposal = Independent(Normal(first.mean(0), spread), 1)
    n1, n2 = len(second), max(len(second) // 2, 2)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        drawn = proposal.sample((n2,))
        # log of (unnormalised posterior in log space) / proposal, for both sets
        l1 = posterior.log_joint(second.exp()) + second.sum(-1) - proposal.log_prob(second)
        l2 = posterior.log_joint(drawn.exp()) + drawn.sum(-1) - proposal.log_prob(drawn)
    s1, s2 = n1 / (n1 + n2), n2 / (n1 + n2)
    log_r = float(torch.logsumexp(l2, 0) - math.log(n2))  # start from the IS estimate
    for _ in range(10000):
        numerator = torch.logsumexp(l2 - torch.logaddexp(math.log(s1) + l2, math.log(s2) + log_r
                                                          + torch.zeros_like(l2)), 0) - math.log(n2)
        denominator = torch.logsumexp(-torch.logaddexp(math.log(s1) + l1, math.log(s2) + log_r
                                                        + torch.zeros_like(l1)), 0) - math.log(n1)
        new = float(numerator - denominator)
        if abs(new - log_r) < 1e-10:
            log_r = new
            break
        log_r = new
    return log_r, None


def _site_log_likelihoods(posterior, settings, cache) -> torch.Tensor:
    lengths = _posterior_draws(posterior, settings, cache).lengths.reshape(
        -1, posterior.n_edges)
    with torch.no_grad():
        return posterior.site_log_likelihoods(lengths)


def cpo(posterior, generator, settings, cache):
    """Σ_s w_s log CPO_s, CPO_s the harmonic mean of p(y_s | b) over posterior draws."""
    site = _site_log_likelihoods(posterior, settings, cache)
    n = site.shape[0]
    log_cpo = -(torch.logsumexp(-site, 0) - math.log(n))
    return float((posterior.pattern_weights * log_cpo).sum()), None


def ppd(posterior, generator, settings, cache):
    """Σ_s w_s log mean_j p(y_s | b_j): the log pointwise predictive density."""
    site = _site_log_likelihoods(posterior, settings, cache)
    log_ppd = torch.logsumexp(site, 0) - math.log(site.shape[0])
    return float((posterior.pattern_weights * log_ppd).sum()), None


class _Defensive:
    """The mixture (1 - w) fit + w prior: as close to the posterior as the fit where the fit
    is good, and never much further than the prior where it is not (a defensive mixture,
    Hesterberg 1995)."""

    def __init__(self, fit, prior, prior_weight: float):
        self.fit, self.prior, self.prior_weight = fit, prior, prior_weight

    def sample(self, shape: tuple) -> torch.Tensor:
        from_prior = torch.rand(shape) < self.prior_weight
        return torch.where(from_prior.unsqueeze(-1), self.prior.sample(shape), self.fit.sample(shape))

    def log_prob(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.prior_weight == 0:
            return self.fit.log_prob(lengths)
        return torch.logaddexp(self.fit.log_prob(lengths) + math.log1p(-self.prior_weight),
                               self.prior.log_prob(lengths) + math.log(self.prior_weight))


def nested(posterior, generator, settings, cache):
    """Nested sampling (Skilling 2006), replacing the ``n_replace`` worst live points per round
    (at most half of them).

    Nested sampling integrates a likelihood over a reference distribution. With
    ``prior_weight=1`` these are p(y|b) and the prior, as in the study, and the
    shells must compress the prior by the posterior's information about it
    (about 110 nats on DS1). By default the reference r is GLIS's product of
    gamma Laplus densities mixed with the prior at weight ``prior_weight``
    (0.1), and the integrand p(y|b) p(b) / r(b): the same integral, which now
    needs a few nats of compression (on DS1, a twelfth of the likelihood
    evaluations for a tenth of the error). This is the repartitioning of Chen,
    Feroz and Hobson (2019), and it is to nested sampling what GSS is to
    stepping stone. The prior's share keeps r's tails no lighter than the
    prior's: where the Laplus fit is wrong (a MAP on the boundary), the shells
    start from the prior's draws instead, at a few nats' extra cost.

    Live points start as reference draws. Each round discards the ``n_replace``
    lowest-likelihood points; the j-th of them (j = 0, 1, ...) ends a shell
    whose log reference volume shrinks by 1 / (n_live - j) in expectation,
    which is exact for removing order statistics one after another. New
    points start at copies of surviving points and take ``n_steps``
    random-walk steps on log branch lengths, Metropolis under the reference,
    constrained to likelihoods above the highest discarded one; all of a
    round's walkers are one batch for the kernel, less those whose step the
    reference already rejected (their likelihood is never needed). Step sizes
    follow the live points' spread per branch. The standard error is
    Skilling's sqrt(H / n_live), H the information of the posterior about the
    reference (estimated from the same shells, and reported as
    ``information``); it leaves out the random walk's own error.
    """
    n_live, n_steps = settings["n_live"], settings["n_steps"]
    # Replacing more than half would start most walkers from the same few survivors.
    n_replace = min(settings["n_replace"], max(n_live // 2, 1))
    reference = posterior.prior
    if settings["prior_weight"] < 1:
        reference = _Defensive(_gamma_laplus_product(posterior, cache), posterior.prior,
                               settings["prior_weight"])

    def log_like(x):  # the integrand's log over the reference's density
        lengths = x.exp()
        if reference is posterior.prior:
            return posterior.log_likelihood(lengths)
        return posterior.log_joint(lengths) - reference.log_prob(lengths)

    def log_reference(x):  # the reference's density of log branch lengths
        return reference.log_prob(x.exp()) + x.sum(-1)

    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        live = reference.sample((n_live,)).log()
    with torch.no_grad():
        live_like = log_like(live)
    log_z, log_x = -math.inf, 0.0  # evidence so far; log reference volume above the bound
    shells = []  # (log weight, log-likelihood) of each discarded point
    # Random-walk step in units of the live points' spread per branch: the optimal
    # scale for a Gaussian target to start with, then tuned towards 25% acceptance.
    factor = 2.38 / math.sqrt(posterior.n_edges)
    for _ in range(settings["max_iterations"] // n_replace + 1):
        order = torch.argsort(live_like)
        worst, survivors = order[:n_replace], order[n_replace:]
        for j, index in enumerate(worst.tolist()):
            shrunk = log_x - 1 / (n_live - j)
            weight = log_x + math.log(-math.expm1(shrunk - log_x)) + float(live_like[index])
            shells.append((weight, float(live_like[index])))
            log_z = float(np.logaddexp(log_z, weight))
            log_x = shrunk
        if len(shells) > n_live and float(live_like.max()) + log_x - log_z < math.log(settings["tolerance"]):
            break
        bound = float(live_like[worst[-1]])
        sources = survivors[torch.randint(0, len(survivors), (n_replace,), generator=generator)]
        x, x_like = live[sources].clone(), live_like[sources].clone()
        spread = live[survivors].std(0).clamp(min=1e-3)
        accepted = 0.0
        with torch.no_grad():
            for _ in range(n_steps):
                proposal = x + factor * spread * torch.randn(x.shape, generator=generator, dtype=x.dtype)
                log_ratio = log_reference(proposal) - log_reference(x)
                uniform = torch.rand(log_ratio.shape, generator=generator, dtype=x.dtype)
                # Only a proposal that passes the reference's test needs its likelihood.
                passed = uniform.log() < log_ratio
                value = torch.full_like(x_like, -math.inf)
                if bool(passed.any()):
                    value[passed] = log_like(proposal[passed])
                move = passed & (value > bound)
                x = torch.where(move.unsqueeze(-1), proposal, x)
                x_like = torch.where(move, value, x_like)
                accepted += float(move.double().mean())
        factor *= math.exp(accepted / n_steps - 0.25)
        live[worst], live_like[worst] = x, x_like
    # The remaining live points share the last volume equally.
    final = live_like - math.log(n_live) + log_x
    shells += list(zip(final.tolist(), live_like.tolist()))
    log_z = float(np.logaddexp(log_z, float(torch.logsumexp(final, 0))))
    log_w, log_like_shells = np.array(shells).T
    information = float(np.sum(np.exp(log_w - log_z) * log_like_shells)) - log_z
    return log_z, math.sqrt(max(information, 0.0) / n_live), {"information": information}


ESTIMATORS = {
    "gss": (gss, {**GSS_LADDER}),
    "ss": (ss, {**LADDER}),
    "ps": (ps, {**LADDER}),
    "mps": (mps, {**LADDER}),
    "bridge": (bridge, {}),
    "hm": (hm, {}),
    "shm": (shm, {"delta": 0.01}),
    "nested": (nested, {"n_live": 1000, "n_replace": 500, "n_steps": 20, "tolerance": 1e-3,
                        "max_iterations": 1000000, "prior_weight": 0.1}),
    "nmc": (nmc, {"n_samples": 10000}),
    "cpo": (cpo, {}),
    "ppd": (ppd, {}),
    "laplus-gamma": (_laplus("gamma"), {}),
    "laplus-lognormal": (_laplus("lognormal"), {}),
    "laplus-betaprime": (_laplus("betaprime"), {}),
    "glis": (glis, {"n_samples": 10000}),
    "vbis": (vbis, {"n_samples": 10000, "n_particles": 4}),
    "elbo": (elbo, {"n_samples": 10000, "n_particles": 4}),
    "map": (map_estimate, {}),
    "ml": (ml, {}),
}
