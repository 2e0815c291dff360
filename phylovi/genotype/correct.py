"""Correcting a noisy genotype matrix to a conflict-free one: the classical baselines.

Under independent errors (a true 0 reads 1 with probability ``alpha``, a true
1 reads 0 with probability ``beta``, missing entries say nothing) the most
likely true matrix given A' is the conflict-free X maximising

    sum over observed entries of log P(A'_ij | X_ij),

the PhISCS objective. Two ways to find it:

- :func:`most_likely_correction`: exact, as a 0/1 integer program solved by
  HiGHS (through ``scipy.optimize.milp``). Per mutation pair (p, q), three
  indicator variables say which of the gametes 11, 10, 01 occur; a cell
  showing a gamete forces its indicator on, and at most two may be on. With
  ``linear=True`` a pair may not show both 10 and 01, so the columns nest:
  the most likely *linear* matrix (the LPPF problem Phyolin solves).
  The program has ``3 n m (m-1) / 2`` constraints, so it is for small and
  medium matrices; a time limit returns the best matrix found so far (or, if
  it found none, :func:`tree_decode`'s).
- :func:`likelihood_ratio_branching`: the classical branching call, from the
  two programs above: branching when the most likely conflict-free matrix
  beats the most likely linear one by more than a threshold. (The shape of
  the most likely matrix alone overfits noise: it called 69-83% of 10 x 10
  matrices branching where 56% were, and was 74-88% accurate, against 96-99%
  for a threshold of 5 nats.)
- :func:`tree_decode`: a fast greedy heuristic for any size, on any
  per-entry log-probabilities (the noise model's, or a network's). It grows
  the mutation tree one mutation at a time, largest expected column first,
  attaching each to the node that most raises the likelihood when every
  cell sits at its best node; each cell then carries the mutations on its
  node's root path. The result is conflict-free by construction. With
  ``linear=True`` each mutation goes below the previous one, so the tree is a
  path and the columns nest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from phylovi.errors import ConfigError, GenotypeMatrixError


DEFAULT_ALPHA, DEFAULT_BETA = 0.001, 0.1
"""Error rates assumed where a user gives none: typical of single-cell DNA calls."""



def entry_log_likelihoods(observed: np.ndarray, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``log P(A'_ij | X_ij = 1)`` and ``log P(A'_ij | X_ij = 0)``, each ``[n, m]`` (0 where missing).

    A rate of 0 gives ``-inf`` for the impossible reading.
    """
    observed = np.asarray(observed)
    with np.errstate(divide="ignore"):
        log = {name: math.log(x) if x > 0 else -math.inf
               for name, x in (("a", alpha), ("1-a", 1 - alpha), ("b", beta), ("1-b", 1 - beta))}
    one = np.where(observed == 1, log["1-a"], np.where(observed == 0, log["b"], 0.0))
    zero = np.where(observed == 1, log["a"], np.where(observed == 0, log["1-b"], 0.0))
    return one, zero


@dataclass
class Correction:
    """A conflict-free matrix fitted to a noisy one.

    Attributes:
        matrix: ``[n, m]`` int8, the conflict-free (or, if ``linear``, nested) matrix; None
            when there is none (zero error rates fix every entry, and they conflict).
        log_likelihood: its objective, the summed per-entry log-likelihoods (``-inf`` if none).
        optimal: True when proven the most likely (False after a time limit, or for the heuristic).
        seconds: wall time.
    """

    matrix: np.ndarray | None
    log_likelihood: float
    optimal: bool
    seconds: float


def score(matrix: np.ndarray, log_one: np.ndarray, log_zero: np.ndarray) -> float:
    """The summed per-entry log-likelihood of a 0/1 ``matrix``."""
    return float(np.where(np.asarray(matrix) == 1, log_one, log_zero).sum())


def most_likely_correction(observed: np.ndarray, alpha: float, beta: float, linear: bool = False,
                           time_limit: float | None = None) -> Correction:
    """The exact most likely conflict-free (or linear) matrix for ``observed`` ``[n, m]``.

    Args:
        observed: 0, 1 and 3 (missing).
        alpha, beta: false-positive and false-negative rates.
        linear: restrict to matrices whose columns are pairwise nested.
        time_limit: seconds for the solver; past it the best matrix found is returned,
            with ``optimal=False`` (:func:`tree_decode`'s if the solver found none).

    Raises:
        ConfigError: ``time_limit`` is negative or NaN.
    """
    log_one, log_zero = entry_log_likelihoods(observed, alpha, beta)
    return most_likely_under(log_one, log_zero, linear, time_limit)


def most_likely_under(log_one: np.ndarray, log_zero: np.ndarray, linear: bool = False,
                      time_limit: float | None = None) -> Correction:
    """The exact maximiser of ``sum(X * log_one + (1 - X) * log_zero)`` over conflict-free
    (or linear) 0/1 matrices X ``[n, m]``. Entries whose two values are ``-inf`` and finite
    are fixed to the finite one."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    if time_limit is not None and not time_limit >= 0:
        raise ConfigError(f"time_limit must be a non-negative number of seconds, got {time_limit}")
    started = time.perf_counter()
    m = log_one.shape[1]
    # Identical rows may share one corrected row: giving both the better of their two rows keeps
    # the set of rows conflict-free (or nested) and loses nothing. So the program runs on the
    # distinct rows, each weighted by how often it occurs.
    distinct, inverse, counts = np.unique(np.concatenate([log_one, log_zero], 1), axis=0,
                                          return_inverse=True, return_counts=True)
    distinct_one, distinct_zero = distinct[:, :m], distinct[:, m:]
    n = len(distinct)
    n_x = n * m
    fixed_one, fixed_zero = np.isneginf(distinct_zero), np.isneginf(distinct_one)
    if (fixed_one & fixed_zero).any():
        raise GenotypeMatrixError("an entry is impossible under both values")
    # Minimise the negative log-likelihood; an entry's cost is its log-ratio (the rest is constant).
    ratio = np.where(fixed_one | fixed_zero, 0.0, distinct_one - distinct_zero)
    cost_x = -(ratio * counts[:, None]).ravel()
    matrix, upper = _gamete_constraints(n, m, linear)
    n_variables = matrix.shape[1]
    lower_bound = np.zeros(n_variables)
    upper_bound = np.ones(n_variables)
    lower_bound[:n_x][fixed_one.ravel()] = 1
    upper_bound[:n_x][fixed_zero.ravel()] = 0
    options = {"disp": False}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    constraints = [LinearConstraint(matrix, -np.inf, upper)] if len(upper) else []
    result = milp(np.concatenate([cost_x, np.zeros(n_variables - n_x)]),
                  integrality=np.ones(n_variables), bounds=Bounds(lower_bound, upper_bound), constraints=constraints, options=options)
    if result.status == 2:   # infeasible: zero error rates fix every entry, and they conflict
        return Correction(None, -math.inf, optimal=True, seconds=time.perf_counter() - started)
    if result.x is None:
        # The time limit (or a solver failure) came before any feasible matrix: fall back on
        # the greedy decoding, marked not optimal, so that a caller (the baseline of
        # `phylovi genotype evaluate`) still gets an answer.
        fallback = tree_decode(log_one, log_zero, linear).matrix
        return Correction(fallback, score(fallback, log_one, log_zero), optimal=False,
                          seconds=time.perf_counter() - started)
    corrected = np.round(result.x[:n_x]).astype(np.int8).reshape(n, m)[inverse.reshape(-1)]
    return Correction(corrected, score(corrected, log_one, log_zero), optimal=result.status == 0,
                      seconds=time.perf_counter() - started)


def _gamete_constraints(n: int, m: int, linear: bool):
    """The program's constraint matrix and upper bounds (``A @ v <= upper``).

    Variables: the ``n * m`` entries X (cell-major), then, for each pair p < q, the
    indicators of its gametes 11, 10 and 01. A cell showing a gamete forces its indicator
    on; at most two indicators per pair may be on (conflict-free), or not both 10 and 01
    (linear: the columns nest).
    """
    from scipy import sparse

    p, q = np.triu_indices(m, 1)
    n_pairs, n_x = len(p), n * m
    b11 = n_x + 3 * np.arange(n_pairs)
    b10, b01 = b11 + 1, b11 + 2
    cells = np.arange(n)[:, None]
    x_p = (cells * m + p).ravel()    # [n * n_pairs], cell-major
    x_q = (cells * m + q).ravel()
    pair = np.tile(np.arange(n_pairs), n)
    rows, columns, values = [], [], []

    def add(block_rows, entries):
        for column, value in entries:
            rows.append(block_rows)
            columns.append(column)
            values.append(np.full(len(block_rows), value, dtype=float))

    k = len(x_p)
    r = np.arange(k)
    add(r, [(x_p, 1), (x_q, 1), (b11[pair], -1)])           # x_p + x_q - B11 <= 1
    add(r + k, [(x_p, 1), (x_q, -1), (b10[pair], -1)])      # x_p - x_q - B10 <= 0
    add(r + 2 * k, [(x_p, -1), (x_q, 1), (b01[pair], -1)])  # x_q - x_p - B01 <= 0
    pr = 3 * k + np.arange(n_pairs)
    if linear:
        add(pr, [(b10, 1), (b01, 1)])                       # B10 + B01 <= 1: nested
    else:
        add(pr, [(b11, 1), (b10, 1), (b01, 1)])             # at most two gametes
    upper = np.concatenate([np.ones(k), np.zeros(2 * k), np.full(n_pairs, 1.0 if linear else 2.0)])
    matrix = sparse.csr_array((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                              shape=(3 * k + n_pairs, n_x + 3 * n_pairs))
    return matrix, upper


@dataclass
class BranchingCall:
    """A classical linear-or-branching call on a noisy matrix.

    Attributes:
        branching: the call.
        log_likelihood_gap: best conflict-free minus best linear log-likelihood (>= 0 when
            both programs are optimal).
        optimal: both programs were solved to optimality.
        seconds: wall time of both.
    """

    branching: bool
    log_likelihood_gap: float
    optimal: bool
    seconds: float


def likelihood_ratio_branching(observed: np.ndarray, alpha: float, beta: float,
                               threshold: float = 5.0,
                               time_limit: float | None = None) -> BranchingCall:
    """Branching when the most likely conflict-free matrix explains ``observed`` better than the
    most likely linear one by more than ``threshold`` nats (exact integer programs for both)."""
    best = most_likely_correction(observed, alpha, beta, time_limit=time_limit)
    linear = most_likely_correction(observed, alpha, beta, linear=True, time_limit=time_limit)
    gap = best.log_likelihood - linear.log_likelihood
    return BranchingCall(gap > threshold, gap, best.optimal and linear.optimal,
                         best.seconds + linear.seconds)


def tree_decode(log_one: np.ndarray, log_zero: np.ndarray, linear: bool = False) -> Correction:
    """A conflict-free (with ``linear``, nested) matrix with high
    ``sum(X * log_one + (1 - X) * log_zero)``, greedily.

    See the module docstring. ``O(n m^2)`` time; never worse than the all-zero matrix.
    """
    started = time.perf_counter()
    log_one = np.maximum(np.asarray(log_one, dtype=float), -1e6)   # -inf would make every node tie
    log_zero = np.maximum(np.asarray(log_zero, dtype=float), -1e6)
    n, m = log_one.shape
    gain = log_one - log_zero                                      # for carrying a mutation
    order = np.argsort(-(gain > 0).sum(0) - 1e-9 * gain.sum(0), kind="stable")
    # node_score[i, v]: cell i's log-likelihood at node v over the mutations placed so far,
    # relative to carrying none of them; node 0 is the root.
    node_score = np.zeros((n, m + 1))
    parent = np.full(m + 1, -1)
    placed = []
    for column in order:
        best_now = node_score[:, : len(placed) + 1].max(1)
        # Attaching under node v: cells may move to the new node, scoring node_score[:, v] + gain.
        candidate = node_score[:, : len(placed) + 1] + gain[:, column:column + 1]
        totals = np.maximum(candidate, best_now[:, None]).sum(0)
        where = len(placed) if linear else int(np.argmax(totals))
        placed.append(column)
        node_score[:, len(placed)] = candidate[:, where]
        parent[len(placed)] = where
    # Each cell at its best node carries the mutations on that node's root path.
    path = np.zeros((m + 1, m), dtype=np.int8)
    for v in range(1, m + 1):
        path[v] = path[parent[v]]
        path[v, placed[v - 1]] = 1
    corrected = path[node_score.argmax(1)]
    return Correction(corrected, score(corrected, log_one, log_zero), optimal=False,
                      seconds=time.perf_counter() - started)
