"""Regenerate the bundled example: a random 20-taxon tree and an alignment simulated on it.

    .venv/bin/python data/make_example.py

The tree is a random-joining topology with Exponential(mean 0.1) branch
lengths (seed 2026); the alignment is 1000 sites simulated by
``phylovi simulate`` under GTR+G4 with the parameters of
../shared/references/likelihood.md.
"""

from pathlib import Path

import numpy as np

from phylovi.cli import main
from phylovi.io.trees import write_newick
from phylovi.trees import TaxonOrder, Topology, Tree

HERE = Path(__file__).resolve().parent
MODEL = "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}"

rng = np.random.default_rng(2026)
taxa = TaxonOrder([f"taxon{i + 1:02d}" for i in range(20)])
nodes = list(range(len(taxa)))
while len(nodes) > 3:
    i, j = sorted(rng.choice(len(nodes), 2, replace=False))
    nodes = [n for k, n in enumerate(nodes) if k not in (i, j)] + [(nodes[i], nodes[j])]
topology = Topology.from_nested(taxa, tuple(nodes))
tree = Tree(topology, np.round(rng.exponential(0.1, topology.n_edges), 6))
write_newick(HERE / "example.nwk", [tree])
raise SystemExit(main(["simulate", str(HERE / "example.nwk"), "--model", MODEL,
                       "--sites", "1000", "--seed", "2026", "-o", str(HERE / "example.fasta")]))
