"""The simulator against coalescent theory, its own labels and its noise rates."""

from __future__ import annotations

import numpy as np
import pytest

from phylovi.errors import ConfigError
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free, batch_is_linear
from phylovi.genotype.simulate import clonal_matrices, coalescent_matrices, linear_like, simulate


def test_three_cell_spectrum_matches_the_coalescent():
    """With a fixed number of mutations (ms -s), a mutation falls on a branch with probability
    length / total length. For 3 cells the lone internal branch lasts T2 ~ Exp(1) and the total
    is 3 T3 + 2 T2 with 3 T3 ~ Exp(1), so a mutation is a doubleton with probability
    E[T2 / (3 T3 + 2 T2)] = 1 - ln 2 (the ratio of two Exp(1) sums is uniform)."""
    matrices = coalescent_matrices(50000, 3, 4, np.random.default_rng(1))
    carriers = matrices.sum(1).ravel()
    assert set(np.unique(carriers)) == {1, 2}
    # 200,000 correlated mutations from 50,000 trees: standard error about 0.0015.
    assert (carriers == 2).mean() == pytest.approx(1 - np.log(2), abs=0.006)


def test_larger_genealogies_have_the_neutral_external_length():
    """Singletons carry the external length: E[L_ext / L] lies between the Poisson-model
    fraction 1/H_{n-1} and 1, and carriers range over 1..n-1."""
    n = 8
    carriers = coalescent_matrices(20000, n, 5, np.random.default_rng(2)).sum(1).ravel()
    assert carriers.min() == 1 and carriers.max() == n - 1
    harmonic = (1 / np.arange(1, n)).sum()
    assert 1 / harmonic < (carriers == 1).mean() < 0.5
    # The spectrum decreases with the number of carriers, as 1/i does.
    spectrum = np.bincount(carriers, minlength=n)[1:]
    assert np.all(np.diff(spectrum) < 0)


def test_true_matrices_are_conflict_free_and_labels_are_right():
    batch = simulate(3000, 10, 10, alpha=0.01, beta=0.2, missing=0.1, linear_fraction=0.5, seed=3)
    assert batch_is_conflict_free(batch.true).all()
    assert batch.linear.mean() == pytest.approx(0.5, abs=0.05)
    # A branching coalescent at 10 x 10 is almost never linear.
    assert batch.linear.sum() < 0.55 * len(batch)
    assert np.array_equal(batch.linear, batch_is_linear(batch.true))
    noisy = np.where(batch.observed == 1, 1, 0)
    assert np.array_equal(batch.conflict_free, batch_is_conflict_free(noisy))
    assert 0.05 < batch.conflict_free.mean() < 0.95


def test_linear_matrices_keep_the_column_sizes():
    rng = np.random.default_rng(4)
    branching = coalescent_matrices(500, 12, 9, rng)
    linear = linear_like(branching, rng)
    assert np.array_equal(np.sort(linear.sum(1), 1), np.sort(branching.sum(1), 1))
    assert batch_is_linear(linear).all() and batch_is_conflict_free(linear).all()


@pytest.mark.parametrize("prior", ["clonal", "mixed"])
def test_clonal_matrices_are_conflict_free_with_exact_labels(prior):
    batch = simulate(2000, 15, 9, alpha=0.01, beta=0.2, missing=0.1, linear_fraction=0.5,
                     seed=6, prior=prior)
    assert batch_is_conflict_free(batch.true).all()
    assert np.array_equal(batch.linear, batch_is_linear(batch.true))
    assert 0.3 < batch.linear.mean() < 0.9


def test_clonal_matrices_have_few_distinct_cells_and_truncal_mutations():
    matrices = clonal_matrices(500, 40, 30, np.random.default_rng(7), max_clones=5)
    # At most 5 clones and the normal root: at most 6 distinct cells, whatever the size.
    assert max(len(np.unique(x, axis=0)) for x in matrices) <= 6
    # Unlike the coalescent, some mutations are carried by every cell.
    assert (matrices.sum(1) == 40).any()


def test_two_clonal_mutations_branch_with_the_clone_tree():
    """With m = 2: one clone (probability 1/2) gives identical columns; two clones nest when
    clone 2 descends from clone 1 and branch when both hang from the root (1/2 each). So the
    true phylogeny branches with probability 1/4, less the rare cases where one of the two
    sibling clones draws no cell (about 2/n)."""
    matrices = clonal_matrices(20000, 400, 2, np.random.default_rng(8))
    branching = ~batch_is_linear(matrices)
    assert branching.mean() == pytest.approx(0.25 * (1 - 2 / 400), abs=0.01)


def test_noise_rates():
    batch = simulate(2000, 10, 10, alpha=0.05, beta=0.2, missing=0.1, seed=5)
    present = batch.observed != 3
    ones, zeros = (batch.true == 1) & present, (batch.true == 0) & present
    assert (batch.observed[ones] == 0).mean() == pytest.approx(0.2, abs=0.01)
    assert (batch.observed[zeros] == 1).mean() == pytest.approx(0.05, abs=0.005)
    assert (~present).mean() == pytest.approx(0.1, abs=0.005)


def test_the_same_seed_gives_the_same_matrices():
    first = simulate(50, 6, 7, alpha=0.01, beta=0.1, linear_fraction=0.5, seed=9)
    again = simulate(50, 6, 7, alpha=0.01, beta=0.1, linear_fraction=0.5, seed=9)
    other = simulate(50, 6, 7, alpha=0.01, beta=0.1, linear_fraction=0.5, seed=10)
    assert np.array_equal(first.observed, again.observed) and np.array_equal(first.true, again.true)
    assert not np.array_equal(first.true, other.true)


def test_bad_rates_are_rejected():
    with pytest.raises(ConfigError, match="beta"):
        simulate(1, 5, 5, beta=1.5)
    with pytest.raises(ConfigError, match="valid priors: coalescent, clonal, mixed"):
        simulate(1, 5, 5, prior="yule")


@pytest.mark.parametrize("arguments,fragment", [
    ((1, 1, 5), "n_cells must be an integer of at least 2, got 1"),
    ((1, 5, 0), "n_mutations must be an integer of at least 1"),
    ((-1, 5, 5), "n_matrices must be an integer of at least 0"),
    (("2", 5, 5), "n_matrices must be an integer of at least 0, got '2'"),
    ((1, 5.5, 5), "n_cells must be an integer of at least 2, got 5.5"),
])
def test_bad_sizes_are_rejected(arguments, fragment):
    with pytest.raises(ConfigError, match=fragment):
        simulate(*arguments, prior="clonal")


@pytest.mark.parametrize("seed", [-1, "x", True])
def test_a_bad_seed_is_rejected(seed):
    with pytest.raises(ConfigError, match=f"seed must be a non-negative integer or a numpy "
                                          f"Generator, got {seed!r}"):
        simulate(1, 5, 5, seed=seed)


@pytest.mark.parametrize("rate", ["x", None, 2.0])
def test_a_bad_rate_is_rejected(rate):
    with pytest.raises(ConfigError, match="alpha must be a number in \\[0, 1\\]"):
        simulate(1, 5, 5, alpha=rate)
