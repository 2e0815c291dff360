"""Tree-topology tests (RELL) against an exact enumeration of the bootstrap (IQ-TREE's
table is in test_iqtree_values.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from phylovi.errors import ConfigError
from phylovi.likelihood.topology_tests import BEST_WITHIN, topology_tests

def exact_bootstrap(site, weights):
    """Every replicate of the sites (as pattern counts) with its multinomial probability."""
    n = int(weights.sum())
    shares = weights / n
    for counts in itertools.product(range(n + 1), repeat=len(weights)):
        if sum(counts) == n:
            counts = np.array(counts)
            log_p = (math.lgamma(n + 1) - sum(math.lgamma(c + 1) for c in counts)
                     + float(counts @ np.log(shares)))
            yield math.exp(log_p), counts @ site.T


def test_rell_values_match_an_exact_enumeration_of_the_bootstrap():
    rng = np.random.default_rng(0)
    weights = np.array([3.0, 2.0, 2.0, 1.0])  # 8 sites, 4 patterns: 165 replicates in all
    site = rng.uniform(-6, -1, (3, 4))
    observed = site @ weights
    exact = {"bp_rell": np.zeros(3), "c_elw": np.zeros(3), "p_sh": np.zeros(3),
             "p_kh": np.zeros(3)}
    best, second = np.argsort(-observed)[:2]
    for p, totals in exact_bootstrap(site, weights):
        shared = totals >= totals.max() - BEST_WITHIN  # trees this close share the win
        exact["bp_rell"] += p * shared / shared.sum()
        exact["c_elw"] += p * np.exp(totals - totals.max()) / np.exp(totals - totals.max()).sum()
        centred = totals - observed  # a replicate's mean is the observed total
        exact["p_sh"] += p * (centred.max() - centred >= observed.max() - observed)
        for i in range(3):
            other = second if i == best else best
            d = observed[other] - observed[i]
            exact["p_kh"][i] += p * (totals[other] - totals[i] - d >= d)
    result = topology_tests(site, weights, replicates=40000, seed=1)
    for name, values in exact.items():
        np.testing.assert_allclose(getattr(result, name), values, atol=0.01, err_msg=name)


def test_properties_that_always_hold():
    rng = np.random.default_rng(4)
    site = rng.uniform(-5, -0.5, (5, 30))
    weights = rng.integers(1, 4, 30).astype(float)
    result = topology_tests(site, weights, replicates=2000, seed=2)
    best = int(np.argmax(site @ weights))
    second = int(np.argsort(-(site @ weights))[1])
    assert result.bp_rell.sum() == pytest.approx(1)
    assert result.c_elw.sum() == pytest.approx(1)
    assert result.p_sh[best] == 1 and result.delta[best] == 0
    assert result.p_kh[best] + result.p_kh[second] == pytest.approx(1)
    assert ((0 <= result.p_au) & (result.p_au <= 1)).all()
    again = topology_tests(site, weights, replicates=2000, seed=2)
    assert np.array_equal(again.p_au, result.p_au)  # the seed fixes every draw


def test_an_impossible_tree_is_rejected_and_the_others_tested():
    rng = np.random.default_rng(5)
    site = rng.uniform(-5, -0.5, (3, 20))
    site[1, 4] = -np.inf
    result = topology_tests(site, np.ones(20), replicates=1000, seed=1)
    assert result.log_likelihoods[1] == -np.inf
    for name in ("bp_rell", "p_kh", "p_sh", "c_elw", "p_au"):
        assert getattr(result, name)[1] == 0
    assert result.bp_rell.sum() == pytest.approx(1)


@pytest.mark.parametrize("site, weights, replicates, message", [
    (np.zeros((1, 3)), np.ones(3), 10, "T >= 2"),
    (np.zeros((2, 3)), np.ones(4), 10, "T >= 2"),
    (np.zeros((2, 3)), np.ones(3), 0, "at least 1 replicate"),
    (np.full((2, 3), -np.inf), np.ones(3), 10, "two trees whose log-likelihood is finite"),
])
def test_bad_input_is_refused(site, weights, replicates, message):
    with pytest.raises(ConfigError, match=message):
        topology_tests(site, weights, replicates)



def test_identical_trees_get_identical_results_whatever_their_order():
    rng = np.random.default_rng(6)
    distinct = rng.uniform(-5, -0.5, (3, 40))
    weights = np.ones(40)
    site = distinct[[0, 1, 1, 2]]  # tree 1 given twice
    result = topology_tests(site, weights, replicates=3000, seed=4)
    for name in ("log_likelihoods", "delta", "bp_rell", "p_kh", "p_sh", "c_elw", "p_au"):
        values = getattr(result, name)
        assert values[1] == values[2], name
    # the copies share the bootstrap proportion that the tree has alone
    alone = topology_tests(distinct, weights, replicates=3000, seed=4)
    assert result.bp_rell[1] + result.bp_rell[2] == pytest.approx(alone.bp_rell[1], abs=0.03)
    reordered = topology_tests(site[[3, 2, 1, 0]], weights, replicates=3000, seed=4)
    np.testing.assert_allclose(reordered.bp_rell[[3, 2, 1, 0]], result.bp_rell, atol=0.03)


def test_the_au_fit_recovers_a_known_distance_and_curvature():
    from scipy.special import ndtr

    from phylovi.likelihood.topology_tests import AU_SCALES, _au_p_value

    replicates = 10**7  # the expected wins, rounded: the fit must find v and c again
    for v, c in ((0.5, 0.3), (1.5, -0.4), (-0.3, 0.2)):
        wins = np.round(replicates * (1 - ndtr(v * np.sqrt(AU_SCALES) + c / np.sqrt(AU_SCALES))))
        assert _au_p_value(wins, replicates) == pytest.approx(1 - ndtr(v - c), abs=2e-4)


def test_a_handful_of_wins_gives_no_curvature():
    from phylovi.likelihood.topology_tests import _au_p_value

    # a DS1 tree 84 nats below the best: 3 wins in 100,000 replicates, at middle scales; a
    # curvature fitted to them made p_au 0.16 (IQ-TREE: 0.017)
    wins = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    assert _au_p_value(wins, 10000) < 1e-4
    assert _au_p_value(np.zeros(10), 10000) == 0
    assert _au_p_value(np.full(10, 10000.0), 10000) == 1


def test_trees_that_differ_by_rounding_share_their_wins():
    # trees 2 and 3 differ by 1e-7 nats a site (a near-zero edge): rounding, not data,
    # decides which of them is higher in a replicate, so they must come out alike
    rng = np.random.default_rng(8)
    base = rng.uniform(-6, -1, (2, 300))
    site = np.stack([base[0], base[1], base[1] + rng.normal(0, 1e-7, 300)])
    result = topology_tests(site, np.ones(300), replicates=4000, seed=2)
    assert result.bp_rell[1] == pytest.approx(result.bp_rell[2], abs=0.01)
    assert result.p_au[1] == pytest.approx(result.p_au[2], abs=0.03)
