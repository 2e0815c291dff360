"""Simulated tumour genotype matrices under the infinite-sites model, vectorised over a batch.

A batch of ``N`` genealogies of ``n`` cells comes from Kingman's coalescent
(the process behind Hudson's ``ms n 1 -s m``, which the paper used); each of
the ``m`` mutations falls on a branch chosen with probability proportional to
its length, and the cells below that branch carry it. Every column therefore
has 1 to n-1 ones and the true matrix A is conflict-free. Noise then gives
the observed A': each 0 becomes 1 with probability ``alpha`` (false
positive), each 1 becomes 0 with probability ``beta`` (false negative), and
each entry is missing (3) with probability ``missing``.

Real tumours look less like a neutral genealogy than like a few clonal
expansions: many identical cells, truncal mutations that every tumour cell
carries, sometimes normal cells with no mutation at all. ``prior="clonal"``
simulates that instead (:func:`clonal_matrices`), and ``prior="mixed"`` draws
each matrix from either generator with probability 1/2; the paper used only
the coalescent, which stays the default.

Linear matrices (the mutation tree is a path) are made from branching ones by
keeping their column sizes and nesting the columns along a random order of
the cells. The two classes then have identical density and column-size
distributions, so neither is a shortcut for a classifier (the paper's
staircase generator differed in both; see ../shared/references/genotype.md).
Rows and columns come in random order.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from phylovi.errors import ConfigError
from phylovi.genotype.matrix import MISSING


PRIORS = ("coalescent", "clonal", "mixed")


@dataclass
class SimulatedMatrices:
    """A batch of simulated matrices with their exact labels.

    Attributes:
        true: ``[N, n, m]`` int8, the conflict-free matrices A.
        observed: ``[N, n, m]`` int8, the noisy A' (3 = missing).
        linear: ``[N]`` bool, whether A's mutation tree is a path.
        conflict_free: ``[N]`` bool, whether A' (missing read as 0) is itself conflict-free.
    """

    true: np.ndarray
    observed: np.ndarray
    linear: np.ndarray
    conflict_free: np.ndarray

    def __len__(self) -> int:
        return len(self.true)


def coalescent_matrices(n_matrices: int, n_cells: int, n_mutations: int,
                        rng: np.random.Generator) -> np.ndarray:
    """``[N, n, m]`` conflict-free matrices of mutations dropped on coalescent genealogies."""
    if n_cells < 2:
        raise ConfigError(f"a genealogy needs at least 2 cells, got {n_cells}")
    n_nodes = 2 * n_cells - 1
    rows = np.arange(n_matrices)[:, None]
    below = np.zeros((n_matrices, n_nodes, n_cells), dtype=bool)  # cells under each node
    below[:, np.arange(n_cells), np.arange(n_cells)] = True
    birth = np.zeros((n_matrices, n_nodes))
    length = np.zeros((n_matrices, n_nodes))
    active = np.tile(np.arange(n_cells), (n_matrices, 1))  # lineages, as node ids
    now = np.zeros(n_matrices)
    for k in range(n_cells, 1, -1):
        now = now + rng.exponential(2.0 / (k * (k - 1)), n_matrices)
        # Two distinct lineages among the k active ones, uniformly.
        first = rng.integers(0, k, n_matrices)
        second = (first + rng.integers(1, k, n_matrices)) % k
        a = active[rows[:, 0], first]
        b = active[rows[:, 0], second]
        parent = 2 * n_cells - k
        below[:, parent] = below[rows[:, 0], a] | below[rows[:, 0], b]
        birth[:, parent] = now
        length[rows[:, 0], a] = now - birth[rows[:, 0], a]
        length[rows[:, 0], b] = now - birth[rows[:, 0], b]
        # Replace the first lineage by the parent and drop the second (swap in the last one).
        active[rows[:, 0], first] = parent
        active[rows[:, 0], second] = active[:, k - 1]
        active = active[:, : k - 1]
    # Mutations on branches with probability proportional to length (the root has none).
    cumulative = np.cumsum(length, axis=1)
    targets = rng.random((n_matrices, n_mutations)) * cumulative[:, -1:]
    branch = np.minimum((cumulative[:, None, :] <= targets[..., None]).sum(-1), n_nodes - 2)
    return below[rows, branch].transpose(0, 2, 1).astype(np.int8)  # [N, n, m]


def clonal_matrices(n_matrices: int, n_cells: int, n_mutations: int,
                    rng: np.random.Generator, max_clones: int = 12) -> np.ndarray:
    """``[N, n, m]`` conflict-free matrices of cells drawn from a few clones.

    Each matrix has K clones (K uniform in 1..min(m, ``max_clones``)) below a
    root of normal cells. The clone tree is a random recursive tree (clone k's
    parent is uniform among the root and clones 1..k-1), so clone 1 holds the
    truncal mutations whenever it is the only child of the root. Every clone
    gets at least one mutation and the rest fall on clones uniformly. Cells
    join the root or a clone with Dirichlet(1) weights, so clone sizes are
    uneven and some clones may be empty; half the matrices have no normal
    cells, as when only tumour cells were sequenced. A cell carries a
    mutation when the mutation's clone is its own clone or an ancestor of it.
    """
    n_nodes = min(n_mutations, max_clones) + 1  # node 0 is the root of normal cells
    clones = rng.integers(1, n_nodes, n_matrices)  # K per matrix
    rows = np.arange(n_matrices)
    # ancestor[i, a, k]: node a is node k or an ancestor of it.
    ancestor = np.zeros((n_matrices, n_nodes, n_nodes), dtype=bool)
    ancestor[:, 0, 0] = True
    for k in range(1, n_nodes):
        parent = rng.integers(0, k, n_matrices)
        ancestor[:, :, k] = ancestor[rows, :, parent]
        ancestor[:, k, k] = True
    # Mutations to clones 1..K: the first K mutations one per clone, the rest uniform.
    owner = 1 + (rng.random((n_matrices, n_mutations)) * clones[:, None]).astype(np.int64)
    first = np.arange(n_mutations)[None, :] < clones[:, None]
    owner = np.where(first, np.arange(1, n_mutations + 1)[None, :], owner)
    # Cells to the root or a clone, with Dirichlet(1) weights over nodes 0..K.
    weights = rng.gamma(1.0, size=(n_matrices, n_nodes))
    weights[np.arange(n_nodes)[None, :] > clones[:, None]] = 0.0
    weights[rng.random(n_matrices) < 0.5, 0] = 0.0  # no normal cells
    cumulative = np.cumsum(weights, axis=1)
    draws = rng.random((n_matrices, n_cells)) * cumulative[:, -1:]
    home = np.minimum((cumulative[:, None, :] <= draws[..., None]).sum(-1), clones[:, None])
    index = rows[:, None, None]
    return ancestor[index, owner[:, None, :], home[:, :, None]].astype(np.int8)  # [N, n, m]


def linear_like(matrices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear matrices with the column sizes of ``matrices`` ``[N, n, m]``.

    Column j holds the first ``size_j`` cells of a random order of the cells,
    so the columns are nested whatever their sizes.
    """
    n_matrices, n_cells, _ = matrices.shape
    sizes = matrices.sum(1)  # [N, m]
    rank = rng.permuted(np.tile(np.arange(n_cells), (n_matrices, 1)), axis=1)  # cell -> position
    return (rank[:, :, None] < sizes[:, None, :]).astype(np.int8)


def add_noise(matrices: np.ndarray, alpha: float, beta: float, missing: float,
              rng: np.random.Generator) -> np.ndarray:
    """A' from A: false positives at rate ``alpha``, false negatives at ``beta``, then missing."""
    draw = rng.random(matrices.shape)
    flip = np.where(matrices == 1, draw < beta, draw < alpha)
    observed = (matrices ^ flip).astype(np.int8)
    if missing > 0:
        observed[rng.random(matrices.shape) < missing] = MISSING
    return observed


def shuffle(matrices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each matrix with its rows and its columns in a random order."""
    n_matrices, n_cells, n_mutations = matrices.shape
    rows = rng.permuted(np.tile(np.arange(n_cells), (n_matrices, 1)), axis=1)
    columns = rng.permuted(np.tile(np.arange(n_mutations), (n_matrices, 1)), axis=1)
    index = np.arange(n_matrices)[:, None, None]
    return matrices[index, rows[:, :, None], columns[:, None, :]]


def simulate(n_matrices: int, n_cells: int, n_mutations: int, alpha: float = 0.0,
             beta: float = 0.0, missing: float = 0.0, linear_fraction: float = 0.0,
             seed: int | np.random.Generator | None = None,
             prior: str = "coalescent") -> SimulatedMatrices:
    """Simulate ``n_matrices`` true and observed matrices with their exact labels.

    Args:
        n_cells, n_mutations: matrix shape (cells are rows).
        alpha, beta: false-positive and false-negative rates.
        missing: probability that an entry is missing (3).
        linear_fraction: the fraction of matrices made linear (see :func:`linear_like`);
            the others come straight from the tree prior and are mostly branching.
        seed: a non-negative int or a ``numpy.random.Generator``; the same seed gives the
            same batch.
        prior: ``"coalescent"`` (the paper's), ``"clonal"`` or ``"mixed"`` (see the module notes).

    Raises:
        ConfigError: a size, rate, seed or prior out of range; the message names it.
    """
    from phylovi.genotype.perfect_phylogeny import batch_is_conflict_free, batch_is_linear

    for name, value, low in (("n_matrices", n_matrices, 0), ("n_cells", n_cells, 2),
                             ("n_mutations", n_mutations, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ConfigError(f"{name} must be an integer of at least {low}, got {value!r}")
    for name, rate in (("alpha", alpha), ("beta", beta), ("missing", missing),
                       ("linear_fraction", linear_fraction)):
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
            raise ConfigError(f"{name} must be a number in [0, 1], got {rate!r}")
    if prior not in PRIORS:
        raise ConfigError(f"unknown prior {prior!r}; valid priors: {', '.join(PRIORS)}")
    if not (seed is None or isinstance(seed, np.random.Generator)
            or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0)):
        raise ConfigError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if prior == "coalescent":
        true = coalescent_matrices(n_matrices, n_cells, n_mutations, rng)
    elif prior == "clonal":
        true = clonal_matrices(n_matrices, n_cells, n_mutations, rng)
    else:
        true = coalescent_matrices(n_matrices, n_cells, n_mutations, rng)
        clonal = rng.random(n_matrices) < 0.5
        true[clonal] = clonal_matrices(int(clonal.sum()), n_cells, n_mutations, rng)
    make_linear = rng.random(n_matrices) < linear_fraction
    if make_linear.any():
        true[make_linear] = linear_like(true[make_linear], rng)
    true = shuffle(true, rng)
    observed = add_noise(true, alpha, beta, missing, rng)
    return SimulatedMatrices(true=true, observed=observed, linear=batch_is_linear(true),
                             conflict_free=batch_is_conflict_free(np.where(observed == 1, 1, 0)))
