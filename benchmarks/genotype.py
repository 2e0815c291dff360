"""Genotype networks: accuracy on fresh simulated matrices of several sizes beside the
classical baseline, and speeds.

    .venv/bin/python benchmarks/genotype.py [--n 5000] [--threads 2]

For each task's shipped model (phylovi/genotype/models/) and each size
(10x10, 25x20, 50x30, 100x50; larger than the training sizes from 50x30 on),
it simulates fresh matrices with exact labels and reports the network's
accuracy, AUC and calibration error (per-entry error for elimination) and,
on a subset (the integer program is slow on large matrices), the classical
baseline's: the most likely conflict-free correction under the true rates
(phylovi.genotype.evaluate). Then it times simulation, the exact batched
three-gametes test and network inference (medians of 3 runs). Prints Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from phylovi.genotype.evaluate import evaluate_model
from phylovi.genotype.nets import load_model
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free
from phylovi.genotype.simulate import simulate

SIZES = [(10, 10), (25, 20), (50, 30), (100, 50)]
NOISE = [(0.002, 0.1, 0.0), (0.01, 0.2, 0.1)]


def median_seconds(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


BASELINE_MATRICES = {(10, 10): 200, (25, 20): 50, (50, 30): 20, (100, 50): 5}


def accuracy_table(n: int, tasks: list[str], prior: str = "coalescent") -> None:
    print("| task | cells x mutations | alpha | beta | missing | network | AUC | calibration error "
          "| network µs/matrix | baseline (matrices) | network on the same | baseline ms/matrix |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for task in tasks:
        model = load_model(task)
        for cells, mutations in SIZES:
            for alpha, beta, missing in NOISE:
                r = evaluate_model(model, cells, mutations, alpha, beta, missing,
                                   n if task != "eliminate" else n // 5,
                                   seed=cells * 1000 + mutations + int(beta * 100),
                                   n_baseline=BASELINE_MATRICES[cells, mutations], time_limit=60,
                                   prior=prior)
                if task == "eliminate":
                    network = (f"entry error {r['entry_error']:.4f} (observed "
                               f"{r['observed_entry_error']:.4f}; conflict-free before repair "
                               f"{r['conflict_free_before_repair']:.2f})")
                    auc_ce = "- | -"
                    baseline = f"entry error {r['baseline_entry_error']:.4f}"
                    same = f"{r['network_entry_error_on_same']:.4f}"
                else:
                    network = f"accuracy {r['accuracy']:.4f}"
                    auc_ce = f"{r['auc']:.4f} | {r['calibration_error']:.4f}"
                    baseline = f"accuracy {r['baseline_accuracy']:.4f}"
                    same = f"{r.get('network_accuracy_on_same', r['accuracy']):.4f}"
                limited = (f", {r['baseline_time_limited']} hit the time limit"
                           if r.get("baseline_time_limited") else "")
                print(f"| {task} | {cells} x {mutations} | {alpha} | {beta} | {missing} | {network} | "
                      f"{auc_ce} | {r['microseconds_per_matrix']:.0f} | {baseline} "
                      f"({r['baseline_matrices']}{limited}) | {same} | "
                      f"{r['baseline_microseconds_per_matrix'] / 1000:.2f} |", flush=True)


def speed_table() -> None:
    print("\n| size | batch | simulation (matrices/s) | exact three-gametes test (matrices/s) | "
          "branching network (matrices/s) | noise network (matrices/s) | "
          "eliminate network, with repair (matrices/s) |")
    print("|---|---|---|---|---|---|---|")
    models = {task: load_model(task) for task in ("branching", "noise", "eliminate")}
    for (cells, mutations), batch in (((10, 10), 10000), ((100, 50), 1000)):
        simulated = simulate(batch, cells, mutations, 0.002, 0.1, seed=1)
        observed = simulated.observed
        sim = median_seconds(lambda: simulate(batch, cells, mutations, 0.002, 0.1, seed=2))
        exact = median_seconds(lambda: batch_is_conflict_free(np.where(observed == 1, 1, 0)))
        rates = [batch / median_seconds(lambda m=m: m.predict(observed)) for m in models.values()]
        print(f"| {cells} x {mutations} | {batch} | {batch / sim:.0f} | {batch / exact:.0f} | "
              f"{rates[0]:.0f} | {rates[1]:.0f} | {rates[2]:.0f} |")


def training_table(steps: int = 60) -> None:
    """Seconds per training step at each shipped model's own settings, and the time that gives
    for its 2,000 steps (validation, every 100 steps on 2,000 matrices, included)."""
    import tempfile
    from dataclasses import fields

    from phylovi.genotype.train import TrainSettings, train

    print("\n| task | ranges (cells, mutations) | seconds per step | validation seconds "
          "| projected time for the shipped 2,000 steps (min) |")
    print("|---|---|---|---|---|")
    for task in ("branching", "noise", "eliminate"):
        saved = load_model(task).settings
        settings = TrainSettings(**{f.name: saved[f.name] for f in fields(TrainSettings)
                                    if f.name in saved})
        with tempfile.TemporaryDirectory() as folder:
            settings.steps, settings.validate_every = steps, steps
            started = time.perf_counter()
            train(settings, f"{folder}/m.pt", device="cpu", progress=False)
            total = time.perf_counter() - started
            settings.steps = settings.validate_every = 1
            started = time.perf_counter()
            train(settings, f"{folder}/v.pt", device="cpu", progress=False)
            one = time.perf_counter() - started
        per_step = (total - one) / (steps - 1)
        validation = max(one - per_step, 0.0)
        projected = (2000 * per_step + 20 * validation) / 60
        print(f"| {task} | {tuple(saved['cells'])}, {tuple(saved['mutations'])} | {per_step:.3f} "
              f"| {validation:.1f} | {projected:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="matrices per accuracy cell")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", default="branching,noise,eliminate",
                        help="comma-separated tasks for the accuracy table")
    parser.add_argument("--tables", default="accuracy,speed,training",
                        help="comma-separated: accuracy, speed, training")
    parser.add_argument("--prior", default="coalescent", choices=("coalescent", "clonal", "mixed"),
                        help="tree prior of the accuracy table's matrices")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tables = args.tables.split(",")
    if "accuracy" in tables:
        accuracy_table(args.n, args.tasks.split(","), args.prior)
    if "speed" in tables:
        speed_table()
    if "training" in tables:
        training_table()


if __name__ == "__main__":
    main()
