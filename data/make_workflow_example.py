"""Regenerate the workflow's example (data/workflow/): a small alignment, a sample of
topologies from its posterior, and a tumour genotype matrix, all made by phylovi.

    .venv/bin/python data/make_workflow_example.py

The alignment is 300 sites simulated under JC on a 6-taxon tree with two short
internal branches, so that its topology posterior spreads over a few trees.
The tree sample stands in for an MCMC run: every one of the 105 unrooted
6-taxon topologies gets its Laplace (gamma) marginal likelihood from
``phylovi marginal``, and 500 topologies are drawn from the resulting
posterior (uniform topology prior, seed 2026). The genotype matrix is 40
cells x 12 mutations from ``phylovi genotype simulate``.
"""

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from phylovi.cli import main

HERE = Path(__file__).resolve().parent / "workflow"
TREE = "((A:0.12,B:0.08):0.01,C:0.1,((D:0.09,E:0.11):0.015,F:0.1):0.02);"
TAXA = ["A", "B", "C", "D", "E", "F"]


def phylovi(*args: str) -> str:
    """Run a phylovi command in this process; its standard output."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if main(list(args)) != 0:
            raise SystemExit(f"phylovi {' '.join(args)} failed")
    return output.getvalue()


def newick(node) -> str:
    return node if isinstance(node, str) else "(" + ",".join(map(newick, node)) + ")"


def all_topologies(taxa: list[str]) -> list[str]:
    """Every unrooted binary topology, by inserting each taxon on every edge in turn."""

    def insert(node, taxon):
        yield (node, taxon)  # on the edge above this node
        if not isinstance(node, str):
            for i, child in enumerate(node):
                for new in insert(child, taxon):
                    yield node[:i] + (new,) + node[i + 1:]

    trees = [tuple(taxa[:3])]
    for taxon in taxa[3:]:
        trees = [tuple(tree[:i] + (new,) + tree[i + 1:]) for tree in trees
                 for i, child in enumerate(tree) for new in insert(child, taxon)]
    return [newick(tree) + ";" for tree in trees]


def make() -> None:
    HERE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "true.nwk").write_text(TREE + "\n")
        phylovi("simulate", str(work / "true.nwk"), "--model", "JC", "--sites", "300",
                "--seed", "2026", "-o", str(HERE / "alignment.fasta"))
        topologies = all_topologies(TAXA)
        assert len(topologies) == 105
        (work / "all.nwk").write_text("\n".join(topologies) + "\n")
        record = json.loads(phylovi("marginal", str(HERE / "alignment.fasta"), "--topologies",
                                    str(work / "all.nwk"), "--method", "laplus-gamma",
                                    "--json", "-q", "--threads", "1"))
        log_ml = np.array([e["log_marginal_likelihood"] for e in record["estimates"]])
        posterior = np.exp(log_ml - log_ml.max())
        posterior /= posterior.sum()
        draws = np.random.default_rng(2026).choice(len(topologies), 500, p=posterior)
        (HERE / "trees.nwk").write_text("".join(topologies[k] + "\n" for k in draws))
        phylovi("genotype", "simulate", "--cells", "40", "--mutations", "12", "--alpha", "0.002",
                "--beta", "0.15", "--missing", "0.05", "--prior", "clonal", "--seed", "2026",
                "-o", str(work / "cells"))
        shutil.copy(work / "cells_observed_1.tsv", HERE / "cells.tsv")


if __name__ == "__main__":
    make()
