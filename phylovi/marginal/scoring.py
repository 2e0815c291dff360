"""Scoring estimates over a credible set of topologies, as the study does.

P: the reference probabilities (golden-run SRFs) normalised over the set; Q:
the softmax of the estimated log marginal likelihoods (the topology prior is
uniform). KL(P || Q) and the RMSD over splits of split probabilities
(f = Σ P over the set's trees holding the split, f̂ likewise from Q).
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from phylovi.errors import ConfigError, InputError, TreeFileError
from phylovi.io.trees import (WEIGHT_COMMENT, burnin_count, check_burnin, is_newick_string,
                              read_text, read_tree, read_trees)
from phylovi.trees.taxa import TaxonOrder
from phylovi.trees.topology import Topology


def read_credible_set(path: str | os.PathLike, taxa: TaxonOrder, burnin: float = 0.0
                      ) -> tuple[list[Topology], np.ndarray | None]:
    """Topologies of a file of ``PROBABILITY<TAB>NEWICK`` lines (the study's format), of plain
    Newick lines, of ``phylovi sbn query --credible`` or ``--top`` output (a header naming
    ``probability`` and ``newick`` columns), or of a tree file (NEXUS, or Newick with
    ``[&W p]`` weights, as MrBayes' ``.t`` and ``.trprobs``).

    ``burnin``, a fraction in [0, 1), drops that share of a sample's trees (a tree file
    or plain Newick lines) from the start, as :func:`~phylovi.io.trees.read_trees` does.

    Returns the topologies and their probabilities (None unless every tree has one).
    A tree file's repeated topologies (a chain's sample) are kept once, their weights
    summed, and so are those of plain Newick lines; lines with probabilities must not
    repeat one.

    Raises:
        TreeFileError: an unreadable file, a line that is neither form, a mix of the two,
            the same topology on two lines with probabilities, or probabilities that are
            negative, not finite, all zero or summing to more than 1 (a credible set's may
            sum to less).
        TaxonMismatchError: a tree whose taxa are not ``taxa`` (naming the line).
        ConfigError: a burn-in outside [0, 1), or one given with probabilities.
    """
    path = os.fspath(path)
    check_burnin(burnin, path)
    text = read_text(path)
    if text.lstrip()[:6].upper() == "#NEXUS" or WEIGHT_COMMENT.search(text):
        sample = read_trees(path, taxa, burnin=burnin, lengths=False)
        totals: dict[Topology, float] = {}
        for tree, weight in zip(sample.trees, sample.weights):
            totals[tree.topology] = totals.get(tree.topology, 0.0) + float(weight)
        topologies, probabilities = list(totals), list(totals.values())
        return _checked(topologies, probabilities if sample.weighted else [], path)
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
             if line.strip()]
    columns = None
    if lines:
        header = [name.strip().lower() for name in lines[0][1].split("\t")]
        if "newick" in header and "probability" in header:  # sbn query's table
            columns = header.index("probability"), header.index("newick"), len(header)
            lines = lines[1:]
    if burnin and (columns is not None or any("\t" in line for _, line in lines)):
        raise ConfigError("a burn-in applies to a sample of trees, not to a list of "
                          "probabilities", path=path)
    lines = lines[burnin_count(burnin, len(lines)):]
    topologies, probabilities, first_line = [], [], {}
    for number, line in lines:
        if columns is not None:
            fields = line.split("\t")
            if len(fields) != columns[2]:
                raise TreeFileError(f"the row has {len(fields)} tab-separated fields, the "
                                    f"header {columns[2]}", path=path, line=number)
            first, rest = fields[columns[0]], fields[columns[1]]
        else:
            first, _, rest = line.partition("\t")
        if rest:
            try:
                probability = float(first)
            except ValueError:
                raise TreeFileError(f"expected PROBABILITY<TAB>NEWICK, got {first!r}",
                                    path=path, line=number) from None
            if not (math.isfinite(probability) and probability >= 0):
                raise TreeFileError(f"the probability {first} is not a number >= 0",
                                    path=path, line=number)
            probabilities.append(probability)
            line = rest.strip()
        if not is_newick_string(line):
            raise TreeFileError("expected a Newick tree, starting with '('", path=path,
                                line=number)
        try:
            topology = read_tree(line, taxa, lengths=False).topology
        except InputError as error:  # name this file and line, not "<newick string>"
            error.path, error.line = path, number
            # the one tree of this line's text, not the file's first
            error.message = re.sub(r"\btree 1\b", "the tree on this line", error.message)
            raise
        if topology in first_line and not rest:  # a sample of trees: each topology once
            continue
        if topology in first_line:  # its probability would count twice
            raise TreeFileError(f"the same unrooted topology as line {first_line[topology]}",
                                path=path, line=number)
        first_line[topology] = number
        topologies.append(topology)
    return _checked(topologies, probabilities, path)


def _checked(topologies: list[Topology], probabilities: list[float], path: str
             ) -> tuple[list[Topology], np.ndarray | None]:
    if not topologies:
        raise TreeFileError("no topologies in the file", path=path)
    if probabilities and len(probabilities) != len(topologies):
        raise TreeFileError("some lines have a probability and some do not", path=path)
    if probabilities and not sum(probabilities) > 0:
        raise TreeFileError("the probabilities are all zero", path=path)
    # MrBayes prints each probability to 6 decimals: the sum may exceed 1 by their rounding
    if probabilities and sum(probabilities) > 1 + 1e-6 + 5e-7 * len(probabilities):
        raise TreeFileError(f"the probabilities sum to {sum(probabilities):.9g}, more than 1",
                            path=path)
    return topologies, (np.array(probabilities) if probabilities else None)


def normalised(log_values: np.ndarray) -> np.ndarray:
    shifted = np.exp(log_values - np.max(log_values))
    return shifted / shifted.sum()


def kl_and_split_rmsd(reference: np.ndarray, log_marginals: np.ndarray,
                      topologies: list[Topology]) -> tuple[float, float]:
    """KL(P || Q) and the split RMSD of estimated log marginals against reference probabilities."""
    p = reference / reference.sum()
    q = normalised(np.asarray(log_marginals, dtype=np.float64))
    held = p > 0  # 0 log 0 = 0: a topology the reference gives no mass adds nothing
    kl = float(np.sum(p[held] * (np.log(p[held]) - np.log(np.maximum(q[held], 1e-300)))))
    splits = sorted({s for t in topologies for s in t.nontrivial_splits})
    f = np.array([sum(pi for pi, t in zip(p, topologies) if s in t.splits) for s in splits])
    f_hat = np.array([sum(qi for qi, t in zip(q, topologies) if s in t.splits) for s in splits])
    rmsd = math.sqrt(float(np.mean((f - f_hat) ** 2))) if splits else 0.0
    return kl, rmsd
