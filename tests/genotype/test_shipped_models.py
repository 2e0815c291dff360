"""The models phylovi ships, on fresh simulated matrices with exact labels.

Floors sit a few points under what ``benchmarks/genotype.py`` measured
(docs/genotype.md), so a broken or mis-shipped model fails while sampling
noise on a few hundred matrices does not.
"""

from __future__ import annotations

import numpy as np
import pytest

from phylovi.genotype import is_perfect_phylogeny, load_model
from phylovi.genotype.simulate import simulate
from phylovi.genotype.train import labelled_batch


@pytest.mark.parametrize("task,floor", [("branching", 0.95), ("noise", 0.9)])
def test_shipped_classifiers_are_accurate_at_10x10(task, floor):
    observed, labels = labelled_batch(task, 400, 10, 10, 0.002, 0.1, 0.05,
                                      np.random.default_rng(11))
    p = load_model(task).predict(observed)
    assert np.mean((p > 0.5) == (labels > 0.5)) >= floor


def test_shipped_eliminator_beats_the_observed_matrix():
    batch = simulate(200, 20, 12, 0.002, 0.2, 0.1, 0.5, seed=12)
    corrected = load_model("eliminate").predict(batch.observed)
    assert all(is_perfect_phylogeny(x) for x in corrected)
    observed_error = np.mean(np.where(batch.observed == 1, 1, 0) != batch.true)
    assert np.mean(corrected != batch.true) < 0.7 * observed_error


def test_a_prediction_does_not_depend_on_its_batch():
    x = simulate(50, 15, 10, 0.01, 0.2, 0.1, 0.5, seed=13).observed
    model = load_model("branching")
    together = model.predict(x)
    alone = np.concatenate([model.predict(x[k]) for k in range(0, 50, 7)])
    np.testing.assert_allclose(together[::7], alone, atol=1e-6)


def test_cells_and_mutations_without_a_one_do_not_move_the_branching_call():
    """An all-zero row or column fits a linear and a branching tree equally well, so adding
    normal cells or unobserved mutations must leave the probability as it was."""
    x = simulate(20, 12, 8, 0.002, 0.2, 0.1, 0.5, seed=14).observed
    padded = np.zeros((20, 12 + 30, 8 + 3), dtype=np.int8)
    padded[:, :12, :8] = x
    padded[:, 20:25, :] = 3  # cells with only missing entries carry no 1 either
    model = load_model("branching")
    np.testing.assert_allclose(model.predict(padded), model.predict(x), atol=1e-5)
