"""Scoring estimates over a credible set of topologies, as the study does.

P: the reference probabilities (golden-run SRFs) normalised over the set; Q:
the softmax of the estimated log marginal likelihoods (the topology prior is
uniform). KL(P || Q) and the RMSD over splits of split probabilities
(f = Σ P over the set's trees holding the split, f̂ likewise from Q).
"""

from __future__ import annotations

import math
import os

import numpy as np

from phylovi.errors import TreeFileError
from phylovi.io.trees import read_tree
from phylovi.trees.taxa import TaxonOrder
from phylovi.trees.topology import Topology


def read_credible_set(path: str | os.PathLike, taxa: TaxonOrder
                      ) -> tuple[list[Topology], np.ndarray | None]:
    """Topologies of a file of ``PROBABILITY<TAB>NEWICK`` lines (the study's format) or plain Newick lines.

    Returns the topologies and their probabilities (None for plain Newick).

    Raises:
        TreeFileError: a line that is neither form, or a mix of the two.
    """
    path = os.fspath(path)
    topologies, probabilities = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            first, _, rest = line.partition("\t")
            if rest:
                try:
                    probabilities.append(float(first))
                except ValueError:
                    raise TreeFileError(f"expected PROBABILITY<TAB>NEWICK, got {first!r}",
                                        path=path, line=number) from None
                line = rest.strip()
            try:
                topologies.append(read_tree(line, taxa).topology)
            except TreeFileError as error:
                raise TreeFileError(error.message, path=path, line=number) from None
    if not topologies:
        raise TreeFileError("no topologies in the file", path=path)
    if probabilities and len(probabilities) != len(topologies):
        raise TreeFileError("some lines have a probability and some do not", path=path)
    return topologies, (np.array(probabilities) if probabilities else None)


def normalised(log_values: np.ndarray) -> np.ndarray:
    shifted = np.exp(log_values - np.max(log_values))
    return shifted / shifted.sum()


def kl_and_split_rmsd(reference: np.ndarray, log_marginals: np.ndarray,
                      topologies: list[Topology]) -> tuple[float, float]:
    """KL(P || Q) and the split RMSD of estimated log marginals against reference probabilities."""
    p = reference / reference.sum()
    q = normalised(np.asarray(log_marginals, dtype=np.float64))
    kl = float(np.sum(p * (np.log(p) - np.log(np.maximum(q, 1e-300)))))
    splits = sorted({s for t in topologies for s in t.nontrivial_splits})
    f = np.array([sum(pi for pi, t in zip(p, topologies) if s in t.splits) for s in splits])
    f_hat = np.array([sum(qi for qi, t in zip(q, topologies) if s in t.splits) for s in splits])
    rmsd = math.sqrt(float(np.mean((f - f_hat) ** 2))) if splits else 0.0
    return kl, rmsd
