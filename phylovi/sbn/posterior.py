"""``TreePosterior``: fit a distribution over tree topologies to tree samples, then query it.

Topologies are unrooted unless the model is fitted with ``rooted=True`` to
rooted trees (e.g. BEAST time trees); then the root is observed, the queries
take and return rooted topologies, and clade support is defined.

Methods (Zhang & Matsen 2018):

- ``"srf"``: sample relative frequencies (zero for unsampled topologies);
- ``"ccd"``: conditional clade distribution;
- ``"sa"``: SBN with simple averaging over rootings;
- ``"em"``: SBN fitted by EM with the root position latent;
- ``"em-alpha"``: EM with a Dirichlet prior of strength alpha built from SA.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from phylovi.errors import ConfigError, PhyloviError, PosteriorFileError, require_path
from phylovi.io import atomic
from phylovi.io.trees import (TreeSample, burnin_count, is_newick_string, read_rooted_topology,
                              read_tree, read_trees)
from phylovi.sbn.ccd import fit_ccd
from phylovi.sbn.em import fit_em
from phylovi.sbn.network import SubsplitNetwork
from phylovi.sbn.sa import fit_sa
from phylovi.sbn.srf import relative_frequencies
from phylovi.sbn.support import SubsplitSupport
from phylovi.trees.bitset import is_trivial_split
from phylovi.trees.taxa import TaxonOrder
from phylovi.trees.topology import RootedTopology, Topology, Tree

METHODS = ("srf", "ccd", "sa", "em", "em-alpha")
DEFAULT_ALPHA = 1e-4
FILE_FORMAT = "phylovi-tree-posterior"
FILE_VERSION = 1
# Draws added to the training topologies when ranking an SBN's topologies.
_CANDIDATE_DRAWS = 2000


@dataclass
class FitInfo:
    """How a posterior was fitted.

    Attributes:
        n_trees: trees read (after burn-in), or items given.
        n_topologies: distinct topologies among them.
        iterations: EM iterations (0 for the other methods).
        objective: EM objective after each iteration.
        converged: whether EM met its tolerance before the iteration cap.
        seconds: wall time of the fit.
    """

    n_trees: int
    n_topologies: int
    iterations: int = 0
    objective: list[float] = field(default_factory=list)
    converged: bool = True
    seconds: float = 0.0


class TreePosterior:
    """A distribution over the unrooted (or, if ``rooted``, rooted) topologies of one taxon set.

    Build one with :meth:`fit` or :meth:`load`. Trees given to the queries may
    be Newick strings, DendroPy trees, :class:`Topology` or :class:`Tree`
    objects; a tree whose taxa differ from the model's raises
    :class:`phylovi.errors.TaxonMismatchError`.
    """

    def __init__(self, taxa: TaxonOrder, method: str, network: SubsplitNetwork | None,
                 topologies: Sequence[Topology | RootedTopology], probabilities: np.ndarray,
                 alpha: float = 0.0, info: FitInfo | None = None, rooted: bool = False):
        self.taxa = taxa
        self.rooted = rooted
        self.method = method
        self.alpha = alpha
        self.network = network
        self.training = tuple(topologies)
        self.training_probabilities = np.asarray(probabilities, dtype=np.float64)
        self.info = info or FitInfo(len(self.training), len(self.training))
        self._srf = dict(zip(self.training, self.training_probabilities.tolist()))
        self._ranked: tuple[list[Topology], np.ndarray] | None = None

    # -- fitting -----------------------------------------------------------------------

    @classmethod
    def fit(cls, trees, method: str = "em", alpha: float | None = None, burnin: float = 0.0,
            weights: Sequence[float] | None = None, taxa: TaxonOrder | Sequence[str] | None = None,
            tolerance: float = 1e-5, min_iterations: int = 50, max_iterations: int = 1000,
            samples_per_file: int | None = None, rooted: bool = False,
            progress: bool = False) -> "TreePosterior":
        """Fit to tree samples.

        Args:
            trees: a tree file path, a list of paths (each file's weights are
                normalised, then files are pooled with equal weight), a
                :class:`TreeSample`, or a list of trees (Newick strings,
                DendroPy trees, topologies).
            method: one of ``srf``, ``ccd``, ``sa``, ``em``, ``em-alpha``.
            alpha: EM-alpha's prior strength (default 1e-4); only for ``em-alpha``.
            burnin: fraction in [0, 1) of each file's trees to drop first.
            weights: one weight per tree, for a list of trees (default 1 each).
            taxa: the taxon order (default: the first file's, or the first tree's).
            tolerance, min_iterations, max_iterations: EM's stopping rule
                (the defaults are those of Zhang & Matsen 2018).
            samples_per_file: for tree files whose weights are rounded
                fractions of a known number of samples (MrBayes ``.trprobs``
                prints 6 decimals): weights become the counts
                ``round(w * samples_per_file)``, pooled over the files. The
                published SBN benchmarks use 750001.
            rooted: fit a distribution over rooted topologies to rooted trees
                (each tree's root is where its file puts it; an unrooted tree
                is an error). The root is then observed, so EM has nothing to
                infer and ``em`` gives the SA estimate.
            progress: show a progress bar for EM on a terminal.

        Raises:
            ConfigError: unknown method, misplaced alpha, bad EM settings.
            TreeFileError, TaxonMismatchError: unreadable trees or mismatched taxa.
        """
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        if method == "em-alpha":
            alpha = DEFAULT_ALPHA if alpha is None else alpha
            if not _is_real(alpha) or not alpha > 0 or not math.isfinite(alpha):
                raise ConfigError(f"alpha must be a positive number, got {alpha!r}")
            alpha = float(alpha)
        elif alpha not in (None, 0, 0.0):
            raise ConfigError(f"alpha applies only to method em-alpha, not {method!r}")
        if (not _is_integer(min_iterations) or not _is_integer(max_iterations)
                or not 1 <= min_iterations <= max_iterations
                or not _is_real(tolerance) or not tolerance >= 0):
            raise ConfigError("EM needs integers 1 <= min_iterations <= max_iterations and a "
                              f"tolerance >= 0, got {min_iterations!r}, {max_iterations!r}, "
                              f"{tolerance!r}")
        started = time.perf_counter()
        taxa, topologies, raw_weights = collect_trees(trees, taxa, burnin, weights, samples_per_file,
                                                      rooted)
        distinct, probabilities = relative_frequencies(topologies, raw_weights)
        info = FitInfo(len(topologies), len(distinct))
        network = None
        if method != "srf":
            if len(taxa) < 3:
                raise ConfigError("subsplit networks need at least 3 taxa")
            support = SubsplitSupport.from_topologies(taxa, distinct)
            encoded = support.encode(distinct)
            if method == "sa":
                network = fit_sa(support, encoded, probabilities)
            elif method == "ccd":
                network = fit_ccd(support, encoded, probabilities)
            else:
                with _em_progress(progress, max_iterations) as report:
                    network, trace = fit_em(support, encoded, probabilities, alpha or 0.0,
                                            tolerance, min_iterations, max_iterations, report)
                info.iterations, info.objective = trace.n_iterations, trace.objective
                info.converged = trace.converged
        info.seconds = time.perf_counter() - started
        return cls(taxa, method, network, distinct, probabilities, alpha or 0.0, info, rooted)

    # -- queries ---------------------------------------------------------------------------

    def log_prob(self, trees) -> np.ndarray:
        """Log-probability ``[T]`` of each tree's topology (-inf outside the support)."""
        topologies = self.topologies_of(trees)
        if self.network is None:
            with np.errstate(divide="ignore"):
                return np.log(np.array([self._srf.get(t, 0.0) for t in topologies], dtype=np.float64))
        return self.network.log_prob(topologies)

    def probability(self, tree) -> float:
        """Probability of one tree's topology (0 outside the support)."""
        return float(np.exp(self.log_prob([tree])[0]))

    def top(self, k: int) -> list[tuple[Topology, float]]:
        """The ``k`` most probable topologies, most probable first.

        SRF ranks its sample exactly. A subsplit network ranks the training
        topologies together with 2,000 of its own draws (seed 0), so a
        topology it has never produced can be missed; :meth:`credible_set`
        reports how much probability the ranked list covers.
        """
        if not _is_integer(k) or k < 1:
            raise ConfigError(f"k must be an integer of at least 1, got {k!r}")
        topologies, probs = self._ranking()
        return list(zip(topologies[:k], probs[:k].tolist()))

    def map_tree(self) -> Topology:
        """The most probable topology (see :meth:`top` for how it is searched)."""
        return self.top(1)[0][0]

    def credible_set(self, level: float = 0.95) -> list[tuple[Topology, float]]:
        """Smallest set of most probable topologies whose probabilities sum to ``level``.

        If the ranked topologies cover less than ``level`` in total, all of them
        are returned (their sum says how far short it fell).
        """
        if not _is_real(level) or not 0 < level <= 1:
            raise ConfigError(f"the credible level must be a number in (0, 1], got {level!r}")
        topologies, probs = self._ranking()
        cumulative = np.cumsum(probs)
        n = int(np.searchsorted(cumulative, level * (1 - 1e-12))) + 1
        return list(zip(topologies[:n], probs[:n].tolist()))

    def split_support(self) -> dict[int, float]:
        """Posterior probability of every non-trivial split with positive support.

        Keys are split bitsets (the side without taxon 0); use
        :meth:`split_names` to print one.
        """
        if self.network is None:
            support: dict[int, float] = {}
            for topology, p in zip(self.training, self.training_probabilities.tolist()):
                unrooted = topology.unrooted() if self.rooted else topology
                for split in unrooted.nontrivial_splits:
                    support[split] = support.get(split, 0.0) + p
        else:
            support = self.network.split_support()
        n = len(self.taxa)
        rows = {s: min(p, 1.0) for s, p in support.items() if not is_trivial_split(s, n) and p > 0}
        return dict(sorted(rows.items(), key=lambda item: (-item[1], item[0])))

    def clade_support(self) -> dict[int, float]:
        """Posterior probability of every clade of two or more taxa below the root (rooted models).

        Keys are clade bitsets; :meth:`split_names` prints one (its first list
        is the clade when the clade is the smaller side).

        Raises:
            ConfigError: the model is unrooted, where clades are not defined.
        """
        if not self.rooted:
            raise ConfigError("clade support needs a rooted model (fit it with --rooted, or "
                              "rooted=True in Python)")
        full = self.taxa.full_mask
        if self.network is None:
            support: dict[int, float] = {}
            for topology, p in zip(self.training, self.training_probabilities.tolist()):
                for clade in topology.clades:
                    support[clade] = support.get(clade, 0.0) + p
        else:
            clades = self.network.support.clades
            support = {clades[i]: p for i, p in self.network.clade_support().items()}
        rows = {c: min(p, 1.0) for c, p in support.items()
                if c.bit_count() > 1 and c != full and p > 0}
        return dict(sorted(rows.items(), key=lambda item: (-item[1], item[0])))

    def clade_names(self, clade: int) -> list[str]:
        """The taxon names in a clade bitset."""
        if (isinstance(clade, bool) or not isinstance(clade, numbers.Integral)
                or not 0 < clade < 1 << len(self.taxa)):
            raise ConfigError(f"{clade!r} is not a clade of these {len(self.taxa)} taxa")
        return [name for i, name in enumerate(self.taxa) if clade >> i & 1]

    def split_names(self, split: int) -> tuple[list[str], list[str]]:
        """The taxon names on the two sides of a split, the smaller side first."""
        every = (1 << len(self.taxa)) - 1  # a split is a non-empty proper subset of them
        if (isinstance(split, bool) or not isinstance(split, numbers.Integral)
                or not 0 < split < every):
            raise ConfigError(f"{split!r} is not a split of these {len(self.taxa)} taxa")
        inside = [name for i, name in enumerate(self.taxa) if split >> i & 1]
        outside = [name for i, name in enumerate(self.taxa) if not split >> i & 1]
        return (inside, outside) if len(inside) <= len(outside) else (outside, inside)

    def sample(self, n: int, seed: int | None = None,
               generator: torch.Generator | None = None) -> list[Topology]:
        """Draw ``n`` topologies; the same ``seed`` (or generator state) gives the same draws."""
        if not _is_integer(n) or n < 0:
            raise ConfigError(f"the number of draws must be an integer >= 0, got {n!r}")
        if seed is not None and (not _is_integer(seed) or not 0 <= seed < 2 ** 64):
            raise ConfigError(f"the seed must be an integer in [0, 2^64), got {seed!r}")
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
        if self.network is not None:
            return self.network.sample(n, generator, rooted=self.rooted)
        picks = torch.multinomial(torch.as_tensor(self.training_probabilities), n,
                                  replacement=True, generator=generator) if n else []
        return [self.training[int(i)] for i in picks]

    def kl(self, reference, eps: float = float(np.finfo(np.float64).eps),
           samples_per_file: int | None = None) -> float:
        """KL(reference || self) = sum over reference topologies of p log(p / max(q, eps)).

        Args:
            reference: an SRF :class:`TreePosterior` or anything :meth:`fit`
                accepts (for example a list of MrBayes ``.trprobs`` files).
            eps: floor on this model's probabilities, so unsupported
                topologies cost a finite amount (float64 machine epsilon, as
                in Zhang & Matsen 2018).
            samples_per_file: as in :meth:`fit`, for reference tree files.
        """
        if not _is_real(eps) or not 0 < eps < 1:
            raise ConfigError(f"eps must be a number in (0, 1), got {eps!r}")
        if not isinstance(reference, TreePosterior):
            reference = TreePosterior.fit(reference, method="srf", taxa=self.taxa,
                                          samples_per_file=samples_per_file, rooted=self.rooted)
        elif reference.method != "srf":
            raise ConfigError("the KL reference must be an SRF posterior or tree files")
        if reference.rooted != self.rooted:
            raise ConfigError("the KL reference and the model must both be rooted or both unrooted")
        reference.taxa.require_same_set(self.taxa, "the reference", "the model")
        topologies = self.topologies_of(list(reference.training))
        p = reference.training_probabilities
        q = np.exp(self.log_prob(topologies))
        value = float(np.sum(p * np.log(p / np.maximum(q, eps))))
        # KL >= 0: a model compared with its own sample can land a rounding error below
        return 0.0 if -1e-12 < value < 0 else value

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as JSON (format in docs/concepts.md), atomically."""
        require_path(path, "the model file")
        record = {
            "format": FILE_FORMAT, "version": FILE_VERSION, "method": self.method,
            "alpha": self.alpha, "rooted": self.rooted, "taxa": list(self.taxa),
            "training": {"newick": [t.to_newick() for t in self.training],
                         "probability": self.training_probabilities.tolist()},
            "fit": {"n_trees": self.info.n_trees, "n_topologies": self.info.n_topologies,
                    "iterations": self.info.iterations, "objective": self.info.objective,
                    "converged": self.info.converged, "seconds": self.info.seconds},
            "network": None if self.network is None else self.network.to_dict(),
        }
        with atomic.write(path) as handle:
            json.dump(record, handle)
            handle.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TreePosterior":
        """Read a model written by :meth:`save`.

        Raises:
            PosteriorFileError: the file is missing, not JSON, or not a phylovi posterior.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"a model is read from a path, not a {type(path).__name__}")
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except OSError as error:
            raise PosteriorFileError(f"cannot read the model: {error.strerror}", path=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise PosteriorFileError(f"not a JSON file ({error})", path=path) from None
        if not isinstance(record, dict) or record.get("format") != FILE_FORMAT:
            raise PosteriorFileError(f"not a {FILE_FORMAT} file", path=path)
        if record.get("version") != FILE_VERSION:
            raise PosteriorFileError(
                f"format version {record.get('version')!r}, this phylovi reads {FILE_VERSION}",
                path=path)
        try:
            taxa = TaxonOrder(record["taxa"])
            rooted = record["rooted"]
            if not isinstance(rooted, bool):
                raise ValueError(f"rooted is {rooted!r}, not true or false")
            training = [_topology(newick, taxa, rooted) for newick in record["training"]["newick"]]
            network = (None if record["network"] is None
                       else SubsplitNetwork.from_dict(taxa, record["network"]))
            fit = record["fit"]
            info = FitInfo(fit["n_trees"], fit["n_topologies"], fit["iterations"],
                           list(fit["objective"]), fit["converged"], fit["seconds"])
            probabilities = np.array(record["training"]["probability"], dtype=np.float64)
            if record["method"] not in METHODS:
                raise ValueError(f"unknown method {record['method']!r}")
            if probabilities.shape != (len(training),):
                raise ValueError(f"{len(training)} training topologies but "
                                 f"{probabilities.size} probabilities")
            tables = [probabilities] if network is None else [
                probabilities, network.rootsplit_probs, network.pcsp_probs]
            if any(not (np.isfinite(t).all() and (t >= 0).all() and (t <= 1 + 1e-9).all())
                   for t in tables):
                raise ValueError("a probability is not a number in [0, 1]")
            return cls(taxa, record["method"], network, training, probabilities,
                       float(record["alpha"]), info, rooted)
        except PhyloviError as error:
            raise PosteriorFileError(f"corrupt model: {error}", path=path) from None
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise PosteriorFileError(f"corrupt model: {type(error).__name__} {error}",
                                     path=path) from None

    # -- helpers -----------------------------------------------------------------------------

    def topologies_of(self, trees) -> list[Topology] | list[RootedTopology]:
        """Topologies over this model's taxon order (rooted for a rooted model) from any tree form."""
        if (isinstance(trees, (str, os.PathLike, Topology, RootedTopology, Tree))
                or _is_dendropy_tree(trees)):
            trees = [trees]
        if not hasattr(trees, "__iter__"):
            raise ConfigError(f"cannot read a tree from a {type(trees).__name__}")
        return [_topology(tree, self.taxa, self.rooted) for tree in trees]

    def _ranking(self) -> tuple[list[Topology], np.ndarray]:
        if self._ranked is None:
            candidates = list(self.training)
            if self.network is not None:
                known = set(candidates)
                for topology in self.sample(_CANDIDATE_DRAWS, seed=0):
                    if topology not in known:
                        known.add(topology)
                        candidates.append(topology)
            probs = np.exp(self.log_prob(candidates))
            order = np.argsort(-probs, kind="stable")
            self._ranked = [candidates[i] for i in order], probs[order]
        return self._ranked

    def __repr__(self) -> str:
        return (f"TreePosterior(method={self.method!r}, n_taxa={len(self.taxa)}, "
                f"n_topologies={len(self.training)}, rooted={self.rooted})")


def collect_trees(trees, taxa, burnin: float, weights, samples_per_file: int | None = None,
                  rooted: bool = False) -> tuple[TaxonOrder, list, np.ndarray]:
    """Taxa, topologies and weights from any input :meth:`TreePosterior.fit` accepts."""
    if samples_per_file is not None and (not _is_integer(samples_per_file) or samples_per_file < 1):
        raise ConfigError(f"samples per file must be an integer of at least 1, got {samples_per_file!r}")
    if not _is_real(burnin) or not 0 <= burnin < 1:
        raise ConfigError(f"burn-in must be a number in [0, 1), got {burnin!r}")
    if taxa is not None and not isinstance(taxa, TaxonOrder):
        taxa = TaxonOrder(taxa)
    if isinstance(trees, TreeSample):
        topologies = trees.rooted_topologies() if rooted else [t.topology for t in trees.trees]
        return trees.taxa, topologies, trees.weights
    if isinstance(trees, (str, os.PathLike)) and not is_newick_string(trees):
        trees = [trees]
    trees = list(trees) if isinstance(trees, Iterable) and not isinstance(trees, str) else [trees]
    if not trees:
        raise ConfigError("no trees were given")
    if all(isinstance(t, (str, os.PathLike)) and not is_newick_string(t) for t in trees):
        if weights is not None:
            raise ConfigError("weights apply to a list of trees, not to tree files")
        topologies, pooled = [], []
        for path in trees:
            sample = read_trees(path, taxa=taxa, burnin=burnin, lengths=False)
            taxa = sample.taxa
            if sample.weights.sum() <= 0:
                raise ConfigError(f"the trees of {os.fspath(path)} have zero total weight")
            topologies += (sample.rooted_topologies() if rooted
                           else [t.topology for t in sample.trees])
            if samples_per_file is None:
                pooled.append(sample.weights / sample.weights.sum() / len(trees))
            else:
                counts = np.round(sample.weights * samples_per_file)
                if counts.sum() <= 0:
                    raise ConfigError(f"the trees of {os.fspath(path)} round to no sample at "
                                      f"{samples_per_file} samples per file")
                pooled.append(counts)
        return taxa, topologies, np.concatenate(pooled)
    if samples_per_file is not None:
        raise ConfigError("samples per file applies to tree files, not to a list of trees")
    if taxa is None:
        first = trees[0]
        taxa = (first.taxa if isinstance(first, (Topology, RootedTopology, Tree))
                else read_tree(_newick_of(first), lengths=False).taxa)
    topologies = [_topology(tree, taxa, rooted) for tree in trees]
    if weights is None:
        weights = np.ones(len(topologies))
    try:
        weights = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        weights = np.array([np.nan])  # refused below, like any other bad weight
    if weights.shape != (len(topologies),) or not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise ConfigError(f"expected {len(topologies)} finite non-negative weights")
    skip = burnin_count(burnin, len(topologies))
    if weights[skip:].sum() <= 0:
        raise ConfigError("the weights of the trees after the burn-in sum to zero"
                          if skip else "the weights sum to zero")
    return taxa, topologies[skip:], weights[skip:]


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _topology(tree, taxa: TaxonOrder, rooted: bool = False) -> Topology | RootedTopology:
    if isinstance(tree, Tree):
        tree = tree.topology
    if isinstance(tree, RootedTopology) and not rooted:
        tree = tree.unrooted()
    if isinstance(tree, Topology) and rooted:
        raise ConfigError("a rooted model needs rooted trees, got an unrooted topology")
    if isinstance(tree, (Topology, RootedTopology)):
        if tree.taxa == taxa:
            return tree
        tree.taxa.require_same_set(taxa, "the tree", "the model")
        tree = tree.to_newick()
    if rooted:
        return read_rooted_topology(_newick_of(tree), taxa)
    return read_tree(_newick_of(tree), taxa, lengths=False).topology


def _newick_of(tree) -> str:
    if _is_dendropy_tree(tree):
        return tree.as_string(schema="newick", suppress_rooting=True)
    if isinstance(tree, str) and not tree.strip():
        raise ConfigError("cannot read a tree from an empty string")
    if isinstance(tree, (str, os.PathLike)):
        return os.fspath(tree)
    raise ConfigError(f"cannot read a tree from a {type(tree).__name__}")


def _is_dendropy_tree(value) -> bool:
    return type(value).__module__.startswith("dendropy") and hasattr(value, "as_string")


class _em_progress:
    """A tqdm bar over EM iterations on a terminal; a no-op otherwise."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc="SBN-EM", unit="it", file=sys.stderr, leave=False)

        def report(iteration: int, objective: float) -> None:
            self.bar.update(1)
            self.bar.set_postfix(objective=f"{objective:.6f}")

        return report

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
