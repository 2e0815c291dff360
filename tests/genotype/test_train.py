"""Training: exact labels, balanced classes, reproducible and resumable runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phylovi.errors import ConfigError
from phylovi.genotype.nets import GenotypeClassifier
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free
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
