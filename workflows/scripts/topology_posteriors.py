"""Combine the credible set, VI and marginal likelihoods of one alignment into one table.

Columns: rank, newick, sbn_probability; vi_elbo and vi_log_ml (importance
sampling from the VI fit); for each estimator M, M_log_ml and posterior_M:
the posterior probability of each kept topology under a uniform topology
prior, normalised over the kept topologies (so it is comparable with
sbn_probability renormalised over the same set, sbn_renormalised).
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np

from phylovi.marginal.scoring import normalised


def rank_of(path: str) -> int:
    """The rank in ``.../marginal/t3.json`` or ``.../vi/t3/summary.json``."""
    path = Path(path)
    label = path.parent.name if path.name == "summary.json" else path.stem
    return int(label.removeprefix("t"))


def main(credible: str, marginal: list[str], vi: list[str], output: str) -> None:
    with open(credible) as handle:
        rows = {int(r["rank"]): {"rank": int(r["rank"]), "newick": r["newick"],
                                 "sbn_probability": float(r["probability"])}
                for r in csv.DictReader(handle, delimiter="\t")}
    kept = sorted(rank_of(path) for path in marginal)
    table = [rows[rank] for rank in kept]
    for path in vi:
        summary = json.loads(Path(path).read_text())
        row = rows[rank_of(path)]
        row["vi_elbo"] = summary["elbo"]
        row["vi_log_ml"] = summary["log_marginal_likelihood"]
    methods = []
    for path in marginal:
        for estimate in json.loads(Path(path).read_text())["estimates"]:
            method = estimate["method"]
            methods += [method] if method not in methods else []
            rows[rank_of(path)][f"{method}_log_ml"] = estimate["log_marginal_likelihood"]
    total = sum(row["sbn_probability"] for row in table)
    for row in table:
        row["sbn_renormalised"] = row["sbn_probability"] / total
    for column in ["vi"] + methods:
        log_ml = np.array([row[f"{column}_log_ml"] for row in table])
        for row, p in zip(table, normalised(log_ml)):
            row[f"posterior_{column}"] = float(p)
    columns = (["rank", "newick", "sbn_probability", "sbn_renormalised", "vi_elbo", "vi_log_ml",
                "posterior_vi"] + [c for m in methods for c in (f"{m}_log_ml", f"posterior_{m}")])
    with open(output, "w") as handle:
        handle.write("\t".join(columns) + "\n")
        for row in table:
            handle.write("\t".join(_format(row[c]) for c in columns) + "\n")


def _format(value) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


# Run by Snakemake (rule topology_posteriors), which defines `snakemake`.
sys.stderr = open(snakemake.log[0], "w")  # noqa: F821
main(snakemake.input.credible, list(snakemake.input.marginal), list(snakemake.input.vi),  # noqa: F821
     snakemake.output[0])  # noqa: F821
