"""Maximum-likelihood fits on a fixed topology against IQ-TREE: values and wall time.

    .venv/bin/python benchmarks/optimize.py [--repeats 3] [--iqtree iqtree2] [--data ...]
        [--models ...]

For the bundled example and sim27/sim100 (../shared/data/sim) x JC, HKY+G4 and
GTR+F+I+G4, it fits the model's free parameters with the branch lengths fixed
(``phylovi loglik``; IQ-TREE ``-te TREE -blfix``) and with them estimated too
(``phylovi loglik --optimize-lengths``; IQ-TREE ``-te TREE``), both programs on
one thread, and prints a Markdown table: each program's log-likelihood, their
difference (phylovi minus IQ-TREE: above 0, phylovi found the higher maximum),
and the median wall time of ``--repeats`` runs. IQ-TREE's time is the whole
run of its binary (reading, parsimony-free start, writing reports), phylovi's
the fit alone in this process (reading and set-up excluded), so the time
ratio flatters phylovi by IQ-TREE's start-up of about 0.05 s.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from phylovi.io.alignment import read_alignment
from phylovi.io.trees import read_tree
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.optimize import optimize_branch_lengths, optimize_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood

ROOT = Path(__file__).resolve().parent.parent
DATA = {"example": ROOT / "data" / "example",
        "sim27": ROOT.parent / "shared" / "data" / "sim" / "sim27",
        "sim100": ROOT.parent / "shared" / "data" / "sim" / "sim100"}
MODELS = ("JC", "HKY+G4", "GTR+F+I+G4")


def iqtree_fit(binary: str, stem: Path, model: str, lengths: bool) -> tuple[float, float]:
    """IQ-TREE's log-likelihood and wall seconds for one fit on the fixed tree."""
    with tempfile.TemporaryDirectory() as folder:
        command = [binary, "-s", f"{stem}.fasta", "-te", f"{stem}.nwk", "-m", model, "-nt", "1",
                   "-keep-ident", "-redo", "-quiet", "-pre", f"{folder}/run"]
        if not lengths:
            command.append("-blfix")
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        report = Path(f"{folder}/run.iqtree").read_text()
    value = float(re.search(r"Log-likelihood of the tree: (\S+)", report).group(1))
    return value, seconds


def phylovi_fit(stem: Path, model: str, lengths: bool) -> tuple[float, float]:
    """phylovi's log-likelihood and wall seconds for the same fit."""
    alignment = read_alignment(f"{stem}.fasta")
    patterns = compress_patterns(alignment)
    tree = read_tree(f"{stem}.nwk", taxa=alignment.taxa)
    likelihood = TreeLikelihood(patterns, parse_model(model, patterns))
    started = time.perf_counter()
    if lengths:
        value, _ = optimize_branch_lengths(likelihood, tree)
    else:
        value = optimize_model(likelihood, tree)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iqtree", default="iqtree2")
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # IQ-TREE runs with -nt 1
    print("| data | model | branch lengths | IQ-TREE lnL | phylovi lnL | phylovi - IQ-TREE "
          "| IQ-TREE s | phylovi s | time ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.data:
        stem = DATA[name]
        if not Path(f"{stem}.fasta").exists():
            print(f"| {name} | (no data: {stem}.fasta) |")
            continue
        for model in args.models:
            for lengths in (False, True):
                iq = [iqtree_fit(args.iqtree, stem, model, lengths) for _ in range(args.repeats)]
                ours = [phylovi_fit(stem, model, lengths) for _ in range(args.repeats)]
                iq_value, ours_value = iq[0][0], ours[0][0]
                iq_seconds = statistics.median(s for _, s in iq)
                our_seconds = statistics.median(s for _, s in ours)
                print(f"| {name} | {model} | {'estimated' if lengths else 'fixed'} "
                      f"| {iq_value:.4f} | {ours_value:.4f} | {ours_value - iq_value:+.4f} "
                      f"| {iq_seconds:.2f} | {our_seconds:.2f} | {our_seconds / iq_seconds:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
