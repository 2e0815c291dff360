"""How thread settings move whole commands, alone and beside a busy process.

Times `phylovi loglik --optimize-lengths` (GTR+F+I+G4), `phylovi vi` (300 steps) and
`phylovi marginal --method gss` on the bundled example, each with OpenMP's default
wait policy (idle threads spin for a while) and with the command line's default
(OMP_WAIT_POLICY=PASSIVE: they sleep), alone and beside one process that keeps a core
busy; then an ML fit through the Python API with scipy's BLAS held to one thread and
with it left to OpenBLAS (the state before 2026-12-07). Medians of ``--repeats`` runs,
seconds, as a Markdown table.

    .venv/bin/python benchmarks/threads.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
FIXED = "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}"
COMMANDS = {
    "loglik --optimize-lengths": ["loglik", "-m", "GTR+F+I+G4", "--optimize-lengths"],
    "vi --steps 300": ["vi", "-m", FIXED, "--steps", "300", "-o", "{tmp}/vi"],
    "marginal --method gss": ["marginal", "-m", FIXED, "--method", "gss"],
}
POLICIES = {"OpenMP's default (spin)": "", "PASSIVE (the command line's default)": "PASSIVE"}


def command_seconds(words: list[str], policy: str, tmp: str) -> float:
    argv = [sys.executable, "-m", "phylovi", words[0], str(DATA / "example.fasta"),
            str(DATA / "example.nwk"), *(w.replace("{tmp}", tmp) for w in words[1:]), "-q"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True,
                   env={**os.environ, "OMP_WAIT_POLICY": policy})
    return time.perf_counter() - start


def api_fit_seconds(limit_blas: bool) -> float:
    import phylovi.likelihood.optimize as optimize
    from phylovi.io.alignment import read_alignment
    from phylovi.io.trees import read_tree
    from phylovi.likelihood import TreeLikelihood, compress_patterns, parse_model

    alignment = read_alignment(DATA / "example.fasta")
    patterns = compress_patterns(alignment)
    tree = read_tree(DATA / "example.nwk", taxa=alignment.taxa)
    limited = optimize._maximize
    if not limit_blas:  # the fit without its BLAS limit (threadpoolctl's wrapper)
        optimize._maximize = limited.__wrapped__
    try:
        likelihood = TreeLikelihood(patterns, parse_model("GTR+F+I+G4", patterns))
        start = time.perf_counter()
        optimize.optimize_branch_lengths(likelihood, tree)
        return time.perf_counter() - start
    finally:
        optimize._maximize = limited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, medians of {args.repeats} runs, seconds\n")
    print("| command | beside | " + " | ".join(POLICIES) + " |")
    print("|---|---|" + "---|" * len(POLICIES))
    with tempfile.TemporaryDirectory() as tmp:
        for beside in ("nothing", "one busy process"):
            busy = None
            if beside != "nothing":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for name, words in COMMANDS.items():
                    times = {policy: [] for policy in POLICIES.values()}
                    for _ in range(args.repeats):  # alternate, so that drift hits both
                        for policy in POLICIES.values():
                            times[policy].append(command_seconds(words, policy, tmp))
                    cells = " | ".join(f"{statistics.median(t):.2f}" for t in times.values())
                    print(f"| {name} | {beside} | {cells} |", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
    fits = {True: [], False: []}
    for _ in range(args.repeats):
        for limit in fits:
            fits[limit].append(api_fit_seconds(limit))
    print(f"\nAPI fit (GTR+F+I+G4 with lengths, default threads): scipy's BLAS on one "
          f"thread {statistics.median(fits[True]):.2f} s, left to OpenBLAS "
          f"{statistics.median(fits[False]):.2f} s")


if __name__ == "__main__":
    main()
