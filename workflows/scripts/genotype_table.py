"""One row per genotype matrix: its size, the exact checks and the networks' calls."""

import json
import sys
from pathlib import Path


def main(names, checks, branchings, noises, output: str) -> None:
    columns = ["matrix", "cells", "mutations", "missing", "perfect_phylogeny",
               "conflicting_pairs", "observed_shape", "p_branching", "p_conflict"]
    with open(output, "w") as handle:
        handle.write("\t".join(columns) + "\n")
        for name, check, branching, noise in zip(names, checks, branchings, noises):
            exact = json.loads(Path(check).read_text())
            p_branching = json.loads(Path(branching).read_text())["predictions"][0]["probability"]
            p_conflict = json.loads(Path(noise).read_text())["predictions"][0]["probability"]
            row = [name, exact["cells"], exact["mutations"], exact["missing"],
                   "yes" if exact["perfect_phylogeny"] else "no", len(exact["conflicting_pairs"]),
                   exact.get("shape", "-"), f"{p_branching:.4f}", f"{p_conflict:.4f}"]
            handle.write("\t".join(map(str, row)) + "\n")


# Run by Snakemake (rule genotype_table), which defines `snakemake`.
sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
main(snakemake.params.names, snakemake.input.check, snakemake.input.branching,  # noqa: F821
     snakemake.input.noise, snakemake.output[0])  # noqa: F821
