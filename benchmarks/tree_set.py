"""Log-likelihoods of a set of trees (each at its own branch lengths) against IQ-TREE's -z.

    .venv/bin/python benchmarks/tree_set.py [--trees 1000] [--repeats 3] [--iqtree iqtree2]
        [--data ...] [--models ...]

For the bundled example and sim27/sim100 (../shared/data/sim), it draws ``--trees``
random topologies with random branch lengths (seeded), and evaluates every tree
with the model fixed: IQ-TREE as ``-te FIRST -blfix -z TREES -nt 1`` (its own
"Time for evaluating all trees"), phylovi as ``TreeLikelihood.tree_log_likelihoods``
on 1 and 2 threads (the evaluation alone, trees already read), and both whole
commands (``phylovi loglik ... -q`` on 2 threads: start-up, reading with DendroPy,
evaluation, output). It checks that the two programs' log-likelihoods agree tree by
tree and prints a Markdown table of medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from phylovi.io.alignment import read_alignment
from phylovi.io.trees import read_trees
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood

ROOT = Path(__file__).resolve().parent.parent
DATA = {"example": ROOT / "data" / "example.fasta",
        "sim27": ROOT.parent / "shared" / "data" / "sim" / "sim27.fasta",
        "sim100": ROOT.parent / "shared" / "data" / "sim" / "sim100.fasta"}
MODELS = ("JC", "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}")


def random_newick(names: list[str], rng: random.Random) -> str:
    """A uniformly joined random unrooted tree with lengths from 0.005 to 0.2."""
    def length() -> str:
        return f":{rng.uniform(0.005, 0.2):.6f}"

    nodes = [name + length() for name in names]
    while len(nodes) > 3:
        i, j = sorted(rng.sample(range(len(nodes)), 2))
        second, first = nodes.pop(j), nodes.pop(i)
        nodes.append(f"({first},{second}){length()}")
    return "(" + ",".join(nodes) + ");"


def iqtree(binary: str, alignment: Path, trees: Path, model: str, folder: Path):
    """IQ-TREE's per-tree log-likelihoods, its own evaluation seconds and the run's."""
    first = folder / "first.nwk"
    first.write_text(trees.read_text().splitlines()[0] + "\n")
    command = [binary, "-s", str(alignment), "-te", str(first), "-blfix", "-z", str(trees),
               "-m", model, "-nt", "1", "-keep-ident", "-redo", "-quiet", "-pre",
               str(folder / "iq")]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_seconds = time.perf_counter() - started
    log = (folder / "iq.log").read_text()
    seconds = float(re.search(r"Time for evaluating all trees: (\S+) sec", log).group(1))
    # iq.trees gives every tree 16 significant digits but the first only 6; the report's
    # table gives 6 decimals (but -652841 for -652840.99998), so take the first from there
    values = [float(v) for v in re.findall(r"lh=(\S+) \]", (folder / "iq.trees").read_text())]
    table = (folder / "iq.iqtree").read_text().split("USER TREES")[1]
    values[0] = float(re.search(r"^\s*1\s+(-[\d.]+)", table, re.MULTILINE).group(1))
    return values, seconds, run_seconds


def phylovi_command(alignment: Path, trees: Path, model: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "phylovi", "loglik", str(alignment), str(trees),
                    "-m", model, "-q", "--threads", "2"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iqtree", default="iqtree2")
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    print(f"{args.trees} random trees per data set; medians of {args.repeats} runs; "
          "seconds for all trees\n")
    print("| data | model | IQ-TREE -z eval s (1 thread) | phylovi eval s (1 thread) | "
          "phylovi eval s (2 threads) | eval ratio (1 thread) | IQ-TREE command s | "
          "phylovi command s | max abs lnL difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.data:
        path = DATA[name]
        if not path.exists():
            print(f"| {name} | (missing: {path}) |")
            continue
        alignment = read_alignment(path)
        patterns = compress_patterns(alignment)
        rng = random.Random(1)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            trees_file = folder / "trees.nwk"
            trees_file.write_text("".join(random_newick(list(alignment.taxa), rng) + "\n"
                                          for _ in range(args.trees)))
            trees = read_trees(trees_file, taxa=alignment.taxa).trees
            for model in args.models:
                likelihood = TreeLikelihood(patterns, parse_model(model, patterns))
                timings = {1: [], 2: []}
                for _ in range(args.repeats):
                    for threads in (1, 2):
                        torch.set_num_threads(threads)
                        started = time.perf_counter()
                        ours = likelihood.tree_log_likelihoods(trees)
                        timings[threads].append(time.perf_counter() - started)
                runs = [iqtree(args.iqtree, path, trees_file, model, folder)
                        for _ in range(args.repeats)]
                theirs = runs[0][0]
                assert len(theirs) == len(ours), (len(theirs), len(ours))
                difference = max(abs(a - b) for a, b in zip(ours, theirs))
                commands = [phylovi_command(path, trees_file, model) for _ in range(args.repeats)]
                iq_eval = statistics.median(run[1] for run in runs)
                ours_1, ours_2 = (statistics.median(timings[t]) for t in (1, 2))
                print(f"| {name} | {model} | {iq_eval:.3f} | {ours_1:.3f} | {ours_2:.3f} | "
                      f"{iq_eval / ours_1:.1f}x | {statistics.median(r[2] for r in runs):.2f} | "
                      f"{statistics.median(commands):.2f} | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
