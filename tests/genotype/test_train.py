"""Training: exact labels, balanced classes, reproducible and resumable runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phylovi.errors import ConfigError, OutputError
from phylovi.genotype.nets import GenotypeClassifier, GenotypeCorrector, GenotypeModel
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free, is_perfect_phylogeny
from phylovi.genotype.simulate import simulate
from phylovi.genotype.train import (
    TrainSettings,
    auc,
    calibration_error,
    labelled_batch,
    train,
    training_device,
)

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
    # fewer steps than the checkpoint has trained would silently keep the longer model
    with pytest.raises(ConfigError, match="already trained"):
        train(TrainSettings(**{**TINY, "steps": 3}), tmp_path / "b.pt", device="cpu",
              progress=False)


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
    ({"width": 0}, "width must be at least 1"), ({"width": 10**9}, "width must be at most 4096"),
    ({"batch_size": 10**7}, "batch_size must be at most 65536"),
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


@pytest.mark.parametrize("content", [b"\x9c garbage", "dict without entries", "bare tensor"])
def test_a_damaged_checkpoint_is_named_and_nothing_is_written(tmp_path, content):
    output = tmp_path / "m.pt"
    checkpoint = tmp_path / "m.pt.checkpoint"
    if isinstance(content, bytes):
        checkpoint.write_bytes(content)
    else:
        torch.save({"model": {}} if content.startswith("dict") else torch.zeros(2), checkpoint)
    with pytest.raises(ConfigError, match="not a usable .* checkpoint") as caught:
        train(TrainSettings(**TINY), output, device="cpu", progress=False)
    assert str(caught.value).startswith(f"{checkpoint}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt.checkpoint"]


@pytest.mark.parametrize("where", ["absent/m.pt", "folder"])
def test_an_output_that_cannot_be_written_fails_before_training(tmp_path, where, monkeypatch):
    (tmp_path / "folder").mkdir()

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr("phylovi.genotype.train._optimise", no_training)
    with pytest.raises(OutputError, match="cannot write here|is a folder"):
        train(TrainSettings(**TINY), tmp_path / where, device="cpu", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]
    assert list((tmp_path / "folder").iterdir()) == []


def test_a_folder_in_place_of_the_checkpoint_fails_before_training(tmp_path):
    (tmp_path / "m.pt.checkpoint").mkdir()
    with pytest.raises(OutputError, match="m.pt.checkpoint: is a folder"):
        train(TrainSettings(**TINY), tmp_path / "m.pt", device="cpu", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt.checkpoint"]


def test_a_failed_training_leaves_only_its_checkpoint(tmp_path, monkeypatch):
    def fail_on_the_curve(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("phylovi.genotype.train._write_curve", fail_on_the_curve)
    with pytest.raises(OSError):
        train(TrainSettings(**TINY), tmp_path / "m.pt", device="cpu", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt.checkpoint"]  # to resume from


@pytest.mark.parametrize("name,fragment", [("gpu", "unknown device 'gpu'"),
                                           ("meta", "unknown device 'meta'"),
                                           ("cuda:99", "torch sees")])
def test_a_bad_device_is_refused(name, fragment):
    with pytest.raises(ConfigError, match=fragment):
        training_device(name)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_torch_cannot_take_is_refused(seed, tmp_path):
    with pytest.raises(ConfigError, match="seed must be from 0 to 2\\*\\*64 - 1"):
        train(TrainSettings(**{**TINY, "seed": seed}), tmp_path / "x.pt", progress=False)


def test_the_settings_name_every_network_and_only_those():
    from phylovi.genotype.nets import ARCHITECTURES
    from phylovi.genotype.settings import TASKS

    assert TASKS == tuple(ARCHITECTURES)
