"""Branching calls on the real matrices of ../shared/data/genotype/, network beside classical.

    .venv/bin/python benchmarks/genotype_real.py

For each matrix: the shipped branching network's probability; the shipped
eliminator's corrected matrix and its shape; and the classical calls under the
error rates recorded upstream (README there; assumed where none is recorded):
the most likely conflict-free matrix (exact integer program, 2-minute
limit, 120 s here) and its shape, and the most likely *linear* matrix with the implied
false-negative rate (ones it adds over ones it keeps), Phyolin's criterion.
Prints Markdown.
"""

from __future__ import annotations

from pathlib import Path

from phylovi.genotype import MISSING, GenotypeMatrix, is_linear, load_model
from phylovi.genotype.correct import most_likely_correction

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "genotype"

# (file, alpha, beta, where the rates come from, the literature's call)
DATASETS = [
    ("hou2012_et_58x18", 6.04e-5, 0.4309, "SCITE README", "no linear/branching call recorded"),
    ("gawad2014_all_p6_146x10", 1e-4, 0.2344, "Phyolin's rates", "linear (Phyolin)"),
    ("wang2014_tnbc_16x20", 1e-3, 0.2, "none recorded: assumed", "branching call in the paper, "
     "not retrieved"),
    ("leung2017_crc_p1_178x16", 1e-3, 0.2, "none recorded: assumed",
     "primary and liver metastasis; drawn as branching upstream"),
]


def main() -> None:
    if not DATA.exists():
        raise SystemExit(f"{DATA} is absent: the real matrices live in ../shared/data/genotype/")
    branching, eliminator = load_model("branching"), load_model("eliminate")
    print("| dataset | cells x mutations | alpha, beta (source) | network p_branching | "
          "eliminator: shape (repaired?) | most likely conflict-free: shape, flips, seconds | "
          "most likely linear: implied FN rate, log-likelihood gap to conflict-free | "
          "literature |")
    print("|---|---|---|---|---|---|---|---|")
    for name, alpha, beta, source, call in DATASETS:
        matrix = GenotypeMatrix.read(DATA / f"{name}.tsv")
        x = matrix.values
        p = float(branching.predict(x)[0])
        eliminated = eliminator.eliminate([x], alpha, beta)[0]
        shape = "linear" if is_linear(eliminated.matrix) else "branching"
        best = most_likely_correction(x, alpha, beta, time_limit=120)
        linear = most_likely_correction(x, alpha, beta, linear=True, time_limit=120)
        flips = int(((best.matrix != x) & (x != MISSING)).sum())
        ones = int((x == 1).sum())
        added = int(((linear.matrix == 1) & (x == 0)).sum())
        kept = int(((linear.matrix == 1) & (x == 1)).sum())
        optimal = "" if best.optimal and linear.optimal else " (time limit hit)"
        print(f"| {name} | {matrix.n_cells} x {matrix.n_mutations} | {alpha:g}, {beta:g} ({source}) "
              f"| {p:.3f} | {shape} ({'yes' if eliminated.repaired else 'no'}) | "
              f"{'linear' if is_linear(best.matrix) else 'branching'}, {flips} of {ones} ones "
              f"and {int((x == 0).sum())} zeros, {best.seconds:.1f} s | "
              f"{added / max(added + kept, 1):.3f}, "
              f"{best.log_likelihood - linear.log_likelihood:.1f}{optimal} | {call} |", flush=True)


if __name__ == "__main__":
    main()
