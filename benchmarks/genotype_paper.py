"""The paper's fixed-size networks at the paper's settings, beside phylovi's default models.

    .venv/bin/python benchmarks/genotype_paper.py [--quick] [--threads 2]

Sadeqi Azer et al. (iScience 2020) report (preprint abstract; see
../shared/references/genotype.md): branching inference at 100 x 100 with
10-15% noise, mostly false negatives, about 98% accurate; the three-gametes
network at 10 x 10, about 90%. This script trains their architectures
(:class:`~phylovi.genotype.nets.PaperBranchingMLP`,
:class:`~phylovi.genotype.nets.PaperNoiseMLP`) on phylovi's simulator with
their protocol, and scores them and phylovi's shipped models on the same
fresh test matrices:

- branching: 100 x 100, 5,000 matrices per class, trained without noise for
  200 epochs, tested with alpha = 0.002 and beta = 0.10 or 0.15;
- noise: 10 x 10 at their two settings (alpha, beta) = (0.002, 0.1) and
  (0.0004, 0.02), trained on clean matrices (label 0) against noisy ones with
  at least one conflict (label 1), 200,000 matrices (they used 2,000,000),
  then tested on that protocol *and* on the fair one (noisy conflict-free
  against noisy conflicting), where detecting noise no longer suffices.

Linear matrices come from phylovi's size-matched generator, not the paper's
staircase, so column sizes and density give nothing away. Prints Markdown.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from phylovi.genotype.nets import GenotypeClassifier, PaperBranchingMLP, PaperNoiseMLP, load_model
from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free
from phylovi.genotype.simulate import add_noise, simulate
from phylovi.genotype.train import fit, labelled_batch


def accuracy(model, observed: np.ndarray, labels: np.ndarray) -> float:
    if not isinstance(model, GenotypeClassifier):
        model = GenotypeClassifier(model, "")
    return float(np.mean((model.predict(observed) > 0.5) == (labels > 0.5)))


def branching_rows(n_per_class: int, epochs: int, n_test: int) -> list[str]:
    rng = np.random.default_rng(1)
    train = simulate(2 * n_per_class, 100, 100, linear_fraction=0.5, seed=rng)
    started = time.perf_counter()
    mlp = fit(PaperBranchingMLP(100, 100), train.true, (~train.linear).astype(np.float32), epochs,
              seed=1, device="cpu")
    seconds = time.perf_counter() - started
    shipped = load_model("branching")
    rows = []
    for beta in (0.10, 0.15):
        test = simulate(n_test, 100, 100, 0.002, beta, linear_fraction=0.5, seed=rng)
        labels = (~test.linear).astype(np.float32)
        rows.append(f"| branching | 100 x 100 | 0.002 | {beta} | paper: train clean, test noisy | "
                    f"~98% | {accuracy(mlp, test.observed, labels):.4f} | "
                    f"{accuracy(shipped, test.observed, labels):.4f} | {seconds:.0f} |")
    return rows


def paper_noise_pairs(n: int, alpha: float, beta: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """The paper's protocol: clean 10 x 10 matrices (0) and noisy ones with a conflict (1)."""
    clean = simulate(n // 2, 10, 10, linear_fraction=0.0, seed=rng).true
    noisy = []
    while sum(map(len, noisy)) < n - n // 2:
        batch = add_noise(simulate(n, 10, 10, seed=rng).true, alpha, beta, 0.0, rng)
        noisy.append(batch[~batch_is_conflict_free(batch)])
    noisy = np.concatenate(noisy)[: n - n // 2]
    observed = np.concatenate([clean, noisy])
    labels = np.concatenate([np.zeros(len(clean)), np.ones(len(noisy))]).astype(np.float32)
    order = rng.permutation(len(observed))
    return observed[order], labels[order]


def noise_rows(n_train: int, epochs: int, n_test: int) -> list[str]:
    shipped = load_model("noise")
    rows = []
    for alpha, beta in ((0.002, 0.1), (0.0004, 0.02)):
        rng = np.random.default_rng([2, int(beta * 1000)])
        observed, labels = paper_noise_pairs(n_train, alpha, beta, rng)
        started = time.perf_counter()
        mlp = fit(PaperNoiseMLP(10, 10), observed, labels, epochs, seed=2, device="cpu")
        seconds = time.perf_counter() - started
        fair_x, fair_y = labelled_batch("noise", 2 * n_train, 10, 10, alpha, beta, 0.0, rng)
        started = time.perf_counter()
        fair_mlp = fit(PaperNoiseMLP(10, 10), fair_x, fair_y, epochs, seed=2, device="cpu")
        fair_seconds = time.perf_counter() - started
        paper_x, paper_y = paper_noise_pairs(n_test, alpha, beta, rng)
        test_x, test_y = labelled_batch("noise", n_test, 10, 10, alpha, beta, 0.0, rng)
        rows.append(f"| noise | 10 x 10 | {alpha} | {beta} | paper: clean vs noisy with conflict | "
                    f"~90% | {accuracy(mlp, paper_x, paper_y):.4f} | "
                    f"{accuracy(shipped, paper_x, paper_y):.4f} | {seconds:.0f} |")
        rows.append(f"| noise | 10 x 10 | {alpha} | {beta} | fair: noisy conflict-free vs noisy "
                    f"conflicting (paper MLP trained on paper pairs) | - | "
                    f"{accuracy(mlp, test_x, test_y):.4f} | {accuracy(shipped, test_x, test_y):.4f} | - |")
        rows.append(f"| noise | 10 x 10 | {alpha} | {beta} | fair (paper MLP trained on fair "
                    f"pairs, {len(fair_y)}) | - | {accuracy(fair_mlp, test_x, test_y):.4f} | "
                    f"{accuracy(shipped, test_x, test_y):.4f} | {fair_seconds:.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, and of the branching epochs")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = 10 if args.quick else 1
    print("| task | size | alpha | beta | protocol | paper reports | paper's network (phylovi-trained) "
          "| phylovi default (shipped) | training seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in branching_rows(5000 // scale, 200 // scale, 2000):
        print(row, flush=True)
    for row in noise_rows(200_000 // scale, 10, 2000):
        print(row, flush=True)


if __name__ == "__main__":
    main()
