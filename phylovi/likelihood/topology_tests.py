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
  probability that tree i is the best, ``BP(r)``, at 10 replicate sizes ``r n``
  (r = 0.5, 0.6, ..., 1.4), gives ``sqrt(1/r) z(r) = v + c / r`` with
  ``z = Phi^-1(1 - BP)``; weighted least squares gives the signed distance v and
  the curvature c, and ``p_au = 1 - Phi(v - c)``.

IQ-TREE's ``-z TREES -zb N -au`` reports the same five columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from phylovi.errors import ConfigError

AU_SCALES = np.round(np.arange(0.5, 1.45, 0.1), 1)  # replicate sizes, as shares of the sites
_CHUNK = 1000  # replicates drawn at a time (a [chunk, n_patterns] count matrix)


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
    observed = site @ weights
    possible = np.isfinite(observed)
    if possible.sum() < 2:
        raise ConfigError("topology tests need at least two trees whose log-likelihood is "
                          "finite")
    site, kept = site[possible], observed[possible]
    n_sites = int(round(weights.sum()))
    rng = np.random.default_rng(seed)
    totals = _rell(site, weights, n_sites, replicates, rng)  # [B, T']
    results = {"bp_rell": _best_share(totals), "p_kh": _kh(kept, totals),
               "p_sh": _sh(kept, totals), "c_elw": _elw(totals),
               "p_au": _au(site, weights, n_sites, replicates, rng)}
    full = {}
    for name, values in results.items():
        full[name] = np.zeros(len(observed))
        full[name][possible] = values
    return TopologyTests(observed, observed.max() - observed, replicates=replicates, **full)


def _rell(site: np.ndarray, weights: np.ndarray, n_draws: int, replicates: int,
          rng: np.random.Generator) -> np.ndarray:
    """``[replicates, T]``: each tree's total over ``n_draws`` sites drawn with
    replacement (counted per pattern: a bincount is far faster than a multinomial
    draw over hundreds of patterns)."""
    n_patterns = len(weights)
    pattern_of_site = np.repeat(np.arange(n_patterns), np.round(weights).astype(np.int64))
    totals = []
    for start in range(0, replicates, _CHUNK):
        size = min(_CHUNK, replicates - start)
        drawn = pattern_of_site[rng.integers(0, len(pattern_of_site), (size, n_draws), np.int32)]
        drawn += np.arange(size)[:, None] * n_patterns
        counts = np.bincount(drawn.ravel(), minlength=size * n_patterns)
        totals.append(counts.reshape(size, n_patterns) @ site.T)
    return np.concatenate(totals)


def _best_share(totals: np.ndarray) -> np.ndarray:
    return np.bincount(totals.argmax(1), minlength=totals.shape[1]) / len(totals)


def _kh(observed: np.ndarray, totals: np.ndarray) -> np.ndarray:
    order = np.argsort(-observed, kind="stable")
    best, second = order[0], order[1]
    p = np.empty(len(observed))
    for i in range(len(observed)):
        other = second if i == best else best
        difference = totals[:, other] - totals[:, i]
        centred = difference - difference.mean()
        p[i] = np.mean(centred >= observed[other] - observed[i])
    return p


def _sh(observed: np.ndarray, totals: np.ndarray) -> np.ndarray:
    centred = totals - totals.mean(0)
    gaps = centred.max(1, keepdims=True) - centred  # [B, T]
    return np.mean(gaps >= observed.max() - observed, axis=0)


def _elw(totals: np.ndarray) -> np.ndarray:
    shifted = np.exp(totals - totals.max(1, keepdims=True))
    return np.mean(shifted / shifted.sum(1, keepdims=True), axis=0)


def _au(site: np.ndarray, weights: np.ndarray, n_sites: int, replicates: int,
        rng: np.random.Generator) -> np.ndarray:
    """The AU test's p-value of every tree (see the module's text)."""
    n_trees = site.shape[0]
    shares = np.empty((len(AU_SCALES), n_trees))  # BP of each tree at each scale
    for k, scale in enumerate(AU_SCALES):
        totals = _rell(site, weights, max(1, round(scale * n_sites)), replicates, rng)
        shares[k] = _best_share(totals)
    return np.array([_au_p_value(shares[:, i], replicates) for i in range(n_trees)])


def _au_p_value(shares: np.ndarray, replicates: int) -> float:
    """``1 - Phi(v - c)`` from one tree's bootstrap probabilities at :data:`AU_SCALES`,
    by weighted least squares on the scales where BP is neither 0 nor 1."""
    usable = (shares > 0) & (shares < 1)
    if usable.sum() < 2:  # BP all but always 0 (or 1): the tree is rejected (or not)
        return float(shares.mean() >= 0.5)
    bp, scale = shares[usable], AU_SCALES[usable]
    z = ndtri(1 - bp)
    sigma2 = 1 / scale
    y = z * np.sqrt(sigma2)  # = v + c sigma^2
    # Var(BP) = BP (1 - BP) / B; Var(z) = Var(BP) / phi(z)^2; Var(y) = sigma^2 Var(z)
    density = np.exp(-z**2 / 2) / np.sqrt(2 * np.pi)
    variance = sigma2 * bp * (1 - bp) / (replicates * density**2)
    design = np.stack([np.ones_like(sigma2), sigma2], axis=1) / np.sqrt(variance)[:, None]
    (v, c), *_ = np.linalg.lstsq(design, y / np.sqrt(variance), rcond=None)
    return float(1 - ndtr(v - c))
