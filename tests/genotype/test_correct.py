"""The classical corrections against an exhaustive search.

Every 0/1 matrix of a small shape is scored under the noise model; the
conflict-free ones (supports pairwise nested or disjoint, checked with sets
here, not with the module's code) give the true maximum, which the integer
program must reach exactly, and which the greedy decoder may not exceed.
"""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pytest

from phylovi.errors import ConfigError, GenotypeMatrixError
from phylovi.genotype.correct import (
    entry_log_likelihoods,
    most_likely_correction,
    most_likely_under,
    score,
    tree_decode,
)
from phylovi.genotype.simulate import simulate


def _supports(X):
    return [frozenset(np.flatnonzero(X[:, j]).tolist()) for j in range(X.shape[1])]


def _laminar(X) -> bool:
    s = _supports(X)
    return all(not (a & b) or a <= b or b <= a for a, b in combinations(s, 2))


def _chain(X) -> bool:
    s = _supports(X)
    return all(a <= b or b <= a for a, b in combinations(s, 2))


@pytest.fixture(scope="module")
def every_3x4():
    matrices = np.array(list(product([0, 1], repeat=12)), dtype=np.int8).reshape(-1, 3, 4)
    laminar = np.array([_laminar(X) for X in matrices])
    chain = np.array([_chain(X) for X in matrices])
    return matrices, laminar, chain


@pytest.mark.parametrize("seed", range(12))
def test_integer_program_reaches_the_exhaustive_maximum(every_3x4, seed):
    matrices, laminar, chain = every_3x4
    rng = np.random.default_rng(seed)
    observed = rng.integers(0, 2, (3, 4)).astype(np.int8)
    observed[rng.random((3, 4)) < 0.2] = 3
    alpha, beta = float(rng.uniform(0.01, 0.2)), float(rng.uniform(0.05, 0.4))
    log_one, log_zero = entry_log_likelihoods(observed, alpha, beta)
    scores = np.where(matrices == 1, log_one, log_zero).sum((1, 2))
    best = most_likely_correction(observed, alpha, beta)
    best_linear = most_likely_correction(observed, alpha, beta, linear=True)
    assert best.optimal and best_linear.optimal
    assert best.log_likelihood == pytest.approx(scores[laminar].max(), abs=1e-9)
    assert best_linear.log_likelihood == pytest.approx(scores[chain].max(), abs=1e-9)
    assert _laminar(best.matrix) and _chain(best_linear.matrix)
    greedy = tree_decode(log_one, log_zero)
    assert _laminar(greedy.matrix)
    assert greedy.log_likelihood <= best.log_likelihood + 1e-9
    assert greedy.log_likelihood >= log_zero.sum() - 1e-9   # never below the all-zero matrix


def test_identical_rows_are_solved_once_without_loss():
    # 4 cells x 3 mutations with two pairs of identical rows, against all 4,096 such matrices.
    matrices = np.array(list(product([0, 1], repeat=12)), dtype=np.int8).reshape(-1, 4, 3)
    laminar = np.array([_laminar(X) for X in matrices])
    rng = np.random.default_rng(7)
    for _ in range(5):
        observed = rng.integers(0, 2, (4, 3)).astype(np.int8)
        observed[2], observed[3] = observed[0], observed[1]
        log_one, log_zero = entry_log_likelihoods(observed, 0.1, 0.3)
        best = np.where(matrices == 1, log_one, log_zero).sum((1, 2))[laminar].max()
        assert most_likely_correction(observed, 0.1, 0.3).log_likelihood == pytest.approx(best)


@pytest.mark.slow
def test_linear_fit_of_gawad_patient_6_matches_phyolin(shared):
    # Phyolin's output for this matrix (../shared/data/genotype/README.md): 191 flips 0 -> 1, none 1 -> 0.
    from phylovi.genotype import GenotypeMatrix

    observed = GenotypeMatrix.read(shared("genotype") / "gawad2014_all_p6_146x10.tsv").values
    fit = most_likely_correction(observed, 1e-4, 0.2344, linear=True)
    assert fit.optimal
    assert ((fit.matrix == 1) & (observed == 0)).sum() == 191
    assert ((fit.matrix == 0) & (observed == 1)).sum() == 0


def test_zero_rates_fix_the_entries_they_make_certain():
    # alpha = 0: an observed 1 is a true 1; the 0s must then be raised to remove the conflict.
    observed = np.array([[1, 1], [1, 0], [0, 1]], dtype=np.int8)
    corrected = most_likely_correction(observed, 0.0, 0.2).matrix
    assert (corrected[observed == 1] == 1).all() and _laminar(corrected)
    with pytest.raises(GenotypeMatrixError, match="impossible"):
        most_likely_under(np.array([[-np.inf]]), np.array([[-np.inf]]))


def test_greedy_decoding_returns_a_conflict_free_input_unchanged():
    batch = simulate(300, 12, 15, linear_fraction=0.5, seed=5)
    for true in batch.true:
        log_one, log_zero = entry_log_likelihoods(true, 0.01, 0.1)
        assert np.array_equal(tree_decode(log_one, log_zero).matrix, true)


def test_greedy_decoding_is_conflict_free_on_arbitrary_scores():
    rng = np.random.default_rng(2)
    for _ in range(50):
        n, m = rng.integers(2, 30, 2)
        log_one, log_zero = rng.normal(size=(2, n, m))
        assert _laminar(tree_decode(log_one, log_zero).matrix)


def test_linear_greedy_decoding_nests_the_columns():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n, m = rng.integers(2, 30, 2)
        log_one, log_zero = rng.normal(size=(2, n, m))
        linear = tree_decode(log_one, log_zero, linear=True)
        assert _chain(linear.matrix)
        assert linear.log_likelihood >= score(np.zeros((n, m)), log_one, log_zero)


@pytest.mark.parametrize("linear", [False, True])
def test_a_time_limit_before_any_solution_falls_back_on_the_greedy_decoding(linear):
    observed = simulate(1, 30, 20, 0.002, 0.1, seed=1).observed[0]
    fit = most_likely_correction(observed, 0.002, 0.1, linear=linear, time_limit=0)
    assert not fit.optimal
    assert (_chain if linear else _laminar)(fit.matrix)
    log_one, log_zero = entry_log_likelihoods(observed, 0.002, 0.1)
    assert fit.log_likelihood == pytest.approx(score(fit.matrix, log_one, log_zero))


def test_a_solver_failure_falls_back_on_the_greedy_decoding(monkeypatch):
    import scipy.optimize

    from phylovi.genotype import correct

    def failing(*args, **kwargs):
        return scipy.optimize.OptimizeResult(x=None, status=4, message="solver failed")

    monkeypatch.setattr(scipy.optimize, "milp", failing)  # imported at each call
    observed = simulate(1, 12, 8, 0.002, 0.1, seed=2).observed[0]
    fit = correct.most_likely_correction(observed, 0.002, 0.1)
    log_one, log_zero = entry_log_likelihoods(observed, 0.002, 0.1)
    assert not fit.optimal and _laminar(fit.matrix)
    assert np.array_equal(fit.matrix, tree_decode(log_one, log_zero).matrix)


def test_a_time_limit_still_gives_a_branching_call():
    from phylovi.genotype.correct import likelihood_ratio_branching

    observed = simulate(1, 30, 20, 0.002, 0.1, seed=1).observed[0]
    call = likelihood_ratio_branching(observed, 0.002, 0.1, time_limit=0)
    assert not call.optimal and np.isfinite(call.log_likelihood_gap)


@pytest.mark.parametrize("time_limit", [-1.0, float("nan")])
def test_a_negative_or_nan_time_limit_is_refused(time_limit):
    with pytest.raises(ConfigError, match="time_limit"):
        most_likely_correction(np.zeros((3, 2), dtype=np.int8), 0.01, 0.1, time_limit=time_limit)


def test_likelihood_ratio_call_follows_the_exhaustive_gap(every_3x4):
    from phylovi.genotype.correct import likelihood_ratio_branching

    matrices, laminar, chain = every_3x4
    for seed in range(6):
        observed = np.random.default_rng(seed).integers(0, 2, (3, 4)).astype(np.int8)
        log_one, log_zero = entry_log_likelihoods(observed, 0.05, 0.2)
        scores = np.where(matrices == 1, log_one, log_zero).sum((1, 2))
        gap = scores[laminar].max() - scores[chain].max()
        for threshold in (0.0, 1.0, 5.0):
            call = likelihood_ratio_branching(observed, 0.05, 0.2, threshold)
            assert call.log_likelihood_gap == pytest.approx(gap, abs=1e-9)
            assert call.branching == (gap > threshold + 1e-9) or abs(gap - threshold) < 1e-9


def test_without_errors_a_branching_matrix_has_no_linear_fit():
    from phylovi.genotype.correct import likelihood_ratio_branching

    branching = np.array([[1, 0], [0, 1], [0, 0]], dtype=np.int8)
    assert most_likely_correction(branching, 0.0, 0.0, linear=True).matrix is None
    call = likelihood_ratio_branching(branching, 0.0, 0.0)
    assert call.branching and call.log_likelihood_gap == np.inf
