"""The KL table of Zhang & Matsen (2018): five tree-probability estimators on DS1-DS4.

    .venv/bin/python benchmarks/sbn_table.py [--data DS1 DS2 DS3 DS4] [--replicates 10]

For each data set, the ten MrBayes golden runs in ../shared/data/ds are pooled
into the reference distribution p (weights read as counts round(w * 750001),
as the paper's code does). Each of the ten short-run replicates is fitted
with SRF, CCD, SBN-SA, SBN-EM and SBN-EM-alpha (alpha = 1e-4), and
KL(p || q) = sum p log(p / max(q, eps)) is averaged over the replicates. The
script prints Markdown: the mean KL beside the published cell, the relative
difference, and the median time to fit one replicate and to compute its KL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from phylovi.sbn.posterior import TreePosterior

DS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ds"
METHODS = ("srf", "ccd", "sa", "em", "em-alpha")
LABELS = {"srf": "SRF", "ccd": "CCD", "sa": "SBN-SA", "em": "SBN-EM", "em-alpha": "SBN-EM-alpha"}
# Zhang & Matsen (NeurIPS 2018), table 1: mean KL(golden || fitted) over 10 replicates.
PUBLISHED = {
    "DS1": (0.0155, 0.6027, 0.0687, 0.0136, 0.0130),
    "DS2": (0.0122, 0.0218, 0.0218, 0.0199, 0.0128),
    "DS3": (0.3539, 0.2074, 0.1152, 0.1243, 0.0882),
    "DS4": (0.5322, 0.1952, 0.1021, 0.0763, 0.0637),
}
GOLDEN_SAMPLES = 750001


def golden_reference(name: str) -> TreePosterior:
    files = sorted((DS / "ground_truth" / "golden_run" / name).glob(f"rep_*/{name}.trprobs"))
    if len(files) != 10:
        sys.exit(f"expected 10 golden runs for {name} under {DS}, found {len(files)}")
    return TreePosterior.fit(files, method="srf", samples_per_file=GOLDEN_SAMPLES)


def replicate_kls(name: str, replicate: int, reference: TreePosterior):
    """KL, fit seconds and KL seconds of every method on one short-run replicate."""
    path = DS / "short_runs" / name / f"rep_{replicate}" / f"{name}.trprobs"
    out = {}
    for method in METHODS:
        start = time.perf_counter()
        model = TreePosterior.fit(path, method=method, taxa=reference.taxa)
        fitted = time.perf_counter()
        kl = model.kl(reference)
        out[method] = (kl, fitted - start, time.perf_counter() - fitted, model.info.iterations)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(PUBLISHED))
    parser.add_argument("--replicates", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    rows, timing = [], []
    for name in args.data:
        t0 = time.perf_counter()
        reference = golden_reference(name)
        read_seconds = time.perf_counter() - t0
        results = [replicate_kls(name, r, reference) for r in range(1, args.replicates + 1)]
        means = [float(np.mean([res[m][0] for res in results])) for m in METHODS]
        cells = []
        for mean, published in zip(means, PUBLISHED[name]):
            cells.append(f"{mean:.4f} ({published:.4f}, {100 * (mean / published - 1):+.0f}%)")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        per_method = []
        for m in METHODS:
            fit = statistics.median(res[m][1] for res in results)
            kl = statistics.median(res[m][2] for res in results)
            its = statistics.median(res[m][3] for res in results)
            per_method.append(f"{fit:.2f} / {kl:.2f}" + (f" ({its:.0f} it)" if its else ""))
        timing.append(f"| {name} | {len(reference.training)} | {read_seconds:.1f} | "
                      + " | ".join(per_method) + " |")
        print(f"{name} done after {time.perf_counter() - started:.0f} s", file=sys.stderr)
    header = " | ".join(LABELS[m] for m in METHODS)
    print(f"Mean KL(golden || fitted) over {args.replicates} replicates "
          "(published value, relative difference):\n")
    print(f"| | {header} |")
    print("|---" * (len(METHODS) + 1) + "|")
    print("\n".join(rows))
    print("\nMedian seconds per replicate, fit / KL (EM iterations), and the golden "
          "runs' read time:\n")
    print(f"| | golden topologies | read golden (s) | {header} |")
    print("|---" * (len(METHODS) + 3) + "|")
    print("\n".join(timing))
    print(f"\nWhole table: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
