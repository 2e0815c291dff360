"""SBN-EM and SBN-EM-alpha: the root position of each sampled tree as a latent variable.

Zhang & Matsen (2018), section 4.2. The E-step gives every rooting of every
sampled tree its posterior probability under the current network; the M-step
re-estimates the tables from the counts those weights imply. Starting from
SBN-SA, the objective sum_T w_T log P(T) (plus the log prior for EM-alpha)
never decreases.

EM-alpha (section 4.2, "regularization") puts a conjugate Dirichlet prior on
the tables built from SBN-SA: each rootsplit gets alpha times its SA
frequency as pseudo-count; each parent subsplit gets alpha times its SA
frequency, counting each sampled tree once (not once per rooting), spread
evenly over that parent's children in the support. This is the prior of the
paper's code, and it reproduces the published EM-alpha column. The prior
enters every M-step and the final estimates, so no PCSP of the support ends
with probability zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phylovi.sbn.network import SubsplitNetwork, key_bits, logsumexp_rows
from phylovi.sbn.sa import TrainingTables, average_counts, normalise
from phylovi.sbn.support import EncodedTopologies, SubsplitSupport


@dataclass
class EMTrace:
    """The objective (per-tree log-likelihood, plus log prior with alpha > 0) at each iteration."""

    objective: list[float] = field(default_factory=list)
    converged: bool = False

    @property
    def n_iterations(self) -> int:
        return len(self.objective)


def fit_em(support: SubsplitSupport, encoded: EncodedTopologies, weights: np.ndarray,
           alpha: float = 0.0, tolerance: float = 1e-5, min_iterations: int = 50,
           max_iterations: int = 1000, progress=None) -> tuple[SubsplitNetwork, EMTrace]:
    """Fit an SBN by EM over root positions, from SBN-SA.

    Args:
        support: a support covering the topologies.
        encoded: the encoded training topologies (``T`` of them).
        weights: ``[T]`` non-negative weights.
        alpha: strength of the SA-based Dirichlet prior (0: plain SBN-EM).
        tolerance: stop once the objective changes by less than this, after
            ``min_iterations``.
        min_iterations, max_iterations: bounds on the number of E-steps.
        progress: optional callable ``(iteration, objective)`` called after each step.

    Returns:
        The network after the last M-step and the objective trace.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    tables = TrainingTables.build(support, encoded, weights, "subsplit")
    sa_root, sa_pcsp = average_counts(tables)
    root_prior = alpha * sa_root
    pcsp_prior = (alpha * tables.parent_totals(sa_pcsp) / _rootings_with_parent(support, tables)
                  / tables.parent_totals(np.ones_like(sa_pcsp)))
    root_probs, pcsp_probs = normalise(tables, sa_root, sa_pcsp)
    trace = EMTrace()
    for iteration in range(max_iterations):
        log_root, log_pcsp = _log(root_probs), _log(pcsp_probs)
        rooted = log_root[tables.rootsplit_index] + log_pcsp[tables.pcsp_index].sum(axis=-1)
        log_tree = logsumexp_rows(rooted)
        objective = float(tables.weights @ log_tree)
        if alpha > 0:
            objective += float(root_prior @ log_root + pcsp_prior @ log_pcsp)
        trace.objective.append(objective)
        if progress is not None:
            progress(iteration, objective)
        posterior = np.exp(rooted - log_tree[:, None]) * tables.weights[:, None]
        root_counts, pcsp_counts = tables.counts(posterior)
        root_probs, pcsp_probs = normalise(tables, root_counts + root_prior, pcsp_counts + pcsp_prior)
        if (iteration + 1 >= min_iterations and len(trace.objective) > 1
                and abs(trace.objective[-1] - trace.objective[-2]) < tolerance):
            trace.converged = True
            break
    return tables.network(support, "subsplit", root_probs, pcsp_probs), trace


def _rootings_with_parent(support: SubsplitSupport, tables: TrainingTables) -> np.ndarray:
    """Per PCSP: in how many rootings of a tree its parent subsplit's clade P is a clade.

    That is 2 (n - |P|) - 1 edges beyond P, or 1 when P is the root. Dividing
    the SA count by it counts each parent subsplit once per tree, as the
    paper's prior does.
    """
    bits = key_bits(len(support))
    mask = (1 << bits) - 1
    sizes = np.array([support.clades[k >> bits & mask].bit_count()
                      + support.clades[k >> (2 * bits)].bit_count()
                      for k in tables.pcsp_keys.tolist()])
    n = support.n_taxa
    return np.where(sizes == n, 1, 2 * (n - sizes) - 1)


def _log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(values)
