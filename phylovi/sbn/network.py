"""A subsplit Bayesian network's parameters: rootsplit and PCSP probability tables.

The network is a distribution over rooted topologies (Zhang & Matsen 2018,
section 3): a rootsplit, then for every non-root internal node the subsplit of
its clade given its parent subsplit (``conditioning="subsplit"``, the SBN) or
given its clade alone (``conditioning="clade"``, CCD). The probability of an
unrooted topology sums over its ``2n - 3`` rootings.

Tables are keyed by clade ids of a :class:`SubsplitSupport`. A PCSP key packs
(sister, clade, child) into one int64; its parent key is the key without the
child, so the PCSPs of one parent are contiguous in the sorted table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from phylovi.errors import PhyloviError
from phylovi.sbn.support import EncodedTopologies, SubsplitSupport
from phylovi.trees.topology import RootedTopology, Topology

CONDITIONINGS = ("subsplit", "clade")


def key_bits(n_clades: int) -> int:
    """Bits per clade id in a packed key; the all-ones value means "no sister"."""
    bits = (n_clades + 1).bit_length()
    if 3 * bits > 63:
        raise PhyloviError(f"the support holds {n_clades} clades, more than packed keys allow")
    return bits


def pack(encoded: EncodedTopologies, conditioning: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Rootsplit keys ``[T, R]`` and PCSP instance keys ``[T, n-2, 9]``; -1 where a clade is unknown."""
    no_sister = (1 << bits) - 1
    sisters = encoded.sisters if conditioning == "subsplit" else np.full_like(encoded.sisters, no_sister)
    keys = (sisters << (2 * bits)) | (encoded.clades << bits) | encoded.children
    unknown = (encoded.sisters < 0) | (encoded.clades < 0) | (encoded.children < 0)
    keys[unknown] = -1
    return encoded.rootsplits.copy(), keys


def lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in a sorted table, -1 where absent (or where the key is -1)."""
    if len(table) == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    at = np.searchsorted(table, keys)
    at = np.minimum(at, len(table) - 1)
    found = (table[at] == keys) & (keys >= 0)
    return np.where(found, at, -1)


class SubsplitNetwork:
    """Rootsplit and PCSP probabilities over a support.

    Args:
        support: the clade numbering.
        conditioning: "subsplit" (SBN) or "clade" (CCD).
        rootsplit_keys: ``[n_rootsplits]`` sorted clade ids (the side without taxon 0).
        rootsplit_probs: ``[n_rootsplits]`` probabilities summing to 1.
        pcsp_keys: ``[n_pcsps]`` sorted packed PCSP keys.
        pcsp_probs: ``[n_pcsps]`` conditional probabilities, summing to 1 within each parent.
    """

    def __init__(self, support: SubsplitSupport, conditioning: str, rootsplit_keys: np.ndarray,
                 rootsplit_probs: np.ndarray, pcsp_keys: np.ndarray, pcsp_probs: np.ndarray):
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        self.support = support
        self.conditioning = conditioning
        self.bits = key_bits(len(support))
        self.rootsplit_keys = np.asarray(rootsplit_keys, dtype=np.int64)
        self.rootsplit_probs = np.asarray(rootsplit_probs, dtype=np.float64)
        self.pcsp_keys = np.asarray(pcsp_keys, dtype=np.int64)
        self.pcsp_probs = np.asarray(pcsp_probs, dtype=np.float64)
        self.parent_keys, self.parent_of = np.unique(self.pcsp_keys >> self.bits, return_inverse=True)
        # The PCSPs of parent g are pcsp_keys[parent_start[g]:parent_end[g]].
        self.parent_start = np.searchsorted(self.pcsp_keys >> self.bits, self.parent_keys)
        self.parent_end = np.append(self.parent_start[1:], len(self.pcsp_keys))
        # Log tables with a trailing -inf, so that index -1 (unknown) gathers -inf.
        with np.errstate(divide="ignore"):
            self._log_rootsplit = np.append(np.log(self.rootsplit_probs), -np.inf)
            self._log_pcsp = np.append(np.log(self.pcsp_probs), -np.inf)

    # -- evaluation ----------------------------------------------------------------

    def rooted_log_probs(self, encoded: EncodedTopologies) -> np.ndarray:
        """Log-probability ``[T, R]`` of every rooting of each encoded topology."""
        rootsplits, pcsps = pack(encoded, self.conditioning, self.bits)
        log_root = self._log_rootsplit[lookup(self.rootsplit_keys, rootsplits)]
        log_pcsp = self._log_pcsp[lookup(self.pcsp_keys, pcsps)]
        return log_root + by_rooting(log_pcsp, encoded.choice).sum(axis=-1)

    def log_prob(self, topologies: Sequence[Topology]) -> np.ndarray:
        """Log-probability ``[T]`` of unrooted topologies (-inf outside the support)."""
        out = np.empty(len(topologies))
        for start in range(0, len(topologies), 2048):
            chunk = topologies[start:start + 2048]
            out[start:start + len(chunk)] = logsumexp_rows(
                self.rooted_log_probs(self.support.encode(chunk)))
        return out

    # -- sampling --------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator | None = None,
               rooted: bool = False) -> list[Topology] | list[RootedTopology]:
        """Draw ``n`` topologies: rooted draws, with the root forgotten unless ``rooted``.

        Args:
            n: number of draws.
            generator: the source of randomness (the same seed gives the same draws).
            rooted: return :class:`RootedTopology` draws.
        """
        n_taxa = self.support.n_taxa
        uniforms = torch.rand((n, n_taxa - 1), generator=generator, dtype=torch.float64).numpy()
        root_cdf = np.cumsum(self.rootsplit_probs)
        pcsp_cdf = self._within_parent_cdf()
        parent_range = dict(zip(self.parent_keys.tolist(),
                                zip(self.parent_start.tolist(), self.parent_end.tolist())))
        clades, full = self.support.clades, self.support.taxa.full_mask
        child_mask = (1 << self.bits) - 1
        no_sister = child_mask
        draws = []
        for u in uniforms:
            pick = min(int(np.searchsorted(root_cdf, u[0] * root_cdf[-1], side="right")),
                       len(root_cdf) - 1)
            left = int(self.rootsplit_keys[pick])
            right = self.support.clade_id(full ^ clades[left])
            splits = [clades[left], clades[right]]
            stack = [(right, left), (left, right)]  # (sister, clade)
            used = 1
            while stack:
                sister, clade = stack.pop()
                if clades[clade].bit_count() == 1:
                    continue
                parent = ((sister if self.conditioning == "subsplit" else no_sister) << self.bits) | clade
                start, end = parent_range[parent]
                cdf = pcsp_cdf[start:end]
                j = start + min(int(np.searchsorted(cdf, u[used] * cdf[-1], side="right")), end - start - 1)
                used += 1
                half = int(self.pcsp_keys[j]) & child_mask
                other = self.support.clade_id(clades[clade] ^ clades[half])
                splits += [clades[half], clades[other]]
                stack += [(other, half), (half, other)]
            draws.append((RootedTopology if rooted else Topology)(self.support.taxa, splits))
        return draws

    def _within_parent_cdf(self) -> np.ndarray:
        cdf = np.cumsum(self.pcsp_probs)
        offset = np.concatenate([[0.0], cdf])[self.parent_start]
        return cdf - offset[self.parent_of]

    # -- marginals -------------------------------------------------------------------

    def clade_support(self) -> dict[int, float]:
        """Probability that a rooted draw has each clade below the root, by clade id.

        A forward pass over parent subsplits, largest parent clade first: a
        parent's probability flows to its children's parent subsplits in
        proportion to the conditional probabilities.
        """
        clades, full = self.support.clades, self.support.taxa.full_mask
        child_mask = (1 << self.bits) - 1
        subsplit = self.conditioning == "subsplit"
        parent_mass: dict[int, float] = defaultdict(float)
        clade_mass: dict[int, float] = defaultdict(float)

        def reach(sister: int, clade: int, mass: float) -> None:
            clade_mass[clade] += mass
            parent_mass[((sister if subsplit else child_mask) << self.bits) | clade] += mass

        for key, p in zip(self.rootsplit_keys.tolist(), self.rootsplit_probs.tolist()):
            other = self.support.clade_id(full ^ clades[key])
            reach(other, key, p)
            reach(key, other, p)
        sizes = np.array([clades[int(k) & child_mask].bit_count()
                          + (clades[int(k) >> self.bits].bit_count() if subsplit else 0)
                          for k in self.parent_keys])
        for g in np.argsort(-sizes, kind="stable"):
            mass = parent_mass.get(int(self.parent_keys[g]), 0.0)
            if mass == 0.0:
                continue
            clade = int(self.parent_keys[g]) & child_mask
            for j in range(self.parent_start[g], self.parent_end[g]):
                half = int(self.pcsp_keys[j]) & child_mask
                other = self.support.clade_id(clades[clade] ^ clades[half])
                reach(other, half, mass * self.pcsp_probs[j])
                reach(half, other, mass * self.pcsp_probs[j])
        return dict(clade_mass)

    def split_support(self) -> dict[int, float]:
        """Probability that an unrooted draw has each split, by split bitset (side without taxon 0).

        A split {A, B} is in the unrooted tree exactly when A or B is a clade of
        the rooted draw, and both are clades only when {A, B} is the rootsplit.
        """
        clades, full = self.support.clades, self.support.taxa.full_mask
        clade_mass = self.clade_support()
        root = dict(zip(self.rootsplit_keys.tolist(), self.rootsplit_probs.tolist()))
        support: dict[int, float] = {}
        for clade_id, mass in clade_mass.items():
            clade = clades[clade_id]
            split = clade ^ full if clade & 1 else clade
            if split in support:
                continue
            split_id = self.support.clade_id(split)
            other_id = self.support.clade_id(full ^ split)
            support[split] = min(1.0, clade_mass.get(split_id, 0.0) + clade_mass.get(other_id, 0.0)
                                 - root.get(split_id, 0.0))
        return support

    # -- persistence -----------------------------------------------------------------

    def to_dict(self) -> dict:
        """Tables with clades written as taxon-index lists (see docs/concepts.md)."""
        child_mask = (1 << self.bits) - 1
        clades = self.support.clades
        keys = self.pcsp_keys.tolist()
        return {
            "conditioning": self.conditioning,
            "clades": [_hex(c) for c in clades],
            "rootsplits": {"clade": self.rootsplit_keys.tolist(),
                           "probability": self.rootsplit_probs.tolist()},
            "pcsps": {"sister": [_sister_id(k, self.bits) for k in keys],
                      "clade": [(k >> self.bits) & child_mask for k in keys],
                      "child": [k & child_mask for k in keys],
                      "probability": self.pcsp_probs.tolist()},
        }

    @classmethod
    def from_dict(cls, taxa, record: dict) -> "SubsplitNetwork":
        """The network :meth:`to_dict` wrote; ValueError where the tables do not fit
        together (lengths, clade indices, key order, probabilities summing to 1)."""
        support = SubsplitSupport(taxa, [int(c, 16) for c in record["clades"]])
        n_clades, bits = len(support), key_bits(len(support))
        pcsps, roots = record["pcsps"], record["rootsplits"]
        sister, clade, child = (np.array(pcsps[k], dtype=np.int64) for k in ("sister", "clade", "child"))
        pcsp_probs = np.array(pcsps["probability"], dtype=np.float64)
        root_keys = np.array(roots["clade"], dtype=np.int64)
        root_probs = np.array(roots["probability"], dtype=np.float64)
        if (any(a.ndim != 1 for a in (sister, clade, child, pcsp_probs, root_keys, root_probs))
                or not len(sister) == len(clade) == len(child) == len(pcsp_probs)
                or len(root_keys) != len(root_probs)):
            raise ValueError("the rootsplit or PCSP tables differ in length")
        for name, values, low in (("rootsplit", root_keys, 0), ("sister", sister, -1),
                                  ("parent", clade, 0), ("child", child, 0)):
            if ((values < low) | (values >= n_clades)).any():
                raise ValueError(f"a {name} clade index is outside the {n_clades} clades")
        sister = np.where(sister < 0, (1 << bits) - 1, sister)
        keys = (sister << (2 * bits)) | (clade << bits) | child
        if (np.diff(root_keys) <= 0).any() or (np.diff(keys) <= 0).any():
            raise ValueError("the rootsplit or PCSP tables are not in increasing key order")
        network = cls(support, record["conditioning"], root_keys, root_probs, keys, pcsp_probs)
        sums = np.add.reduceat(pcsp_probs, network.parent_start) if len(keys) else np.ones(0)
        if abs(root_probs.sum() - 1) > 1e-6 or (np.abs(sums - 1) > 1e-6).any():
            raise ValueError("the rootsplit probabilities, or a parent's PCSP probabilities, "
                             "do not sum to 1")
        return network


def by_rooting(per_instance: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Spread a per-instance array ``[T, n-2, 9]`` over rootings: ``[T, R, n-2]``."""
    t, r, k = choice.shape
    flat = per_instance.reshape(t, k * 9)
    at = choice.astype(np.int64) + 9 * np.arange(k)
    return np.take_along_axis(flat, at.reshape(t, r * k), axis=1).reshape(t, r, k)


def logsumexp_rows(values: np.ndarray) -> np.ndarray:
    """``log(sum(exp(values), axis=-1))``, -inf for an all -inf row."""
    top = values.max(axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return safe + np.log(np.exp(values - safe[..., None]).sum(axis=-1))


def _hex(clade: int) -> str:
    return format(clade, "x")


def _sister_id(key: int, bits: int) -> int:
    sister = key >> (2 * bits)
    return -1 if sister == (1 << bits) - 1 else sister
