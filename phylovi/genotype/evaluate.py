"""Scoring a genotype network on fresh simulated matrices, beside the classical baseline.

The baseline for each task is what a user would run without a network:

- ``branching``: the likelihood-ratio call under the true (alpha, beta)
  (:func:`~phylovi.genotype.correct.likelihood_ratio_branching`: the most
  likely conflict-free and the most likely linear matrix, by exact integer
  programs, and branching when the first is more than 5 nats better);
- ``noise``: the exact three-gametes test on A' itself (it defines the label,
  so it is always right; its time is the point);
- ``eliminate``: the most likely conflict-free matrix
  (:func:`~phylovi.genotype.correct.most_likely_correction`), scored per entry against A.

The integer program is slow on large matrices, so it runs on the first
``n_baseline`` matrices only, each with a time limit (counted when hit; the
call is then the best matrix found, or the greedy
:func:`~phylovi.genotype.correct.tree_decode` if the program found none).
"""

from __future__ import annotations

import time

import numpy as np

from phylovi.genotype.correct import likelihood_ratio_branching, most_likely_correction
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free
from phylovi.genotype.simulate import simulate
from phylovi.genotype.train import auc, calibration_error, labelled_batch


def evaluate_model(model, n_cells: int, n_mutations: int, alpha: float, beta: float,
                   missing: float, n_matrices: int, seed: int, n_baseline: int = 100,
                   time_limit: float = 10.0, prior: str = "coalescent") -> dict:
    """Accuracy and speed of ``model`` (a :class:`~phylovi.genotype.nets.GenotypeModel`) and
    of the classical baseline on ``n_matrices`` simulated matrices; a flat dict."""
    rng = np.random.default_rng(seed)
    record = {"task": model.task, "cells": n_cells, "mutations": n_mutations, "alpha": alpha,
              "beta": beta, "missing": missing, "prior": prior, "matrices": n_matrices}
    if model.task == "eliminate":
        batch = simulate(n_matrices, n_cells, n_mutations, alpha, beta, missing, 0.5, rng, prior)
        return record | _score_elimination(model, batch, alpha, beta, n_baseline, time_limit)
    observed, labels = labelled_batch(model.task, n_matrices, n_cells, n_mutations, alpha, beta,
                                      missing, rng, prior)
    started = time.perf_counter()
    p = model.predict(observed)
    seconds = time.perf_counter() - started
    record |= {"positive_fraction": float(np.mean(labels > 0.5)),  # not float32's 0.41999998
               "accuracy": float(np.mean((p > 0.5) == (labels > 0.5))), "auc": auc(p, labels),
               "calibration_error": calibration_error(p, labels),
               "microseconds_per_matrix": 1e6 * seconds / n_matrices}
    k = min(n_baseline, n_matrices)
    if model.task == "noise":
        started = time.perf_counter()
        exact = ~batch_is_conflict_free(np.where(observed == 1, 1, 0))
        seconds = time.perf_counter() - started
        record |= {"baseline": "exact three-gametes test", "baseline_matrices": n_matrices,
                   "baseline_accuracy": float(np.mean(exact == (labels > 0.5))),
                   "baseline_microseconds_per_matrix": 1e6 * seconds / n_matrices}
        return record
    calls, seconds, limited = [], 0.0, 0
    for x in observed[:k]:
        call = likelihood_ratio_branching(x, alpha, beta, time_limit=time_limit)
        calls.append(call.branching)
        seconds += call.seconds
        limited += not call.optimal
    record |= {"baseline": "likelihood ratio, most likely conflict-free against linear "
                           "(integer programs)",
               "baseline_matrices": k,
               "baseline_accuracy": float(np.mean(np.array(calls) == (labels[:k] > 0.5))),
               "network_accuracy_on_same": float(np.mean((p[:k] > 0.5) == (labels[:k] > 0.5))),
               "baseline_microseconds_per_matrix": 1e6 * seconds / k,
               "baseline_time_limited": limited}
    return record


def _score_elimination(model, batch, alpha: float, beta: float, n_baseline: int,
                       time_limit: float) -> dict:
    started = time.perf_counter()
    results = model.eliminate(batch.observed, alpha, beta)
    seconds = time.perf_counter() - started
    corrected = np.stack([r.matrix for r in results])
    as_observed = np.where(batch.observed == 1, 1, 0)
    k = min(n_baseline, len(batch))
    record = {"entry_error": float(np.mean(corrected != batch.true)),
              "observed_entry_error": float(np.mean(as_observed != batch.true)),
              "conflict_free_before_repair": float(np.mean([not r.repaired for r in results])),
              "conflict_free_observed": float(np.mean(batch.conflict_free)),
              "exact_matrices": float(np.mean((corrected == batch.true).all((1, 2)))),
              "microseconds_per_matrix": 1e6 * seconds / len(batch)}
    errors, seconds, limited = [], 0.0, 0
    for x, true in zip(batch.observed[:k], batch.true[:k]):
        correction = most_likely_correction(x, alpha, beta, time_limit=time_limit)
        errors.append(np.mean(correction.matrix != true))
        seconds += correction.seconds
        limited += not correction.optimal
    return record | {"baseline": "most likely correction (integer program)", "baseline_matrices": k,
                     "baseline_entry_error": float(np.mean(errors)),
                     "network_entry_error_on_same": float(np.mean(corrected[:k] != batch.true[:k])),
                     "baseline_microseconds_per_matrix": 1e6 * seconds / k,
                     "baseline_time_limited": limited}
