"""Tree-topology tests from per-site log-likelihoods, by RELL resampling.

RELL (resampling estimated log-likelihoods; Kishino, Miyata and Hasegawa 1990) draws
bootstrap replicates of the alignment's sites and re-sums each tree's fixed per-site
log-likelihoods over them, instead of refitting every tree on every replicate. From the
replicates' totals ``L[b, i]`` (replicate b, tree i), with ``L_i`` the observed totals:

- ``bp_rell``: the share of replicates in which tree i has the highest total.
- ``p_kh``: the one-sided Kishino-Hasegawa (1989) test of tree i against the best tree
  (the best tree against the second best): the share of replicates whose centred
  difference ``d[b] - mean(d)``, ``d = L_best - L_i``, reaches the observed one.
- ``p_sh``: the Shimodaira-Hasegawa (1999) test, which allows for the best tree being
  chosen from the set: with each tree's totals centred, the share of replicates in which
  ``max_j L[b, j] - L[b, i]`` reaches the observed ``max_j L_j - L_i``.
- ``c_elw``: expected likelihood weights (Strimmer and Rambaut 2002), the replicates'
  mean of ``exp(L[b, i]) / sum_j exp(L[b, j])``.
- ``p_au``: the approximately unbiased test (Shimodaira 2002): the bootstrap
  probability that tree i is the best, ``BP(r)``, at 10 replicate sizes
  ``r n`` (r = 0.5, 0.6, ..., 1.4), is fitted by ``BP(r) = 1 - Phi(v sqrt(r) + c /
  sqrt(r))`` (maximum likelihood on the binomial counts of all scales, from a
  weighted least-squares start; the curvature c is kept only where three scales have
  :data:`MIN_WINS` wins and losses and it improves the fit's AIC, else 0), and
  ``p_au = 1 - Phi(v - c)``. A tree that is rarely the best gets, with c = 0, about its
  bootstrap probability.

IQ-TREE's ``-z TREES -zb N -au`` reports the same five columns. In a replicate, the
trees within :data:`BEST_WITHIN` nats of its best share the win evenly, for bp-RELL and
for the AU test's BP (IQ-TREE's ``-beps`` default): trees that differ only by a
near-zero edge would otherwise split it by rounding. Trees with identical site values
get identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
from scipy.special import log_ndtr, ndtr, ndtri

from phylovi.errors import ConfigError

AU_SCALES = np.round(np.arange(0.5, 1.45, 0.1), 1)  # replicate sizes, as shares of the sites
MIN_WINS = 10  # wins (and losses) at a scale for it to count towards the AU curvature
TIE = 1e-8  # nats: totals closer than this are equal (rounding, not data, tells them apart)
# nats: in a replicate, trees this close to its best share the win (IQ-TREE's -beps default):
# trees that differ only by a near-zero edge would otherwise split it by rounding
BEST_WITHIN = 0.5
_DRAWS_PER_CHUNK = 2 * 10**7  # sites drawn at a time: bounds the memory of long alignments


@dataclass(frozen=True)
class TopologyTests:
    """The tests' results, one value per tree (see the module's text).

    Attributes:
        log_likelihoods: ``[T]`` the observed totals.
        delta: ``[T]`` the best total minus each tree's.
        bp_rell, p_kh, p_sh, c_elw, p_au: ``[T]`` each test's value; 0 for a tree whose
            log-likelihood is -inf.
        replicates: RELL replicates per test (and per AU scale).
    """

    log_likelihoods: np.ndarray
    delta: np.ndarray
    bp_rell: np.ndarray
    p_kh: np.ndarray
    p_sh: np.ndarray
    c_elw: np.ndarray
    p_au: np.ndarray
    replicates: int


def topology_tests(site_log_likelihoods: np.ndarray, weights: np.ndarray, replicates: int = 10000,
                   seed: int = 1) -> TopologyTests:
    """RELL tests of ``T >= 2`` trees on the same alignment.

    Args:
        site_log_likelihoods: ``[T, P]`` each tree's log-likelihood of each site pattern.
        weights: ``[P]`` the patterns' site counts.
        replicates: bootstrap replicates per test (and per AU scale); IQ-TREE advises
            at least 1000.
        seed: for numpy's generator; the same seed gives the same values.
    """
    site = np.asarray(site_log_likelihoods, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if site.ndim != 2 or site.shape[0] < 2 or site.shape[1] != weights.shape[0]:
        raise ConfigError(f"topology tests need [T >= 2, P] site log-likelihoods and [P] "
                          f"weights, got {site.shape} and {weights.shape}")
    if not isinstance(replicates, (int, np.integer)) or replicates < 1:
        raise ConfigError(f"topology tests need at least 1 replicate, got {replicates!r}")
    # Identical trees (a tree given twice, resolutions of a zero-length edge) must get
    # identical results: replicates are drawn for the distinct rows, then copied.
    distinct, copy_of = np.unique(site, axis=0, return_inverse=True)
    copy_of = copy_of.reshape(-1)
    distinct_totals = (distinct * weights).sum(1)
    possible = np.isfinite(distinct_totals)
    tested = np.flatnonzero(possible[copy_of])  # the trees that take part
    if len(tested) < 2:
        raise ConfigError("topology tests need at least two trees whose log-likelihood is "
                          "finite")
    rows = distinct[possible]
    column = (np.cumsum(possible) - 1)[copy_of[tested]]  # each tested tree's row in rows
    observed = distinct_totals[copy_of[tested]]
    n_sites = int(round(weights.sum()))
    rng = np.random.default_rng(seed)
    totals = _rell(rows, weights, n_sites, replicates, rng)[:, column]  # [B, tested]
    results = {"bp_rell": _best_share(totals), "p_kh": _kh(observed, totals),
               "c_elw": _elw(totals), "p_sh": _sh(observed, totals),  # _sh last: in place
               "p_au": _au(rows, weights, n_sites, replicates, rng, column)}
    every = {}
    for name, values in results.items():  # 0 for the impossible trees
        every[name] = np.zeros(len(copy_of))
        every[name][tested] = values
    log_likelihoods = distinct_totals[copy_of]
    return TopologyTests(log_likelihoods, log_likelihoods.max() - log_likelihoods,
                         replicates=replicates, **every)


def _rell(site: np.ndarray, weights: np.ndarray, n_draws: int, replicates: int,
          rng: np.random.Generator) -> np.ndarray:
    """``[replicates, T]``: each tree's total over ``n_draws`` sites drawn with
    replacement (counted per pattern: a bincount is far faster than a multinomial
    draw over hundreds of patterns)."""
    n_patterns = len(weights)
    pattern_of_site = np.repeat(np.arange(n_patterns, dtype=np.int32),
                                np.round(weights).astype(np.int64))
    chunk = max(1, min(replicates, _DRAWS_PER_CHUNK // max(n_draws, 1)))
    totals = np.empty((replicates, site.shape[0]))
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        drawn = pattern_of_site[rng.integers(0, len(pattern_of_site), (size, n_draws), np.int32)]
        drawn = drawn + np.arange(size, dtype=np.int64)[:, None] * n_patterns  # one bincount
        counts = np.bincount(drawn.ravel(), minlength=size * n_patterns)
        totals[start:start + size] = counts.reshape(size, n_patterns) @ site.T
    return totals


def _best_share(totals: np.ndarray) -> np.ndarray:
    """Each tree's share of the replicates in which it is the best, a replicate's win shared
    evenly by the trees within :data:`BEST_WITHIN` of its best."""
    return _wins(totals).mean(0)


def _wins(totals: np.ndarray) -> np.ndarray:
    """``[B, T]``: each tree's share of each replicate's win."""
    best = totals >= totals.max(1, keepdims=True) - BEST_WITHIN
    return best / best.sum(1, keepdims=True)


def _kh(observed: np.ndarray, totals: np.ndarray) -> np.ndarray:
    order = np.argsort(-observed, kind="stable")
    best, second = order[0], order[1]
    p = np.empty(len(observed))
    for i in range(len(observed)):
        other = second if i == best else best
        difference = totals[:, other] - totals[:, i]
        centred = difference - difference.mean()
        p[i] = np.mean(centred >= observed[other] - observed[i] - TIE)
    return p


def _sh(observed: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """(Centres ``totals`` in place: call it after the others.)"""
    totals -= totals.mean(0)
    gaps = totals.max(1, keepdims=True) - totals  # [B, T]
    return np.mean(gaps >= observed.max() - observed - TIE, axis=0)


def _elw(totals: np.ndarray) -> np.ndarray:
    shifted = np.exp(totals - totals.max(1, keepdims=True))
    return np.mean(shifted / shifted.sum(1, keepdims=True), axis=0)


def _au(site: np.ndarray, weights: np.ndarray, n_sites: int, replicates: int,
        rng: np.random.Generator, columns: np.ndarray) -> np.ndarray:
    """The AU test's p-value of every tree (see the module's text); ``columns`` maps the
    trees to the rows of ``site`` (copies share a row)."""
    wins = np.empty((len(AU_SCALES), len(columns)))  # replicates where a tree is (among) the best
    for k, scale in enumerate(AU_SCALES):
        totals = _rell(site, weights, max(1, round(scale * n_sites)), replicates, rng)[:, columns]
        wins[k] = _wins(totals).sum(0)
    return np.array([_au_p_value(wins[:, i], replicates) for i in range(len(columns))])


def _au_p_value(wins: np.ndarray, replicates: int) -> float:
    """``1 - Phi(v - c)`` from one tree's wins at :data:`AU_SCALES` out of ``replicates``:
    the binomial likelihood of ``BP(r) = 1 - Phi(v sqrt(r) + c / sqrt(r))`` maximised over
    (v, c), from weighted least squares on the scales where BP is neither 0 nor 1, or over
    v alone (c = 0) where the curvature is not measured (see the module's text)."""
    if wins.sum() == 0:
        return 0.0  # never the best at any scale
    if wins.min() == replicates:
        return 1.0  # always the best
    root = np.sqrt(AU_SCALES)
    usable = (wins > 0) & (wins < replicates)
    start = np.array([ndtri(1 - np.clip(wins.sum() / (replicates * len(wins)), 1e-9,
                                        1 - 1e-9)), 0.0])
    if usable.sum() >= 2:  # weighted least squares: z(r) sqrt(1 / r) = v + c / r
        bp = wins[usable] / replicates
        z, inverse = ndtri(1 - bp), 1 / AU_SCALES[usable]
        density = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
        spread = np.sqrt(inverse * bp * (1 - bp) / replicates) / density
        design = np.stack([np.ones_like(inverse), inverse], axis=1) / spread[:, None]
        start = np.linalg.lstsq(design, z * np.sqrt(inverse) / spread, rcond=None)[0]

    def minus_log_likelihood(parameters):
        v, c = parameters
        z = v * root + c / root  # BP = 1 - Phi(z)
        return -float(np.sum(wins * log_ndtr(-z) + (replicates - wins) * log_ndtr(z)))

    options = {"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000}
    curved = scipy.optimize.minimize(minus_log_likelihood, start, method="Nelder-Mead",
                                     options=options)
    flat = scipy.optimize.minimize(lambda v: minus_log_likelihood([v[0], 0.0]), start[:1],
                                   method="Nelder-Mead", options=options)
    # The curvature must earn its parameter (AIC, as Shimodaira's scaleboot chooses between
    # models), and needs scales with enough wins to be measured: from a handful of wins
    # at scattered scales it is pure noise (3 wins in 100,000 replicates gave 0.16).
    measured = np.sum((wins >= MIN_WINS) & (wins <= replicates - MIN_WINS)) >= 3
    if measured and curved.fun < flat.fun - 1:
        v, c = curved.x
    else:
        v, c = flat.x[0], 0.0
    return float(1 - ndtr(v - c))
