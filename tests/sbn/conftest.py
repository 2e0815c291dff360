"""Small-tree helpers for the SBN tests: exhaustive enumeration and random topologies."""

from __future__ import annotations

import random

import pytest

from phylovi.trees.taxa import TaxonOrder
from phylovi.trees.topology import RootedTopology, Topology


def _rooted_shapes(labels):
    """Every rooted binary tree on ``labels`` as nested pairs, by stepwise insertion."""
    if len(labels) == 1:
        yield labels[0]
        return
    for tree in _rooted_shapes(labels[:-1]):
        yield from _insert(tree, labels[-1])


def _insert(tree, label):
    yield (tree, label)
    if isinstance(tree, tuple):
        left, right = tree
        for sub in _insert(left, label):
            yield (sub, right)
        for sub in _insert(right, label):
            yield (left, sub)


def all_topologies(n: int) -> list[Topology]:
    """All (2n-5)!! unrooted topologies on taxa t0..t{n-1}."""
    taxa = TaxonOrder([f"t{i}" for i in range(n)])
    return [Topology.from_nested(taxa, (0, shape)) for shape in _rooted_shapes(list(range(1, n)))]


def all_rooted_topologies(n: int) -> list[RootedTopology]:
    """All (2n-3)!! rooted topologies on taxa t0..t{n-1}."""
    taxa = TaxonOrder([f"t{i}" for i in range(n)])
    return [RootedTopology.from_nested(taxa, shape) for shape in _rooted_shapes(list(range(n)))]


def random_topology(taxa: TaxonOrder, rng: random.Random) -> Topology:
    """A random topology: random splits of a shuffled taxon list."""

    def build(labels):
        if len(labels) == 1:
            return labels[0]
        cut = rng.randint(1, len(labels) - 1)
        return (build(labels[:cut]), build(labels[cut:]))

    labels = list(range(len(taxa)))
    rng.shuffle(labels)
    return Topology.from_nested(taxa, build(labels))


@pytest.fixture
def enumerate_topologies():
    return all_topologies


@pytest.fixture
def enumerate_rooted_topologies():
    return all_rooted_topologies


@pytest.fixture
def random_topologies():
    def make(n_taxa: int, count: int, seed: int = 0) -> list[Topology]:
        taxa = TaxonOrder([f"t{i}" for i in range(n_taxa)])
        rng = random.Random(seed)
        return [random_topology(taxa, rng) for _ in range(count)]

    return make
