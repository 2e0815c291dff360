"""The likelihood kernel against independent numbers: IQ-TREE/BEAGLE references,
brute-force enumeration, identities and finite differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from phylovi.io.alignment import read_alignment
from phylovi.io.trees import read_tree
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees import TaxonOrder, Topology, TopologyBatch, Tree

GTRG4 = "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}"
# ../shared/references/likelihood.md: IQ-TREE 2.0.7, BEAGLE 3.1.2, torchtree 1.0.2 and numpy agree.
REFERENCES = [
    ("sim27", "JC", -23677.341408, 1733.9576),
    ("sim27", GTRG4, -21424.994545, 2260.2650),
    ("sim100", "JC", -390646.913951, -74426.0366),
    ("sim100", GTRG4, -339663.461418, -7040.3070),
]


@pytest.fixture(params=["default", "torch"])
def kernel(request, monkeypatch):
    """Run a test on the default CPU kernel (fused C) and on the torch kernel (the GPU path)."""
    if request.param == "torch":
        monkeypatch.setenv("PHYLOVI_KERNEL", "torch")
    return request.param


def load(shared, name):
    alignment = read_alignment(shared(f"sim/{name}.fasta"))
    patterns = compress_patterns(alignment)
    tree = read_tree(shared(f"sim/{name}.nwk"), taxa=alignment.taxa)
    return patterns, tree


@pytest.mark.parametrize("name,model,expected,gradient_sum", REFERENCES)
def test_log_likelihood_matches_references_float64(shared, kernel, name, model, expected,
                                                   gradient_sum):
    patterns, tree = load(shared, name)
    likelihood = TreeLikelihood(patterns, parse_model(model, patterns))
    lengths = torch.tensor(tree.branch_lengths, requires_grad=True)
    value = likelihood.log_likelihood(tree.topology, lengths)
    value.backward()
    assert abs(value.item() - expected) <= 1e-6 * abs(expected)
    assert abs(value.item() - expected) < 5e-6  # the references' own precision
    assert lengths.grad.sum().item() == pytest.approx(gradient_sum, rel=1e-4)


@pytest.mark.parametrize("name,model,expected,_", REFERENCES)
def test_log_likelihood_matches_references_float32(shared, kernel, name, model, expected, _):
    patterns, tree = load(shared, name)
    likelihood = TreeLikelihood(patterns, parse_model(model, patterns, dtype=torch.float32),
                                dtype=torch.float32)
    value = likelihood.log_likelihood(tree.topology, torch.tensor(tree.branch_lengths))
    assert value.dtype == torch.float32
    assert abs(value.item() - expected) < 0.1


def test_float64_rescaling_does_not_change_the_value(shared):
    patterns, tree = load(shared, "sim27")
    model = parse_model(GTRG4, patterns)
    lengths = torch.tensor(tree.branch_lengths)
    plain = TreeLikelihood(patterns, model, rescale=False).log_likelihood(tree.topology, lengths)
    scaled = TreeLikelihood(patterns, model, rescale=True).log_likelihood(tree.topology, lengths)
    torch.testing.assert_close(plain, scaled, rtol=1e-13, atol=0)



@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_site_below_float64s_range_without_rescaling_is_still_finite(kernel, dtype):
    # 60 taxa (float64 skips rescaling up to 64), every tip A, frequency of A 1e-6 and
    # branches long enough for each tip to be a draw from the frequencies: L = 1e-6^60,
    # far below float64's smallest number, so the unscaled pass underflows to -inf.
    from phylovi.io.alignment import Alignment
    taxa = TaxonOrder([f"t{i}" for i in range(60)])
    patterns = compress_patterns(Alignment(taxa, ("A",) * 60, None))
    nested = "t0"
    for i in range(1, 59):
        nested = (nested, f"t{i}")
    topology = Topology.from_nested(taxa, (nested, "t59"))
    model = parse_model("F81+F{0.000001,0.000001,0.000001,0.999997}", patterns, dtype=dtype)
    likelihood = TreeLikelihood(patterns, model, dtype=dtype)
    lengths = torch.full((2, topology.n_edges), 5.0, dtype=dtype, requires_grad=True)
    value = likelihood.log_likelihood(topology, lengths)
    assert value.tolist() == pytest.approx([60 * np.log(1e-6)] * 2, rel=1e-6)
    value.sum().backward()
    assert bool(torch.isfinite(lengths.grad).all())
    site = likelihood.site_log_likelihoods(topology, lengths.detach())
    assert site.squeeze(-1).tolist() == pytest.approx([60 * np.log(1e-6)] * 2, rel=1e-6)


# Small random problems for enumeration, batching and finite differences.

def random_problem(n_taxa, n_sites, seed, ambiguous=True):
    rng = np.random.default_rng(seed)
    taxa = TaxonOrder([f"t{i}" for i in range(n_taxa)])
    letters = list("ACGT") + (list("RYKMSWBDHVN-?") if ambiguous else [])
    p = np.full(len(letters), 1.0)
    p[:4] = 6.0
    sequences = ["".join(rng.choice(letters, n_sites, p=p / p.sum())) for _ in range(n_taxa)]
    from phylovi.io.alignment import Alignment
    alignment = Alignment(taxa, tuple(sequences), None)
    return alignment, compress_patterns(alignment)


def random_topology(taxa, rng) -> Topology:
    nodes = list(range(len(taxa)))
    while len(nodes) > 3:
        i, j = sorted(rng.choice(len(nodes), 2, replace=False))
        merged = (nodes[i], nodes[j])
        nodes = [n for k, n in enumerate(nodes) if k not in (i, j)] + [merged]
    return Topology.from_nested(taxa, tuple(nodes))


def brute_force_log_likelihood(alignment, tree: Tree, model) -> float:
    """Sum over every assignment of states to the internal nodes (tiny trees only)."""
    substitution, site_rates = model.substitution, model.site_rates
    rates = site_rates.rates().numpy()
    pinv = float(site_rates.pinv)
    pi = substitution.frequencies.double().numpy()
    arrays = tree.topology.arrays
    n_taxa = arrays.n_taxa
    codes = {"A": "A", "C": "C", "G": "G", "T": "T", "R": "AG", "Y": "CT", "K": "GT",
             "M": "AC", "S": "CG", "W": "AT", "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG",
             "N": "ACGT", "-": "ACGT", "?": "ACGT"}
    internal = range(n_taxa, arrays.n_nodes)
    total = 0.0
    for site in range(alignment.n_sites):
        allowed = [[("ACGT".index(b)) for b in codes[seq[site]]] for seq in alignment.sequences]
        value = 0.0
        for rate in rates:
            matrices = [substitution.transition_matrices(
                torch.tensor(tree.branch_lengths[e] * rate)).numpy() for e in range(arrays.n_edges)]
            for states in itertools.product(range(4), repeat=len(internal)):
                state = dict(zip(internal, states))
                inner = pi[state[arrays.root]]
                for node in internal:
                    if node != arrays.root:
                        inner *= matrices[node][state[arrays.parent[node]], state[node]]
                for tip in range(n_taxa):
                    parent_state = state[arrays.parent[tip]]
                    inner *= sum(matrices[tip][parent_state, k] for k in allowed[tip])
                value += inner / len(rates)
        constant = sum(pi[k] for k in range(4) if all(k in a for a in allowed))
        total += np.log((1 - pinv) * value + pinv * constant)
    return total


@pytest.mark.parametrize("model", ["JC", "HKY{2.5}+F{0.1,0.2,0.3,0.4}",
                                   "GTR{0.5,2,1.5,0.7,3}+F{0.35,0.15,0.2,0.3}+G3{0.7}+I{0.2}"])
def test_log_likelihood_equals_enumeration_with_ambiguity(kernel, model):
    alignment, patterns = random_problem(5, 12, seed=3)
    rng = np.random.default_rng(4)
    topology = random_topology(patterns.taxa, rng)
    tree = Tree(topology, rng.uniform(0.01, 0.6, topology.n_edges))
    model = parse_model(model, patterns)
    expected = brute_force_log_likelihood(alignment, tree, model)
    for rescale in (False, True):
        value = TreeLikelihood(patterns, model, rescale=rescale).log_likelihood(
            topology, torch.tensor(tree.branch_lengths))
        assert value.item() == pytest.approx(expected, rel=1e-12)


def test_batch_of_mixed_topologies_equals_one_at_a_time(kernel):
    _, patterns = random_problem(9, 80, seed=5)
    rng = np.random.default_rng(6)
    topologies = [random_topology(patterns.taxa, rng) for _ in range(4)]
    assert len(set(topologies)) >= 3
    lengths = torch.tensor(rng.uniform(0.01, 0.5, (4, 5, topologies[0].n_edges)))
    likelihood = TreeLikelihood(patterns, parse_model("HKY{3}+G4{0.8}", patterns))
    batched = likelihood.log_likelihood(TopologyBatch(topologies), lengths)
    assert batched.shape == (4, 5)
    for b, topology in enumerate(topologies):
        for s in range(5):
            single = likelihood.log_likelihood(topology, lengths[b, s])
            torch.testing.assert_close(batched[b, s], single, rtol=1e-13, atol=0)



@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tree_log_likelihoods_of_many_trees_equal_one_at_a_time(kernel, monkeypatch, dtype):
    from phylovi.likelihood import tree_likelihood

    monkeypatch.setattr(tree_likelihood, "_TREES_PER_CALL", 3)  # 7 trees: calls of 3, 3, 1
    _, patterns = random_problem(9, 80, seed=5)
    rng = np.random.default_rng(8)
    trees = [Tree(random_topology(patterns.taxa, rng), rng.uniform(0.01, 0.5, 15))
             for _ in range(7)]
    likelihood = TreeLikelihood(patterns, parse_model("HKY{3}+G4{0.8}", patterns, dtype=dtype),
                                dtype=dtype)
    values = likelihood.tree_log_likelihoods(trees)
    assert len(values) == 7 and all(isinstance(value, float) for value in values)
    for tree, value in zip(trees, values):
        single = likelihood.log_likelihood(tree.topology, torch.tensor(tree.branch_lengths,
                                                                       dtype=dtype))
        assert value == pytest.approx(single.item(), rel=1e-12 if dtype == torch.float64 else 1e-6)

def test_one_topology_batches_are_kept_but_not_without_bound():
    """Evaluating one tree again and again (MCMC) reuses its batch and schedule; many
    trees one at a time keep only the newest few."""
    _, patterns = random_problem(9, 80, seed=5)
    rng = np.random.default_rng(7)
    likelihood = TreeLikelihood(patterns, parse_model("JC", patterns))
    topologies = list(dict.fromkeys(random_topology(patterns.taxa, rng) for _ in range(40)))
    assert len(topologies) > 20
    first = likelihood.batch(topologies[0])
    assert likelihood.batch(topologies[0]) is first
    lengths = torch.full((topologies[0].n_edges,), 0.1, dtype=torch.float64)
    values = [likelihood.log_likelihood(topology, lengths) for topology in topologies]
    assert len(likelihood._single_batches) <= 16
    fresh = TreeLikelihood(patterns, parse_model("JC", patterns))
    torch.testing.assert_close(torch.stack(values), torch.stack(
        [fresh.log_likelihood(TopologyBatch([t]), lengths[None])[0] for t in topologies]),
        rtol=1e-13, atol=0)


def test_a_fixed_model_changed_in_place_is_seen(kernel):
    """A likelihood keeps what it built from a model whose parameters need no gradient;
    changing a parameter in place, or asking for its gradient, must not be served from
    that copy."""
    _, patterns = random_problem(7, 60, seed=8)
    topology = random_topology(patterns.taxa, np.random.default_rng(9))
    lengths = torch.full((topology.n_edges,), 0.2, dtype=torch.float64)
    model = parse_model("HKY{2}+F{0.3,0.2,0.2,0.3}+G4{0.5}", patterns)
    likelihood = TreeLikelihood(patterns, model)
    before = likelihood.log_likelihood(topology, lengths)
    for name, value in (("kappa", 3.0), ("shape", 0.9)):
        model.parameters[name].fill_(value)
        fresh = TreeLikelihood(patterns, parse_model(
            f"HKY{{{float(model.parameters['kappa'])}}}+F{{0.3,0.2,0.2,0.3}}"
            f"+G4{{{float(model.parameters['shape'])}}}", patterns))
        changed = likelihood.log_likelihood(topology, lengths)
        assert changed.item() != pytest.approx(before.item(), rel=1e-6)
        torch.testing.assert_close(changed, fresh.log_likelihood(topology, lengths),
                                   rtol=1e-13, atol=0)
        before = changed
    shape = model.parameters["shape"].requires_grad_()
    likelihood.log_likelihood(topology, lengths).backward()
    assert shape.grad is not None and shape.grad.abs() > 0


def test_rerooting_and_rotation_leave_the_log_likelihood_unchanged(shared):
    import dendropy

    patterns, tree = load(shared, "sim27")
    likelihood = TreeLikelihood(patterns, parse_model(GTRG4, patterns))
    expected = likelihood.log_likelihood(tree.topology, torch.tensor(tree.branch_lengths))
    source = dendropy.Tree.get(path=shared("sim/sim27.nwk"), schema="newick",
                               preserve_underscores=True)
    rng = np.random.default_rng(7)
    for _ in range(3):
        nodes = [n for n in source.preorder_node_iter() if n.child_nodes()]
        source.reroot_at_node(nodes[rng.integers(len(nodes))], update_bipartitions=False)
        for node in source.preorder_node_iter():
            kids = node.child_nodes()
            if kids:
                node.set_child_nodes([kids[i] for i in rng.permutation(len(kids))])
        text = source.as_string(schema="newick", suppress_rooting=True).strip()
        moved = read_tree(text, taxa=patterns.taxa)
        assert not np.isnan(moved.branch_lengths).any()
        value = likelihood.log_likelihood(moved.topology, torch.tensor(moved.branch_lengths))
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("parameter", ["lengths", "kappa", "rates", "frequencies", "shape", "pinv"])
def test_gradients_match_finite_differences(kernel, parameter):
    _, patterns = random_problem(6, 40, seed=8)
    rng = np.random.default_rng(9)
    topologies = [random_topology(patterns.taxa, rng) for _ in range(2)]
    base = "TN{2,3}" if parameter == "kappa" else "GTR{0.5,2,1.5,0.7,3}"
    model = parse_model(base + "+F{0.35,0.15,0.2,0.3}+G4{0.7}+I{0.15}", patterns)
    likelihood = TreeLikelihood(patterns, model)
    lengths = torch.tensor(rng.uniform(0.02, 0.5, (2, 3, topologies[0].n_edges)))
    batch = TopologyBatch(topologies)
    name = {"lengths": None}.get(parameter, parameter)

    def f(value):
        if name is None:
            return likelihood.log_likelihood(batch, value)
        model.parameters[name] = value
        return likelihood.log_likelihood(batch, lengths)

    start = lengths if name is None else model.parameters[name]
    start = start.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (start,), eps=1e-6, atol=1e-5, rtol=1e-5)


def test_site_log_likelihoods_sum_to_the_log_likelihood_with_equal_gradients():
    _, patterns = random_problem(7, 60, seed=10)
    rng = np.random.default_rng(11)
    topologies = TopologyBatch([random_topology(patterns.taxa, rng) for _ in range(3)])
    model = parse_model("HKY{2}+F{0.3,0.2,0.2,0.3}+G4{0.6}+I{0.1}", patterns)
    likelihood = TreeLikelihood(patterns, model)
    lengths = torch.tensor(rng.uniform(0.02, 0.4, (3, 2, topologies.n_edges)), requires_grad=True)
    weights = torch.tensor(patterns.weights)
    total = likelihood.log_likelihood(topologies, lengths)
    (direct,) = torch.autograd.grad(total.sum(), lengths)
    by_site = likelihood.site_log_likelihoods(topologies, lengths) @ weights
    (via_sites,) = torch.autograd.grad(by_site.sum(), lengths)
    torch.testing.assert_close(by_site, total, rtol=1e-12, atol=0)
    torch.testing.assert_close(via_sites, direct, rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
def test_cuda_equals_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _, patterns = random_problem(12, 200, seed=12)
    rng = np.random.default_rng(13)
    topologies = TopologyBatch([random_topology(patterns.taxa, rng) for _ in range(4)])
    model = parse_model("GTR{0.5,2,1.5,0.7,3}+F{0.35,0.15,0.2,0.3}+G4{0.7}+I{0.15}", patterns)
    lengths = torch.tensor(rng.uniform(0.02, 0.4, (4, 3, topologies.n_edges)))
    values = {}
    for device in ("cpu", "cuda"):
        x = lengths.to(device).requires_grad_()
        value = TreeLikelihood(patterns, model, device=device).log_likelihood(topologies, x)
        value.sum().backward()
        values[device] = (value.cpu(), x.grad.cpu())
    torch.testing.assert_close(values["cuda"][0], values["cpu"][0], rtol=1e-12, atol=0)
    torch.testing.assert_close(values["cuda"][1], values["cpu"][1], rtol=1e-9, atol=1e-12)
