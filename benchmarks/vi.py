"""Branch-length VI on DS1: phylovi's three families beside torchtree 1.0.2's ADVI.

    .venv/bin/python benchmarks/vi.py --torchtree-bin /path/to/venv/bin [--repeats 3]

The problem of Fourment et al. (2020): DS1 (../shared/data/marginal/DS1.nex),
the first topology of JC_no_gamma_credible_set_ds1, JC69, i.i.d. Exp(10)
branch-length priors. For each phylovi family (4 draws per step, default
settings) it records the wall time to convergence, including the MAP start,
the final ELBO (mean of the last 200 steps) and the importance-sampling
estimate of log p(y). torchtree's ADVI (mean-field log-normal, its defaults:
1 gradient draw, Adam lr 0.1, ELBO from 100 draws every 100 iterations) runs
with --tol_rel_obj 1e-4 in the same session.

"Time to the same ELBO" is the time each run first reaches torchtree's final
ELBO: phylovi's from its per-step timestamps (running mean of 100 steps),
torchtree's by spreading its run time evenly over its iterations after a
start-up measured with a 1-iteration run. Medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from phylovi.distributions import parse_prior
from phylovi.io.alignment import read_alignment
from phylovi.io.trees import read_tree
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.vi import FAMILIES
from phylovi.vi.branch_lengths import BranchLengthVI, VISettings

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "marginal"


def problem():
    alignment = read_alignment(DATA / "DS1.nex")
    patterns = compress_patterns(alignment)
    newick = (DATA / "JC_no_gamma_credible_set_ds1").read_text().splitlines()[0].split("\t")[1]
    topology = read_tree(newick.strip(), taxa=alignment.taxa).topology
    likelihood = TreeLikelihood(patterns, parse_model("JC", patterns))
    return alignment, newick.strip(), likelihood, topology


def run_phylovi(likelihood, topology, family: str, seed: int) -> dict:
    torch.manual_seed(seed)
    start = time.perf_counter()
    vi = BranchLengthVI(likelihood, topology, parse_prior("exp(10)", topology.n_edges),
                        VISettings(family=family, n_particles=4))
    map_seconds = time.perf_counter() - start
    result = vi.fit()
    fit_seconds = result.trace[-1][2] if result.trace else 0.0
    return {"seconds": map_seconds + fit_seconds, "elbo": result.elbo, "log_ml": result.value,
            "log_ml_se": result.std_error, "steps": result.steps,
            "trace": [(map_seconds + s, v) for _, v, s in result.trace]}


def time_to(trace: list[tuple[float, float]], target: float, width: int = 100) -> float:
    """First time the running mean of ``width`` steps reaches ``target`` (inf if never)."""
    window = []
    for seconds, value in trace:
        window.append(value)
        if len(window) > width:
            window.pop(0)
        if len(window) == width and sum(window) / width >= target:
            return seconds
    return float("inf")


def run_torchtree(bin_dir: Path, folder: Path, iterations: int) -> dict:
    config = folder / f"advi{iterations}.json"
    with open(config, "w") as handle:
        subprocess.run([str(bin_dir / "torchtree-cli"), "advi", "-i", "DS1.fasta", "-t", "tree.nwk",
                        "-m", "JC69", "--iter", str(iterations), "--brlens_init", "0.1",
                        "--tol_rel_obj", "0.0001"], cwd=folder, stdout=handle, check=True,
                       stderr=subprocess.DEVNULL)
    start = time.perf_counter()
    out = subprocess.run([str(bin_dir / "torchtree"), config.name], cwd=folder, check=True,
                         capture_output=True, text=True, env={"OMP_NUM_THREADS": "2"}).stdout
    seconds = time.perf_counter() - start
    rows = [(int(m.group(1)), float(m.group(2)))
            for m in re.finditer(r"^\s+(\d+)\s+(-?[\d.]+)\s", out, re.MULTILINE)]
    return {"seconds": seconds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchtree-bin", type=Path, default=None,
                        help="bin/ of a virtual environment with torchtree 1.0.2")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    alignment, newick, likelihood, topology = problem()

    peer = None
    if args.torchtree_bin is not None:
        folder = Path(tempfile.mkdtemp(prefix="phylovi-vi-bench-"))
        (folder / "DS1.fasta").write_text("".join(f">{n}\n{s}\n" for n, s in
                                                  zip(alignment.taxa, alignment.sequences)))
        (folder / "tree.nwk").write_text(newick + "\n")
        startup = statistics.median(run_torchtree(args.torchtree_bin, folder, 1)["seconds"]
                                    for _ in range(2))
        runs = [run_torchtree(args.torchtree_bin, folder, 20000) for _ in range(args.repeats)]
        for run in runs:
            last_iteration = run["rows"][-1][0]
            per_iteration = (run["seconds"] - startup) / max(last_iteration, 1)
            run["trace"] = [(startup + i * per_iteration, elbo) for i, elbo in run["rows"]]
        peer = {"seconds": statistics.median(r["seconds"] for r in runs),
                "elbo": statistics.median(r["rows"][-1][1] for r in runs),
                "iterations": statistics.median(r["rows"][-1][0] for r in runs), "runs": runs}
        target = peer["elbo"]
        peer["time_to_target"] = statistics.median(
            next(t for t, v in r["trace"] if v >= target) if any(v >= target for _, v in r["trace"])
            else r["seconds"] for r in runs)

    print("| method | wall time to convergence (s) | final ELBO | log p(y) by IS (± s.e.) | steps "
          "| time to torchtree's final ELBO (s) | speed-up there |")
    print("|---|---|---|---|---|---|---|")
    for family in FAMILIES:
        runs = [run_phylovi(likelihood, topology, family, seed) for seed in range(args.repeats)]
        seconds = statistics.median(r["seconds"] for r in runs)
        elbo = statistics.median(r["elbo"] for r in runs)
        log_ml = statistics.median(r["log_ml"] for r in runs)
        se = statistics.median(r["log_ml_se"] for r in runs)
        steps = statistics.median(r["steps"] for r in runs)
        reach = speedup = "-"
        if peer is not None:
            to_target = statistics.median(time_to(r["trace"], peer["elbo"]) for r in runs)
            reach = f"{to_target:.2f}"
            speedup = f"{peer['time_to_target'] / to_target:.1f}x"
        print(f"| phylovi {family} | {seconds:.2f} | {elbo:.2f} | {log_ml:.2f} ± {se:.2f} | "
              f"{steps:.0f} | {reach} | {speedup} |")
    if peer is not None:
        print(f"| torchtree ADVI (lognormal) | {peer['seconds']:.2f} | {peer['elbo']:.2f} | - | "
              f"{peer['iterations']:.0f} | {peer['time_to_target']:.2f} | 1.0x |")
    print(f"\nMedians of {args.repeats} runs; 2 threads; torch {torch.__version__}.")
    print(json.dumps({"torchtree_startup_s": startup if peer else None}))


if __name__ == "__main__":
    main()
