"""SRF: the sample relative frequency of each unrooted topology.

The baseline every tree-probability estimator is compared with: a topology's
probability is its share of the sample's weight, and zero if unsampled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from phylovi.trees.topology import Topology


def relative_frequencies(topologies: Sequence[Topology], weights: np.ndarray
                         ) -> tuple[tuple[Topology, ...], np.ndarray]:
    """Distinct topologies and their normalised total weights, most probable first.

    Args:
        topologies: ``T`` topologies, repeats allowed.
        weights: ``[T]`` non-negative weights with a positive sum.
    """
    total: dict[Topology, float] = defaultdict(float)
    for topology, weight in zip(topologies, np.asarray(weights, dtype=np.float64).tolist()):
        total[topology] += weight
    distinct = [t for t, w in total.items() if w > 0]
    probs = np.array([total[t] for t in distinct])
    order = np.argsort(-probs, kind="stable")
    return tuple(distinct[i] for i in order), probs[order] / probs.sum()
