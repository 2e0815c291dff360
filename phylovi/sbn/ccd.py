"""CCD: the conditional clade distribution (Hoehna & Drummond 2012; Larget 2013).

A clade's split is conditioned on the clade alone, not on its parent
subsplit. As in Zhang & Matsen (2018, section 6.2), each unrooted sample's
weight is spread evenly over its 2n - 3 rootings, clade and clade-split
frequencies are estimated from that, and an unrooted topology's probability
sums its rooted probabilities over the rootings.
"""

from __future__ import annotations

import numpy as np

from phylovi.sbn.network import SubsplitNetwork
from phylovi.sbn.sa import fit_sa
from phylovi.sbn.support import EncodedTopologies, SubsplitSupport


def fit_ccd(support: SubsplitSupport, encoded: EncodedTopologies, weights: np.ndarray
            ) -> SubsplitNetwork:
    """CCD from weighted unrooted topologies (``weights``: ``[T]``)."""
    return fit_sa(support, encoded, weights, conditioning="clade")
