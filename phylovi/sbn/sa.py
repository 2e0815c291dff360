"""SBN-SA: subsplit frequencies with every rooting of a sampled tree weighted equally.

Zhang & Matsen (2018), section 4.1 ("simple averaging"): each unrooted sample
of weight w contributes w / (2n - 3) to the rootsplit and PCSPs of each of its
rootings, and the conditional probabilities are these counts normalised within
each parent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phylovi.sbn.network import SubsplitNetwork, by_rooting, key_bits, pack
from phylovi.sbn.support import EncodedTopologies, SubsplitSupport


@dataclass(frozen=True)
class TrainingTables:
    """A training sample as indices into the tables it spans.

    Attributes:
        rootsplit_keys: ``[n_rootsplits]`` sorted clade ids.
        rootsplit_index: ``[T, R]`` index of each rooting's rootsplit.
        pcsp_keys: ``[n_pcsps]`` sorted packed PCSP keys.
        pcsp_index: ``[T, R, n-2]`` index of each rooting's PCSPs.
        parent_of: ``[n_pcsps]`` parent group of each PCSP.
        weights: ``[T]`` sample weights, normalised to sum to 1.
    """

    rootsplit_keys: np.ndarray
    rootsplit_index: np.ndarray
    pcsp_keys: np.ndarray
    pcsp_index: np.ndarray
    parent_of: np.ndarray
    weights: np.ndarray

    @classmethod
    def build(cls, support: SubsplitSupport, encoded: EncodedTopologies, weights: np.ndarray,
              conditioning: str) -> "TrainingTables":
        bits = key_bits(len(support))
        rootsplits, instances = pack(encoded, conditioning, bits)
        pcsps = by_rooting(instances, encoded.choice)
        if (rootsplits < 0).any() or (pcsps < 0).any():
            raise ValueError("the support does not cover the training topologies")
        rootsplit_keys, rootsplit_index = np.unique(rootsplits, return_inverse=True)
        pcsp_keys = np.unique(instances[instances >= 0])
        pcsp_index = np.searchsorted(pcsp_keys, pcsps)
        _, parent_of = np.unique(pcsp_keys >> bits, return_inverse=True)
        weights = np.asarray(weights, dtype=np.float64)
        return cls(rootsplit_keys, rootsplit_index.reshape(rootsplits.shape), pcsp_keys,
                   pcsp_index, parent_of, weights / weights.sum())

    def counts(self, rooting_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected rootsplit and PCSP counts given a weight ``[T, R]`` for every rooting."""
        n_per_rooting = self.pcsp_index.shape[-1]
        root = np.bincount(self.rootsplit_index.ravel(), rooting_weights.ravel(),
                           minlength=len(self.rootsplit_keys))
        pcsp = np.bincount(self.pcsp_index.ravel(), np.repeat(rooting_weights.ravel(), n_per_rooting),
                           minlength=len(self.pcsp_keys))
        return root, pcsp

    def parent_totals(self, pcsp_values: np.ndarray) -> np.ndarray:
        """Sum of a per-PCSP quantity over each PCSP's parent, per PCSP."""
        return np.bincount(self.parent_of, pcsp_values)[self.parent_of]

    def network(self, support: SubsplitSupport, conditioning: str, rootsplit_probs: np.ndarray,
                pcsp_probs: np.ndarray) -> SubsplitNetwork:
        return SubsplitNetwork(support, conditioning, self.rootsplit_keys, rootsplit_probs,
                               self.pcsp_keys, pcsp_probs)


def normalise(tables: TrainingTables, root_counts: np.ndarray, pcsp_counts: np.ndarray):
    """Rootsplit probabilities and within-parent conditional probabilities from counts.

    A parent whose children all have zero count gets a uniform conditional.
    """
    totals = tables.parent_totals(pcsp_counts)
    sizes = tables.parent_totals(np.ones_like(pcsp_counts))
    with np.errstate(invalid="ignore", divide="ignore"):
        pcsp = np.where(totals > 0, pcsp_counts / totals, 1.0 / sizes)
    return root_counts / root_counts.sum(), pcsp


def average_counts(tables: TrainingTables) -> tuple[np.ndarray, np.ndarray]:
    """Counts with every rooting of a tree weighted equally (they sum to 1 over rootsplits)."""
    n_rootings = tables.rootsplit_index.shape[1]
    rooting_weights = np.broadcast_to(tables.weights[:, None] / n_rootings,
                                      tables.rootsplit_index.shape)
    return tables.counts(np.ascontiguousarray(rooting_weights))


def fit_sa(support: SubsplitSupport, encoded: EncodedTopologies, weights: np.ndarray,
           conditioning: str = "subsplit") -> SubsplitNetwork:
    """SBN-SA (or, with ``conditioning="clade"``, CCD) from weighted unrooted topologies.

    Args:
        support: a support covering the topologies.
        encoded: the encoded training topologies (``T`` of them).
        weights: ``[T]`` non-negative weights.
    """
    tables = TrainingTables.build(support, encoded, weights, conditioning)
    return tables.network(support, conditioning, *normalise(tables, *average_counts(tables)))
