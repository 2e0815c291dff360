"""Simulation and ML estimation recover each other's parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phylovi.io.alignment import Alignment, parse_alignment
from phylovi.io.trees import read_tree
from phylovi.likelihood import TreeLikelihood, compress_patterns, parse_model
from phylovi.likelihood.optimize import optimize_model
from phylovi.likelihood.patterns import empirical_frequencies
from phylovi.likelihood.simulate import simulate_alignment
from phylovi.trees import TaxonOrder, Topology, Tree


def caterpillar_tree(n_taxa: int, seed: int) -> Tree:
    taxa = TaxonOrder([f"t{i}" for i in range(n_taxa)])
    nested = (0, 1)
    for i in range(2, n_taxa):
        nested = (nested, i)
    topology = Topology.from_nested(taxa, nested)
    rng = np.random.default_rng(seed)
    return Tree(topology, rng.uniform(0.05, 0.3, topology.n_edges))


def simulate(tree, model_string, n_sites, seed):
    generator = torch.Generator().manual_seed(seed)
    sequences = simulate_alignment(tree, parse_model(model_string), n_sites, generator)
    return compress_patterns(Alignment(tree.taxa, tuple(sequences), None))


def test_simulated_frequencies_are_the_stationary_ones():
    patterns = simulate(caterpillar_tree(8, 1), "F81+F{0.1,0.2,0.3,0.4}", 20000, seed=2)
    np.testing.assert_allclose(empirical_frequencies(patterns), [0.1, 0.2, 0.3, 0.4], atol=0.01)


def test_simulation_is_reproducible_from_its_generator():
    tree = caterpillar_tree(6, 3)
    one = simulate(tree, "HKY{2}+G4{0.5}+I{0.2}", 300, seed=4)
    two = simulate(tree, "HKY{2}+G4{0.5}+I{0.2}", 300, seed=4)
    np.testing.assert_array_equal(one.codes, two.codes)
    np.testing.assert_array_equal(one.weights, two.weights)


def test_maximum_likelihood_recovers_simulated_parameters():
    tree = caterpillar_tree(12, 5)
    patterns = simulate(tree, "HKY{4}+F{0.3,0.2,0.2,0.3}+G4{0.5}", 5000, seed=6)
    model = parse_model("HKY+F{0.3,0.2,0.2,0.3}+G4", patterns)
    assert set(model.free) == {"kappa", "shape"}
    optimize_model(TreeLikelihood(patterns, model), tree)
    assert float(model.parameters["kappa"][0]) == pytest.approx(4.0, rel=0.15)
    assert float(model.parameters["shape"]) == pytest.approx(0.5, rel=0.2)


def test_maximum_likelihood_estimates_frequencies_with_fo():
    tree = caterpillar_tree(10, 7)
    patterns = simulate(tree, "F81+F{0.1,0.2,0.3,0.4}", 4000, seed=8)
    model = parse_model("F81+FO", patterns)
    assert model.free == ("frequencies",)
    optimize_model(TreeLikelihood(patterns, model), tree)
    estimate = model.parameters["frequencies"].numpy()
    assert estimate.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(estimate, [0.1, 0.2, 0.3, 0.4], atol=0.015)


# Two 40-site alignments phylovi simulated on this tree (GTR{0.5,3,0.2,1.7,6}+F{0.35,0.15,
# 0.2,0.3}+G4{0.3}+I{0.3}, seeds 3 and 6) on which the optimiser once ended far below
# IQ-TREE 2.0.7's maximum (-s ALN -te TREE -blfix -keep-ident -m MODEL, every branch
# fixed): it drove the shape to 6e-5, where the Gamma rates are +I's, or the
# exchangeabilities to 2e7 and a NaN rate matrix.
SIX_TAXA = "((a:0.1,b:0.25):0.05,(c:0.3,d:0.02):0.15,(e:0.4,f:0.2):0.08);"
SEED_3 = """>a
AAAAAGATTAAAGTTAGGAATATTTAACTGGTGAATTCAA
>b
AAAAAGATTAGAGTTAGGAATAGTTAATTGATGAATTCAA
>c
AAAAAGATTCAAGTTAGGAATAACTAATTGGAGATTTCAA
>d
AAAAAGATTTAAGTTAGGAATAGTTAATTGGAGAATTCAA
>e
AAAAAGATTAGAGTTAGCAATAGTTAATTGGTGATTTCAA
>f
AAAAAGATTGAAGTTAGCAATAATTAACTGAGGAGTTCAA
"""
SEED_6 = """>a
ATTAGATCGAACCGTGTATGATCGGTTCTGGATATGCTGA
>b
ATTAAATCGAACTGCGTATGATCGGTGTTGGATATTCTGA
>c
GTCAAAGCGAACCGTGGGTGATCGGTTTTGGATACTCTGA
>d
GTTAGAGCGAACCGTGCATGATCGGTCTTGGATACTCTGA
>e
ATAAGATCGAACTGTGCATGATCGGTGGTGGATAATCTGA
>f
ATTAGATCGAACTGTGTATGATCGGTTATGGATACCCTGA
"""


@pytest.mark.parametrize("text,model_string,iqtree", [
    (SEED_3, "JC+I+G", -133.7270),
    (SEED_6, "GTR+F+G4", -140.4189),
])
def test_maximum_likelihood_reaches_iqtree_where_the_shape_once_ran_to_zero(
        text, model_string, iqtree):
    alignment = parse_alignment(text)
    patterns = compress_patterns(alignment)
    tree = read_tree(SIX_TAXA, taxa=alignment.taxa)
    model = parse_model(model_string, patterns)
    value = optimize_model(TreeLikelihood(patterns, model), tree)
    assert value >= iqtree - 1e-3
    assert 0.02 <= float(model.parameters["shape"]) <= 1000  # IQ-TREE's range
