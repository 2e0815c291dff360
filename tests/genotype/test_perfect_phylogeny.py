"""Exact perfect-phylogeny, linear and tree tests against set-based definitions.

The references here use Python sets of cells (each column's support) and
never the module's code: a matrix is a perfect phylogeny iff the supports are
pairwise nested or disjoint (a laminar family, i.e. the Hasse diagram is a
rooted tree), and linear iff the non-empty supports form one chain.
"""

from __future__ import annotations

from itertools import combinations, product

import dendropy
import numpy as np
import pytest

from phylovi.errors import GenotypeMatrixError
from phylovi.genotype import (
    conflicting_pairs,
    is_linear,
    is_perfect_phylogeny,
    linear_or_branching,
    mutation_tree_parents,
    n_conflicting_pairs,
    perfect_phylogeny_tree,
)

# Names with Newick punctuation, to check the quoting ("|" is the merge separator).
ODD_MUTATIONS = ["m_1", "a b", "x'y", "c(1)", "d:2", "e,3", "f;4", "g[5]"]
ODD_CELLS = ["c_1", "c 2", "c'3", "c(4)", "c:5", "c,6", "c;7", "c[8]"]


def supports(X) -> list[frozenset]:
    return [frozenset(i for i, row in enumerate(X.tolist()) if row[j]) for j in range(X.shape[1])]


def reference_conflicts(X) -> list[tuple[int, int]]:
    """Column pairs whose supports are neither nested nor disjoint."""
    s = supports(X)
    return [(p, q) for p, q in combinations(range(len(s)), 2)
            if s[p] & s[q] and not s[p] <= s[q] and not s[q] <= s[p]]


def reference_is_chain(X) -> bool:
    nonempty = [s for s in supports(X) if s]
    return all(a <= b or b <= a for a, b in combinations(nonempty, 2))


def check_parents(X, parents) -> None:
    """Every cell's mutations are the root path of one node of an acyclic parent array."""
    n_mutations = X.shape[1]
    assert parents.shape == (n_mutations,)

    def path(j):
        seen = set()
        while j != -1:
            assert j not in seen, "the parent array has a cycle"
            seen.add(j)
            j = int(parents[j])
        return seen

    for row in X.tolist():
        carried = {j for j in range(n_mutations) if row[j]}
        assert not carried or any(path(j) == carried for j in carried), (row, parents)
    for j, support in enumerate(supports(X)):
        if not support:
            assert parents[j] == -1


def check_newick(X, newick, mutations, cells) -> None:
    """Each cell's root path in the Newick tree carries exactly the mutations of its row."""
    tree = dendropy.Tree.get(data=newick, schema="newick", preserve_underscores=True,
                             suppress_internal_node_taxa=True, rooting="force-rooted")
    assert tree.seed_node.label is None
    paths = {}
    for leaf in tree.leaf_node_iter():
        carried = set()
        node = leaf.parent_node
        while node is not None:
            if node.label is not None:
                carried.update(node.label.split("|"))
            node = node.parent_node
        assert leaf.taxon.label not in paths
        paths[leaf.taxon.label] = carried
    rows = X.tolist()
    assert paths == {cells[i]: {mutations[j] for j in range(X.shape[1]) if rows[i][j]}
                     for i in range(X.shape[0])}
    # One node per distinct non-empty column, labelled by all its copies.
    groups: dict[frozenset, list[str]] = {}
    for j, support in enumerate(supports(X)):
        if support:
            groups.setdefault(support, []).append(mutations[j])
    labels = [node.label for node in tree.preorder_internal_node_iter(exclude_seed_node=True)]
    assert sorted(labels) == sorted("|".join(names) for names in groups.values())


def check_against_sets(X, mutations=None, cells=None) -> bool:
    """Every function of the module on one matrix; returns whether it is conflict-free."""
    expected = reference_conflicts(X)
    free = not expected
    assert is_perfect_phylogeny(X) == free, X
    assert conflicting_pairs(X).tolist() == [list(pair) for pair in expected], X
    if not free:
        with pytest.raises(GenotypeMatrixError):
            is_linear(X)
        return False
    assert is_linear(X) == reference_is_chain(X), X
    assert linear_or_branching(X) == ("linear" if reference_is_chain(X) else "branching")
    check_parents(X, mutation_tree_parents(X))
    mutations = mutations or [f"mut{j + 1}" for j in range(X.shape[1])]
    cells = cells or [f"cell{i + 1}" for i in range(X.shape[0])]
    check_newick(X, perfect_phylogeny_tree(X, mutations, cells), mutations, cells)
    return True


def all_matrices(n: int, m: int) -> np.ndarray:
    """Every n x m 0/1 matrix, ``[2**(n m), n, m]``."""
    codes = np.arange(2 ** (n * m))
    return ((codes[:, None] >> np.arange(n * m)) & 1).astype(np.int8).reshape(-1, n, m)


@pytest.mark.parametrize("n, m", list(product(range(1, 5), range(1, 5))))
def test_every_small_matrix_matches_the_laminar_definition(n, m):
    for X in all_matrices(n, m):
        expected = not reference_conflicts(X)
        assert is_perfect_phylogeny(X) == expected, X
        if expected:
            assert is_linear(X) == reference_is_chain(X), X


@pytest.mark.parametrize("n, m", [(3, 3), (3, 4), (4, 3)])
def test_every_small_matrix_agrees_in_every_function(n, m):
    # Conflict pairs, parents and Newick on every matrix of these shapes.
    for X in all_matrices(n, m):
        check_against_sets(X)


def tree_matrix(rng, n: int, m: int, linear: bool) -> np.ndarray:
    """Cells placed on a random rooted mutation tree: conflict-free by construction."""
    parent = [j - 1 if linear else int(rng.integers(-1, j)) for j in range(m)]
    X = np.zeros((n, m), dtype=np.int8)
    for i in range(n):
        node = int(rng.integers(-1, m))
        while node != -1:
            X[i, node] = 1
            node = parent[node]
    return X[:, rng.permutation(m)]


def test_random_8x8_matrices_match_the_sets():
    rng = np.random.default_rng(20240611)
    densities = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98]
    outcomes = {"conflict": 0, "linear": 0, "branching": 0}
    for k in range(2200):
        X = (rng.random((8, 8)) < densities[k % len(densities)]).astype(np.int8)
        names = (ODD_MUTATIONS, ODD_CELLS) if k % 2 else (None, None)
        if not check_against_sets(X, *names):
            outcomes["conflict"] += 1
        else:
            outcomes[linear_or_branching(X)] += 1
    assert min(outcomes.values()) >= 100, outcomes  # every class is well exercised


def test_random_tree_matrices_give_back_their_tree():
    rng = np.random.default_rng(7)
    n_linear = 0
    for k in range(2000):
        X = tree_matrix(rng, 8, 8, linear=k % 4 == 0)
        names = (ODD_MUTATIONS, ODD_CELLS) if k % 2 else (None, None)
        assert check_against_sets(X, *names)
        n_linear += is_linear(X)
    assert 500 <= n_linear < 2000


def test_larger_noisy_tree_matrices_agree_with_the_pairwise_test():
    rng = np.random.default_rng(3)
    for k in range(60):
        X = tree_matrix(rng, 60, 25, linear=k % 3 == 0)
        flips = rng.random(X.shape) < [0.0, 0.002, 0.01, 0.05][k % 4]
        X = X ^ flips
        assert is_perfect_phylogeny(X) == (len(conflicting_pairs(X)) == 0)
        assert conflicting_pairs(X).tolist() == [list(pair) for pair in reference_conflicts(X)]


def test_conflicting_pairs_across_column_blocks_match_the_whole_table():
    # pairs are found a block of 512 columns at a time (memory O(m) per block, not O(m^2))
    rng = np.random.default_rng(5)
    X = (rng.random((12, 1100)) < 0.3).astype(np.int8)
    n11 = X.T.astype(np.int64) @ X
    counts = np.diag(n11)
    whole = np.argwhere(np.triu((n11 > 0) & (counts[:, None] > n11) & (counts[None, :] > n11), 1))
    assert conflicting_pairs(X).tolist() == whole.tolist()
    assert n_conflicting_pairs(X) == len(whole) > 100_000
    assert conflicting_pairs(X, limit=7).tolist() == whole[:7].tolist()


def test_conflicting_pairs_names_the_three_gamete_pair():
    X = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    assert conflicting_pairs(X).tolist() == [[0, 1]]
    assert conflicting_pairs(X).shape == (1, 2)
    assert conflicting_pairs(np.zeros((3, 0), dtype=int)).shape == (0, 2)
    assert not is_perfect_phylogeny(X)


def test_tree_newick_layout_is_pinned():
    X = np.array([[1, 1, 0, 0, 0],
                  [1, 0, 1, 0, 0],
                  [0, 0, 0, 0, 0],
                  [1, 1, 0, 0, 0],
                  [0, 0, 0, 1, 0]])
    assert perfect_phylogeny_tree(X) == "(cell3,((cell1,cell4)mut2,(cell2)mut3)mut1,(cell5)mut4);"
    assert mutation_tree_parents(X).tolist() == [-1, 0, 0, -1, -1]
    assert linear_or_branching(X) == "branching"


def test_identical_columns_merge_into_one_node_and_chain_in_the_parents():
    X = np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    assert perfect_phylogeny_tree(X, ["a", "b", "c"]) == "(cell3,(cell2,(cell1)c)a|b);"
    assert perfect_phylogeny_tree(X, ["a", "b", "c"]).count("|") == 1
    assert mutation_tree_parents(X).tolist() == [-1, 0, 1]
    assert is_linear(X)


def test_zero_or_one_distinct_column_is_linear():
    assert is_linear(np.zeros((4, 3), dtype=int))
    assert is_linear(np.array([[1, 1], [0, 0], [1, 1]]))
    assert perfect_phylogeny_tree(np.zeros((2, 2), dtype=int)) == "(cell1,cell2);"


def test_long_path_needs_no_recursion():
    n = 1500  # deeper than Python's default recursion limit
    X = np.tril(np.ones((n, n), dtype=np.int8))  # cell i carries mutations 0..i
    assert is_perfect_phylogeny(X) and is_linear(X)
    assert mutation_tree_parents(X).tolist() == list(range(-1, n - 1))
    assert perfect_phylogeny_tree(X).count("(") == n + 1


def test_conflicting_matrix_has_no_tree():
    X = np.array([[1, 1], [1, 0], [0, 1]])
    for function in (is_linear, linear_or_branching, mutation_tree_parents, perfect_phylogeny_tree):
        with pytest.raises(GenotypeMatrixError, match="conflicting") as caught:
            function(X)
        assert isinstance(caught.value, ValueError)  # older `except ValueError` still works


@pytest.mark.parametrize("X", [np.array([1, 0]), np.zeros((2, 2, 2)), np.array([[0, 3]]),
                               np.array([[0.5, 1]])])
def test_bad_matrices_are_refused(X):
    for function in (conflicting_pairs, is_perfect_phylogeny, is_linear, perfect_phylogeny_tree):
        with pytest.raises(GenotypeMatrixError):
            function(X)


def test_a_wrong_number_of_names_is_refused():
    X = np.array([[1, 0], [0, 0]])
    with pytest.raises(GenotypeMatrixError, match="got 1 mutation names for 2 mutations"):
        perfect_phylogeny_tree(X, ["m1"], ["a", "b"])
    with pytest.raises(GenotypeMatrixError, match="got 3 cell names for 2 cells"):
        perfect_phylogeny_tree(X, ["m1", "m2"], ["a", "b", "c"])


def test_bool_and_int_inputs_agree():
    X = np.array([[1, 0, 1], [1, 1, 0]])
    assert perfect_phylogeny_tree(X) == perfect_phylogeny_tree(X.astype(bool))
    assert perfect_phylogeny_tree(X.tolist()) == perfect_phylogeny_tree(X)


def test_a_bar_in_a_joined_mutation_name_is_refused():
    # identical columns are joined as "m1|m2": names "a|b" and "c" would read as three
    X = np.array([[1, 1, 0], [0, 0, 1]])
    assert perfect_phylogeny_tree(X, ["a", "b", "c|d"]) == "((cell1)a|b,(cell2)c|d);"
    with pytest.raises(GenotypeMatrixError, match="mutation 'a|b' has a column identical"):
        perfect_phylogeny_tree(X, ["a|b", "c", "d"])
