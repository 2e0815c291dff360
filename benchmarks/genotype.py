"""Genotype networks: accuracy on fresh simulated matrices of several sizes, and speeds.

    .venv/bin/python benchmarks/genotype.py [--n 5000] [--threads 2]

For each task's shipped model (phylovi/genotype/models/) and each size
(10x10, 25x20, 50x30, 100x50; the shipped models were trained on 5-60 cells
and 5-30 mutations, so 100x50 is unseen), it simulates fresh matrices with
exact labels and reports accuracy, AUC and expected calibration error. Then
it times simulation, the exact batched three-gametes test and network
inference (medians of 3 runs). Prints Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from phylovi.genotype.nets import load_model
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free
from phylovi.genotype.simulate import simulate
from phylovi.genotype.train import auc, calibration_error, labelled_batch

SIZES = [(10, 10), (25, 20), (50, 30), (100, 50)]
NOISE = [(0.002, 0.1, 0.0), (0.01, 0.2, 0.1)]


def median_seconds(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def accuracy_table(n: int) -> None:
    print("| task | cells x mutations | alpha | beta | missing | accuracy | AUC | calibration error |")
    print("|---|---|---|---|---|---|---|---|")
    for task in ("branching", "noise"):
        model = load_model(task)
        for cells, mutations in SIZES:
            for alpha, beta, missing in NOISE:
                rng = np.random.default_rng([cells, mutations, int(beta * 100)])
                observed, labels = labelled_batch(task, n, cells, mutations, alpha, beta, missing, rng)
                p = model.predict(observed)
                print(f"| {task} | {cells} x {mutations} | {alpha} | {beta} | {missing} | "
                      f"{np.mean((p > 0.5) == (labels > 0.5)):.4f} | {auc(p, labels):.4f} | "
                      f"{calibration_error(p, labels):.4f} |")


def speed_table() -> None:
    print("\n| size | batch | simulation (matrices/s) | exact three-gametes test (matrices/s) | "
          "branching network (matrices/s) | noise network (matrices/s) |")
    print("|---|---|---|---|---|---|")
    models = {task: load_model(task) for task in ("branching", "noise")}
    for (cells, mutations), batch in (((10, 10), 10000), ((100, 50), 1000)):
        simulated = simulate(batch, cells, mutations, 0.002, 0.1, seed=1)
        observed = simulated.observed
        sim = median_seconds(lambda: simulate(batch, cells, mutations, 0.002, 0.1, seed=2))
        exact = median_seconds(lambda: batch_is_conflict_free(np.where(observed == 1, 1, 0)))
        rates = [batch / median_seconds(lambda m=m: m.predict(observed)) for m in models.values()]
        print(f"| {cells} x {mutations} | {batch} | {batch / sim:.0f} | {batch / exact:.0f} | "
              f"{rates[0]:.0f} | {rates[1]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="matrices per accuracy cell")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    accuracy_table(args.n)
    speed_table()


if __name__ == "__main__":
    main()
