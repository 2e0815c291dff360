"""Training: exact labels, balanced classes, reproducible and resumable runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phylovi.errors import ConfigError
from phylovi.genotype.nets import GenotypeClassifier, GenotypeCorrector, GenotypeModel
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free, is_perfect_phylogeny
from phylovi.genotype.simulate import simulate
from phylovi.genotype.train import TrainSettings, auc, calibration_error, labelled_batch, train

TINY = dict(cells=(4, 8), mutations=(4, 6), steps=6, batch_size=16, validate_every=3,
            n_validation=250, width=8, seed=3)


def test_noise_batches_are_balanced_and_labelled_exactly():
    rng = np.random.default_rng(0)
    observed, labels = labelled_batch("noise", 200, 8, 8, 0.01, 0.2, 0.1, rng)
    assert labels.mean() == pytest.approx(0.5)
    assert np.array_equal(labels == 1, ~batch_is_conflict_free(np.where(observed == 1, 1, 0)))


def test_auc_and_calibration_error():
    y = np.array([0, 0, 1, 1], dtype=float)
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), y) == pytest.approx(0.75)
    assert calibration_error(np.array([0.05, 0.05, 0.95, 0.95]), y) == pytest.approx(0.05)


def test_training_is_reproducible_and_resumes_exactly(tmp_path):
    straight = train(TrainSettings(**TINY), tmp_path / "a.pt", device="cpu", progress=False)
    half = train(TrainSettings(**{**TINY, "steps": 3}), tmp_path / "b.pt", device="cpu",
                 progress=False)
    resumed = train(TrainSettings(**TINY), tmp_path / "b.pt", device="cpu", progress=False)
    assert half["step"] == 3 and resumed == {**straight, "seconds": resumed["seconds"]}
    first = GenotypeClassifier.load(tmp_path / "a.pt").model.state_dict()
    second = GenotypeClassifier.load(tmp_path / "b.pt").model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert (tmp_path / "a.pt.csv").read_text().count("\n") == 3  # header + 2 validations
    assert (tmp_path / "a.pt.png").stat().st_size > 1000


def test_predict_takes_matrices_of_different_sizes(tmp_path):
    train(TrainSettings(**TINY), tmp_path / "m.pt", device="cpu", progress=False)
    model = GenotypeClassifier.load(tmp_path / "m.pt")
    rng = np.random.default_rng(1)
    small, large = rng.integers(0, 2, (5, 4)), rng.integers(0, 2, (9, 7))
    together = model.predict([small, large])
    assert together.shape == (2,) and np.all((0 < together) & (together < 1))
    assert together[1] == pytest.approx(model.predict(large[None])[0], abs=1e-6)


@pytest.mark.parametrize("change,fragment", [
    ({"task": "magic"}, "valid tasks"), ({"cells": (1, 5)}, "cells"), ({"beta": (0.2, 1.5)}, "beta"),
])
def test_bad_settings_are_rejected(change, fragment, tmp_path):
    with pytest.raises(ConfigError, match=fragment):
        train(TrainSettings(**{**TINY, **change}), tmp_path / "x.pt", progress=False)


class _Echo(torch.nn.Module):
    """Logits that round back to the observed matrix, conflicts and all."""

    def forward(self, matrices, mask=None, rates=None):
        return torch.where(matrices == 1, 2.0, -2.0)


def test_elimination_repairs_only_conflicting_outputs():
    observed = list(np.random.default_rng(3).integers(0, 2, (20, 6, 5)))
    observed += list(simulate(20, 6, 5, seed=3).true)                  # conflict-free
    observed.append(np.random.default_rng(4).integers(0, 2, (11, 8)))   # another size
    results = GenotypeCorrector(_Echo(), "eliminate").eliminate(observed)
    assert any(r.repaired for r in results) and not all(r.repaired for r in results)
    for x, result in zip(observed, results):
        assert result.matrix.shape == x.shape and is_perfect_phylogeny(result.matrix)
        assert result.repaired == (not is_perfect_phylogeny(x))
        if not result.repaired:
            assert np.array_equal(result.matrix, x)


def test_trained_eliminator_loads_and_predicts(tmp_path):
    train(TrainSettings(**{**TINY, "task": "eliminate"}), tmp_path / "e.pt", device="cpu",
          progress=False)
    model = GenotypeModel.load(tmp_path / "e.pt")
    assert isinstance(model, GenotypeCorrector)
    observed = np.random.default_rng(3).integers(0, 2, (3, 6, 5))
    corrected = model.predict(observed)
    assert corrected.shape == (3, 6, 5)
    assert all(is_perfect_phylogeny(x) for x in corrected)
