"""Exact perfect-phylogeny, linear and branching tests on complete 0/1 matrices.

A genotype matrix ``X`` is ``[n_cells, n_mutations]`` with ``X[i, j] = 1`` when
cell ``i`` carries mutation ``j``. Every test here is the *rooted* one, with an
all-zero ancestor (infinite-sites model, no back mutation): ``X`` is a perfect
phylogeny, or conflict-free, iff no two columns break the three-gametes rule,
i.e. no pair (p, q) has rows with (1, 1), (1, 0) and (0, 1) all present.
Equivalently, the column supports are pairwise nested or disjoint.

Conventions, which the tests pin down:

- A column of all zeros (a mutation no cell carries) conflicts with nothing.
  It has no node in the Newick tree; its parent in
  :func:`mutation_tree_parents` is the root (-1).
- Identical columns are compatible; in the tree they are one node, labelled
  ``"m1|m2"``, or in the parent array a chain in column order.
- A conflict-free matrix is *linear* when its non-empty columns form one chain
  under inclusion (the mutation tree is a path), and *branching* otherwise
  (two non-empty columns are disjoint). So a matrix with 0 or 1 distinct
  non-empty columns is linear.

See ``shared/references/genotype.md`` §1 and §5 for the definitions; Gusfield,
"Efficient algorithms for inferring evolutionary trees", Networks 21:19 (1991)
for the O(nm) test.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from phylovi.errors import ConfigError, GenotypeMatrixError


def conflicting_pairs(X, limit: int | None = None) -> np.ndarray:
    """Column pairs that break the rooted three-gametes rule.

    Uses ``N11 = Xᵀ X`` and the column sums ``c``: ``n10 = c_p - n11`` and
    ``n01 = c_q - n11``; a pair conflicts when all three are positive.
    O(n m²) time, computed a block of columns at a time so that memory stays
    O(n m + m · block) plus the pairs themselves; it lists *every* conflict,
    which Gusfield's test (:func:`is_perfect_phylogeny`) does not.

    Args:
        X: 0/1 matrix ``[n_cells, n_mutations]``.
        limit: stop after this many pairs (the first in lexicographic order).

    Returns:
        int64 array ``[n_conflicts, 2]`` of column pairs ``(p, q)`` with
        ``p < q``, in lexicographic order.

    Raises:
        GenotypeMatrixError: ``X`` is not a 2-D 0/1 matrix (as for every test here).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)
                              or limit < 0):
        raise ConfigError(f"limit must be a non-negative integer or None, got {limit!r}")
    found = []
    total = 0
    for pairs in _conflict_blocks(X):
        found.append(pairs)
        total += len(pairs)
        if limit is not None and total >= limit:
            break
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return pairs if limit is None else pairs[:limit]


def n_conflicting_pairs(X) -> int:
    """How many column pairs :func:`conflicting_pairs` would list, without listing them."""
    return sum(len(pairs) for pairs in _conflict_blocks(X))


def _conflict_blocks(X, block: int = 512):
    """The conflicting pairs ``(p, q)``, ``p < q``, of each block of ``block`` columns p."""
    X = _binary(X).astype(np.float64)  # BLAS matmul; counts are exact below 2**53
    counts = np.rint(X.sum(axis=0)).astype(np.int64)
    for start in range(0, X.shape[1], block):
        stop = min(start + block, X.shape[1])
        n11 = np.rint(X[:, start:stop].T @ X).astype(np.int64)  # [block, m]
        conflict = ((n11 > 0) & (counts[start:stop, None] > n11) & (counts[None, :] > n11)
                    & (np.arange(start, stop)[:, None] < np.arange(X.shape[1])[None, :]))
        pairs = np.argwhere(conflict).astype(np.int64).reshape(-1, 2)
        pairs[:, 0] += start
        yield pairs


def is_perfect_phylogeny(X) -> bool:
    """Whether ``X`` admits a rooted perfect phylogeny (is conflict-free).

    Gusfield's test: with the non-empty columns sorted by decreasing count,
    ``X`` is conflict-free iff every column gets the same predecessor (the
    previous 1-column in the row, or the root) from all rows carrying it; that
    predecessor is then its parent in the mutation tree. O(n m) plus a sort of
    the column counts. Agrees with ``len(conflicting_pairs(X)) == 0``.

    Args:
        X: 0/1 matrix ``[n_cells, n_mutations]``.
    """
    return _gusfield(_binary(X)).conflict_free


def is_linear(X) -> bool:
    """Whether a conflict-free ``X`` is linear: its non-empty columns form one chain.

    A matrix with no non-empty column, or only identical ones, is linear (a path).

    Args:
        X: conflict-free 0/1 matrix ``[n_cells, n_mutations]``.

    Raises:
        GenotypeMatrixError: ``X`` has conflicts, so it is neither linear nor branching.
    """
    tree = _tree_of(X)  # sorted by decreasing count: a chain is a path 0 <- 1 <- 2 ...
    return bool(np.array_equal(tree.parent, np.arange(len(tree.parent)) - 1))


def linear_or_branching(X) -> str:
    """``"linear"`` or ``"branching"`` for a conflict-free ``X``; see :func:`is_linear`."""
    return "linear" if is_linear(X) else "branching"


def mutation_tree_parents(X) -> np.ndarray:
    """The rooted mutation tree of a conflict-free ``X`` as a parent array.

    Node ``j`` is mutation ``j``. Identical columns become a chain in column
    order (the first is the upper one), so that each cell's mutations are
    exactly the path from the root to one node; all-zero columns hang from
    the root.

    Args:
        X: conflict-free 0/1 matrix ``[n_cells, n_mutations]``.

    Returns:
        int64 array ``[n_mutations]``: the parent mutation of each mutation,
        or -1 for the root.

    Raises:
        GenotypeMatrixError: ``X`` has conflicts.
    """
    X = _binary(X)
    tree = _tree_of(X)
    parents = np.full(X.shape[1], -1, dtype=np.int64)
    parents[tree.columns] = np.where(tree.parent >= 0, tree.columns[tree.parent], -1)
    return parents


def perfect_phylogeny_tree(X, mutations: Sequence[str] | None = None,
                           cells: Sequence[str] | None = None) -> str:
    """The rooted mutation tree of a conflict-free ``X`` as a Newick string.

    Each internal node is a distinct non-empty column, labelled by the
    mutations on its incoming edge (identical columns joined as ``"m1|m2"``).
    Each cell is a leaf under the node of its deepest mutation; cells that
    carry no mutation hang from the root. Mutations that no cell carries do
    not appear. Children are listed cells first, in row order, then subtrees
    by their first mutation's column. Names with Newick punctuation or spaces
    are single-quoted. There are no branch lengths, and nodes may be unary.

    Args:
        X: conflict-free 0/1 matrix ``[n_cells, n_mutations]``.
        mutations: names of the columns; default ``mut1, mut2, ...``.
        cells: names of the rows; default ``cell1, cell2, ...``.

    Raises:
        GenotypeMatrixError: ``X`` has conflicts, a name list has the wrong length, or a
            mutation whose column is identical to another's has '|' in its name.
    """
    X = _binary(X)
    n_cells, n_mutations = X.shape
    mutations = _names(mutations, n_mutations, "mut", "mutation")
    cells = _names(cells, n_cells, "cell", "cell")
    tree = _tree_of(X)
    # A node is a set of identical columns: a column that hangs from one with
    # the same count (so the same support) joins that column's node.
    node_of: list[int] = []  # sorted column -> node
    members: list[list[int]] = []
    parent: list[int] = []
    counts = tree.counts.tolist()
    for j, count, above in zip(tree.columns.tolist(), counts, tree.parent.tolist()):
        if above >= 0 and counts[above] == count:
            node_of.append(node_of[above])
            members[node_of[above]].append(j)
        else:
            node_of.append(len(members))
            members.append([j])
            parent.append(node_of[above] if above >= 0 else -1)
    n_nodes = len(members)
    # Leaves and subtrees hanging from each node; the root is the last entry.
    leaves: list[list[str]] = [[] for _ in range(n_nodes + 1)]
    for cell, deepest in enumerate(tree.deepest.tolist()):
        leaves[node_of[deepest] if deepest >= 0 else -1].append(_quote(cells[cell]))
    subtrees: list[list[tuple[int, str]]] = [[] for _ in range(n_nodes + 1)]
    # A node comes after its parent, so a backward pass finishes every subtree first.
    for node in reversed(range(n_nodes)):
        names = [mutations[j] for j in members[node]]
        joined = "|".join(names)
        if len(names) > 1 and joined.count("|") >= len(names):
            clash = next(name for name in names if "|" in name)
            raise GenotypeMatrixError(
                f"mutation {clash!r} has a column identical to another's, and the tree joins "
                f"such names with '|', which this name holds: rename it")
        newick = _join(leaves[node], subtrees[node]) + _quote(joined)
        subtrees[parent[node]].append((members[node][0], newick))
    return _join(leaves[-1], subtrees[-1]) + ";"


def _join(leaves: list[str], subtrees: list[tuple[int, str]]) -> str:
    """Newick children: the leaves in row order, then subtrees by first mutation."""
    return "(" + ",".join(leaves + [text for _, text in sorted(subtrees)]) + ")"


class _Gusfield(NamedTuple):
    """Gusfield's test on the non-empty columns, sorted by decreasing count.

    ``columns`` are the original indices in that order (stable, so equal
    counts keep the column order) and ``counts`` their numbers of ones. Indices
    into ``columns``: ``parent[k]`` is the column above ``k`` (-1 for the
    root) and ``deepest[i]`` the last column of row ``i`` (-1 for none).
    ``parent`` is only meaningful when ``conflict_free``.
    """

    conflict_free: bool
    columns: np.ndarray
    counts: np.ndarray
    parent: np.ndarray
    deepest: np.ndarray


def _gusfield(X: np.ndarray) -> _Gusfield:
    n_cells = X.shape[0]
    counts = X.sum(axis=0)
    nonempty = np.flatnonzero(counts)
    if len(nonempty) == 0:
        empty = np.zeros(0, np.int64)
        return _Gusfield(True, empty, empty, empty, np.full(n_cells, -1, np.int64))
    # A strict superset has more ones, so it comes before its subsets; identical
    # columns keep their column order, and a later copy hangs from an earlier one.
    order = nonempty[np.argsort(-counts[nonempty], kind="stable")]
    Y = X[:, order]
    position = np.where(Y, np.arange(len(order)), -1)
    last = np.maximum.accumulate(position, axis=1)  # last 1-column up to each column
    previous = np.concatenate([np.full((n_cells, 1), -1), last[:, :-1]], axis=1)
    lowest = np.where(Y, previous, len(order)).min(axis=0)
    highest = np.where(Y, previous, -2).max(axis=0)
    return _Gusfield(bool(np.array_equal(lowest, highest)), order.astype(np.int64),
                     counts[order].astype(np.int64), lowest.astype(np.int64),
                     last[:, -1].astype(np.int64))


def _tree_of(X) -> _Gusfield:
    tree = _gusfield(_binary(X))
    if not tree.conflict_free:
        raise GenotypeMatrixError("the matrix has conflicting columns (it is not a perfect "
                         "phylogeny), so it has no mutation tree")
    return tree


def _binary(X) -> np.ndarray:
    """``X`` as a bool array, after checking it is a 2-D 0/1 matrix."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise GenotypeMatrixError("a genotype matrix is 2-D [n_cells, n_mutations], "
                                  f"got shape {X.shape}")
    if X.dtype == bool:
        return X
    binary = X.astype(bool)
    if (binary != X).any():
        i, j = np.argwhere(binary != X)[0]
        raise GenotypeMatrixError(f"the exact tests need a complete 0/1 matrix; entry [{i}, {j}] "
                         f"is {X[i, j].item()!r}")
    return binary


def _names(names: Sequence[str] | None, n: int, prefix: str, kind: str) -> list[str]:
    if names is None:
        return [f"{prefix}{k + 1}" for k in range(n)]
    names = [str(name) for name in names]
    if len(names) != n:
        raise GenotypeMatrixError(f"got {len(names)} {kind} names for {n} {kind}s")
    return names


def _quote(name: str) -> str:
    if not name or any(ch in name for ch in " (),:;[]'\t\n"):
        return "'" + name.replace("'", "''") + "'"
    return name


def _pair_counts(matrices: np.ndarray):
    """N11 ``[N, m, m]`` and column sums ``[N, m]`` of 0/1 matrices ``[N, n, m]``."""
    x = matrices.astype(np.int32)
    return np.einsum("bij,bik->bjk", x, x), x.sum(1)


def batch_is_conflict_free(matrices: np.ndarray) -> np.ndarray:
    """``[N]`` bool: no column pair of each complete 0/1 matrix ``[N, n, m]`` shows all three
    of (1,1), (1,0) and (0,1) (the pairwise test on XᵀX, vectorised over the batch)."""
    n11, counts = _pair_counts(matrices)
    n10 = counts[:, :, None] - n11
    n01 = counts[:, None, :] - n11
    return ~((n11 > 0) & (n10 > 0) & (n01 > 0)).any((1, 2))


def batch_is_linear(matrices: np.ndarray) -> np.ndarray:
    """``[N]`` bool for conflict-free matrices: no two non-empty columns are disjoint
    (in a conflict-free matrix every pair is nested or disjoint)."""
    n11, counts = _pair_counts(matrices)
    present = counts > 0
    disjoint = (n11 == 0) & present[:, :, None] & present[:, None, :]
    return ~disjoint.any((1, 2))
