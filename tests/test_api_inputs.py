"""The Python API refuses bad arguments with phylovi's own errors (one line, the value
named), and takes the ordinary containers a caller may hold instead of tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from phylovi.distributions import parse_prior
from phylovi import TaxonOrder, TopologyBatch, Tree
from phylovi.errors import (AlignmentError, ConfigError, ModelError, PhyloviError,
                            TreeFileError)
from phylovi.genotype import GenotypeMatrix, conflicting_pairs, load_model
from phylovi.io.alignment import parse_alignment, read_alignment
from phylovi.io.trees import read_tree, write_newick
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.simulate import simulate_alignment
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.marginal import Posterior, estimate, estimate_many
from phylovi.sbn import TreePosterior
from phylovi.vi.branch_lengths import BranchLengthVI, VISettings

ALIGNMENT = ">a\nACGTA\n>b\nACGTT\n>c\nACGAA\n>d\nTCGAA\n>e\nACCAA\n"
TREE = "((a:0.1,b:0.2):0.1,(c:0.1,d:0.1):0.1,e:0.2);"
ALIGNMENT_PATH = Path(__file__).resolve().parents[1] / "data" / "example.fasta"


@pytest.fixture(scope="module")
def problem():
    alignment = parse_alignment(ALIGNMENT)
    patterns = compress_patterns(alignment)
    tree = read_tree(TREE, taxa=alignment.taxa)
    return patterns, tree, TreeLikelihood(patterns, parse_model("JC", patterns))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_negative_or_non_finite_length_gives_minus_infinity_only_for_its_sample(problem, dtype):
    patterns, tree, _ = problem
    likelihood = TreeLikelihood(patterns, parse_model("JC", patterns, dtype=dtype), dtype=dtype)
    lengths = torch.as_tensor(tree.branch_lengths, dtype=dtype).repeat(5, 1)
    lengths[1, 0], lengths[2, 3], lengths[3, 6] = -0.1, float("nan"), float("inf")
    values = likelihood.log_likelihood(tree.topology, lengths)
    assert values[1:4].tolist() == [-float("inf")] * 3
    assert values[0] == values[4] and bool(torch.isfinite(values[0]))


def test_lengths_as_a_list_or_numpy_array_equal_a_tensor(problem):
    _, tree, likelihood = problem
    lengths = tree.branch_lengths
    expected = likelihood.log_likelihood(tree.topology, torch.as_tensor(lengths))
    assert likelihood.log_likelihood(tree.topology, np.asarray(lengths)) == expected
    assert likelihood.log_likelihood(tree.topology, list(lengths)) == expected


def test_no_samples_give_empty_results(problem):
    patterns, tree, likelihood = problem
    empty = torch.ones(0, tree.topology.n_edges, dtype=torch.float64)
    assert likelihood.log_likelihood(tree.topology, empty).shape == (0,)
    assert likelihood.site_log_likelihoods(tree.topology, empty).shape == (0, len(patterns.weights))


@pytest.mark.parametrize("call,error,fragment", [
    (lambda p: parse_model(None), ModelError, "None"),
    (lambda p: parse_prior("exp(10)", -1), ConfigError, "-1"),
    (lambda p: TreeLikelihood(p[0], parse_model("JC", p[0]), dtype=torch.float16), ConfigError,
     "float16"),
    (lambda p: Posterior(p[2], p[1].topology, parse_prior("exp(10)", 3)), ConfigError,
     "7 branches"),
    (lambda p: VISettings(n_particles=0), ConfigError, "n_particles"),
    (lambda p: VISettings(lr=float("nan")), ConfigError, "lr"),
    # an unknown bound or estimator once failed later, reported as a diverged run
    (lambda p: VISettings(bound="xx"), ConfigError, "bound must be one of elbo, iwae"),
    (lambda p: VISettings(estimator="xx"), ConfigError, "estimator must be one of"),
    (lambda p: VISettings(lr="0.1"), ConfigError, "lr must be a number"),
    # a Tree where its topology is meant once raised "'Tree' object is not iterable"
    (lambda p: p[2].log_likelihood(p[1], torch.as_tensor(p[1].branch_lengths)), ConfigError,
     "its .topology"),
    # a tree read without lengths once simulated all-'A' sequences
    (lambda p: simulate_alignment(read_tree("((a,b),c,(d,e));"), parse_model("JC"), 10),
     ConfigError, "7 edges have no branch length"),
    (lambda p: simulate_alignment(p[1], parse_model("JC"), -1), ConfigError, "-1"),
    # once NaN in float64 and -inf in float32
    (lambda p: parse_model("GTR{1e300,1,1,1,1}"), ModelError, "at most 1e\\+10"),
    (lambda p: parse_model("HKY{1e20}"), ModelError, "kappa"),
    # arguments of the wrong type, which once failed deep inside with TypeError or
    # AttributeError (or, for the methods string, as the unknown method 'g')
    (lambda p: read_alignment(None), ConfigError, "the alignment file must be a str or path"),
    (lambda p: read_alignment(ALIGNMENT_PATH, format=3), AlignmentError, "unknown alignment format 3"),
    (lambda p: read_tree(None), ConfigError, "the tree file must be a str or path, got None"),
    (lambda p: compress_patterns("a.fasta"), ConfigError, "must be an Alignment, got str"),
    (lambda p: TreeLikelihood(p[0], "JC"), ConfigError, "model \\(parse_model\\) must be a Model"),
    (lambda p: TreeLikelihood(None, parse_model("JC")), ConfigError, "patterns"),
    (lambda p: p[2].log_likelihood(p[1].topology, None), ConfigError, "branch lengths must be numbers"),
    (lambda p: Tree(p[1].topology, "abc"), TreeFileError, "branch lengths must be numbers"),
    (lambda p: Tree(None, [0.1]), ConfigError, "topology must be a Topology, got None"),
    (lambda p: TaxonOrder(None), ConfigError, "list of strings, got None"),
    (lambda p: TaxonOrder([1, 2, 3]), ConfigError, "a taxon name must be a string, got 1"),
    (lambda p: TopologyBatch(None), ConfigError, "list of topologies, got NoneType"),
    (lambda p: TopologyBatch([p[1]]), ConfigError, "holds Topology objects .* got Tree"),
    (lambda p: Posterior(p[2], None), ConfigError, "topology .* got None"),
    (lambda p: Posterior(p[2], p[1].topology, prior="exp(10)"), ConfigError, "prior .* got str"),
    (lambda p: estimate(None), ConfigError, "a Posterior or a list of them, got NoneType"),
    (lambda p: estimate_many(Posterior(p[2], p[1].topology), None), ConfigError,
     "list of names, got None"),
    (lambda p: VISettings(family=5), ConfigError, "family must be one of gamma"),
    (lambda p: BranchLengthVI(p[2], p[1].topology, None), ConfigError, "prior .* got None"),
    (lambda p: simulate_alignment(p[1], "JC", 10), ConfigError, "must be a Model, got str"),
    (lambda p: simulate_alignment(p[1], parse_model("JC"), 10, generator=1), ConfigError,
     "generator must be a Generator"),
    (lambda p: write_newick("out.nwk", p[1]), ConfigError, "a list of trees, got one Tree"),
    (lambda p: GenotypeMatrix.read(None), ConfigError, "the genotype file must be a str or path"),
    (lambda p: load_model(None), ConfigError, "the model .* must be a str or path, got None"),
    (lambda p: conflicting_pairs(np.eye(3, dtype=int), limit="a"), ConfigError,
     "limit must be a non-negative integer or None, got 'a'"),
])
def test_bad_arguments_raise_the_package_errors(problem, call, error, fragment):
    with pytest.raises(error, match=fragment) as caught:
        call(problem)
    assert "\n" not in str(caught.value)


def test_estimate_many_takes_one_method_as_a_string(problem):
    _, tree, likelihood = problem
    results = estimate_many(Posterior(likelihood, tree.topology), "laplus-gamma", seed=1)
    assert list(results) == ["laplus-gamma"]  # was "unknown method 'l'"


def test_tree_posterior_queries_refuse_non_integers_and_non_splits():
    posterior = TreePosterior.fit([read_tree("((a,b),c,(d,e));").topology,
                                   read_tree("((a,c),b,(d,e));").topology], method="srf")
    for call in (lambda: posterior.top(2.5), lambda: posterior.sample(2.5),
                 lambda: posterior.split_names(2**40), lambda: posterior.split_names(0),
                 lambda: posterior.clade_names(-1), lambda: posterior.clade_names(2**5),
                 lambda: posterior.clade_names("a"), lambda: posterior.probability(""),
                 lambda: posterior.log_prob(None), lambda: posterior.save(None)):
        with pytest.raises(PhyloviError):
            call()
    assert posterior.top(np.int64(1))[0][1] == pytest.approx(0.5)
    assert sorted(map(len, posterior.split_names(np.int64(3)))) == [2, 3]


def test_every_name_docs_api_md_imports_from_phylovi_is_there():
    """docs/api.md says its names are importable from ``phylovi``: the error classes,
    ``estimate`` and the others once were not."""
    import re
    from pathlib import Path

    import phylovi

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    documented = {name for names in re.findall(r"from phylovi import ([\w, ]+)", text)
                  for name in re.split(r",\s*", names.strip())}
    documented |= {"AlignmentError", "TreeFileError", "TaxonMismatchError", "ModelError",
                   "ConfigError", "InferenceError", "estimate", "estimate_many", "METHODS"}
    assert documented <= set(phylovi.__all__)
    for name in phylovi.__all__[1:]:
        assert getattr(phylovi, name) is not None
    assert issubclass(phylovi.AlignmentError, phylovi.PhyloviError)


def test_float32_keeps_pinv_near_one_in_float64(problem):
    # float32's rounding of pinv = 0.999999 once put 1 - pinv off by 6% (9 nats on 20 taxa)
    patterns, tree, _ = problem
    values = [float(TreeLikelihood(patterns, parse_model("JC+I{0.999999}", patterns),
                                   dtype=dtype).log_likelihood(
        tree.topology, torch.as_tensor(tree.branch_lengths, dtype=dtype)))
        for dtype in (torch.float64, torch.float32)]
    assert values[1] == pytest.approx(values[0], abs=1e-3)


def test_a_huge_branch_gives_the_same_value_with_model_gradients(problem):
    # matrix_exp (the path taken when a parameter needs a gradient) was 130 nats off at a
    # branch of 1e12, and gave a positive log-likelihood at 1e17
    patterns, tree, _ = problem
    lengths = torch.as_tensor(tree.branch_lengths).clone()
    lengths[-1] = 1e17
    values = []
    for grad in (False, True):
        model = parse_model("GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}", patterns)
        model.parameters["frequencies"].requires_grad_(grad)
        values.append(float(TreeLikelihood(patterns, model).log_likelihood(
            tree.topology, lengths).detach()))
    assert values[1] == pytest.approx(values[0], rel=1e-10) and values[0] < 0
