"""The fused C kernel (phylovi.likelihood.cpu_kernel) against the torch kernel."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from phylovi.likelihood import TreeLikelihood, cpu_kernel, parse_model
from phylovi.likelihood.patterns import SitePatterns
from phylovi.trees import TaxonOrder, Topology, TopologyBatch

needs_compiler = pytest.mark.skipif(
    not cpu_kernel.available(),
    reason=f"the C kernel is unavailable: {cpu_kernel.unavailable_reason()}")

TOLERANCE = {torch.float64: 1e-11, torch.float32: 2e-5}


def random_topology(taxa, rng) -> Topology:
    nodes = list(range(len(taxa)))
    while len(nodes) > 3:
        i, j = sorted(rng.choice(len(nodes), 2, replace=False))
        nodes = [n for k, n in enumerate(nodes) if k not in (i, j)] + [(nodes[i], nodes[j])]
    return Topology.from_nested(taxa, tuple(nodes))


def caterpillar(taxa) -> Topology:
    nested = (0, 1)
    for i in range(2, len(taxa) - 1):
        nested = (nested, i)
    return Topology.from_nested(taxa, (nested, len(taxa) - 1))


def random_patterns(n_taxa, n_patterns, rng) -> SitePatterns:
    """Random codes, ambiguity included, with some constant patterns for +I."""
    taxa = TaxonOrder([f"t{i}" for i in range(n_taxa)])
    codes = rng.choice([1, 2, 4, 8, 1, 2, 4, 8, 5, 10, 3, 15], size=(n_taxa, n_patterns))
    codes[:, : n_patterns // 5] = rng.choice([1, 2, 4, 8], n_patterns // 5)
    weights = rng.integers(1, 5, n_patterns).astype(float)
    return SitePatterns(taxa, codes.astype(np.uint8), weights,
                        np.repeat(np.arange(n_patterns), weights.astype(int)))


CASES = [
    # n_taxa, B, S, model, P, shape
    (3, 1, 1, "JC", 5, "random"),
    (4, 2, 1, "HKY{2}+F{0.3,0.2,0.2,0.3}+G4{0.5}", 37, "random"),
    (7, 3, 2, "JC+I{0.2}", 70, "random"),
    (12, 4, 3, "GTR{0.5,2,1.5,0.7,3}+F{0.35,0.15,0.2,0.3}+G4{0.7}+I{0.15}", 150, "random"),
    (16, 1, 2, "K2P{3}+G3{1.5}", 129, "caterpillar"),
    (40, 5, 1, "HKY{2}+F{0.3,0.2,0.2,0.3}+G4{0.5}", 200, "random"),
    (60, 2, 2, "GTR{0.5,2,1.5,0.7,3}+F{0.35,0.15,0.2,0.3}+G3{0.3}", 300, "caterpillar"),
    # the F81 path (equal exchangeabilities), its frequencies differentiated
    (20, 3, 2, "F81+F{0.35,0.15,0.2,0.3}+G4{0.4}+I{0.1}", 120, "random"),
    # equal exchangeabilities that require a gradient must take the general path
    (9, 2, 2, "GTR{1,1,1,1,1}+F{0.35,0.15,0.2,0.3}", 80, "random"),
]


def evaluate(case, dtype, rescale, kernel, monkeypatch, seed, fixed_model=False):
    """Log-likelihoods, gradients (branch lengths, then every model parameter unless
    ``fixed_model``) and site log-likelihoods of a random instance of ``case``."""
    n_taxa, n_topologies, n_samples, model_string, n_patterns, shape = case
    rng = np.random.default_rng(seed)
    patterns = random_patterns(n_taxa, n_patterns, rng)
    topologies = [caterpillar(patterns.taxa) if shape == "caterpillar"
                  else random_topology(patterns.taxa, rng) for _ in range(n_topologies)]
    batch = TopologyBatch(topologies)
    model = parse_model(model_string, patterns)
    for value in model.parameters.values():
        value.requires_grad_(not fixed_model)
    lengths = torch.tensor(rng.uniform(0.01, 0.8, (n_topologies, n_samples, batch.n_edges)),
                           requires_grad=True)
    if kernel == "torch":
        monkeypatch.setenv("PHYLOVI_KERNEL", "torch")
    else:
        monkeypatch.delenv("PHYLOVI_KERNEL", raising=False)
    likelihood = TreeLikelihood(patterns, model, dtype=dtype, rescale=rescale)
    value = likelihood.log_likelihood(batch, lengths)
    weights = torch.as_tensor(rng.uniform(0.5, 2.0, value.shape), dtype=dtype)
    (value * weights).sum().backward()
    grads = [lengths.grad] + ([] if fixed_model else [p.grad for p in model.parameters.values()])
    with torch.no_grad():
        sites = likelihood.site_log_likelihoods(batch, lengths)
    return value.detach(), grads, sites


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_cpu_kernel_matches_torch_kernel(case, rescale, dtype, monkeypatch):
    if dtype == torch.float32 and not rescale and case[0] > 20:
        pytest.skip("float32 without rescaling underflows on large trees")
    seed = 2 * CASES.index(case) + rescale
    value, grads, sites = evaluate(case, dtype, rescale, "c", monkeypatch, seed)
    expected_value, expected_grads, expected_sites = evaluate(case, dtype, rescale, "torch",
                                                              monkeypatch, seed)
    rtol = TOLERANCE[dtype]
    torch.testing.assert_close(value, expected_value, rtol=rtol, atol=0)
    torch.testing.assert_close(sites, expected_sites, rtol=rtol, atol=rtol)
    for grad, expected in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected, rtol=50 * rtol, atol=50 * rtol)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", [CASES[2], CASES[3], CASES[5], CASES[6], CASES[7]])
def test_branch_length_gradient_of_a_fixed_model_matches_torch_kernel(case, dtype, monkeypatch):
    """With the model's parameters fixed the chain rule from d lnL / d P to the branch
    lengths is done by hand (FixedModelLogLikelihood), not by autograd."""
    seed = 50 + CASES.index(case)
    value, grads, _ = evaluate(case, dtype, True, "c", monkeypatch, seed, fixed_model=True)
    expected_value, expected_grads, _ = evaluate(case, dtype, True, "torch", monkeypatch, seed,
                                                 fixed_model=True)
    rtol = TOLERANCE[dtype]
    torch.testing.assert_close(value, expected_value, rtol=rtol, atol=0)
    assert len(grads) == 1 and grads[0].dtype == torch.float64  # the lengths' dtype
    torch.testing.assert_close(grads[0], expected_grads[0], rtol=50 * rtol, atol=50 * rtol)


@pytest.fixture
def two_row_build(monkeypatch):
    """The kernel built with two-row sweeps, the layout of machines without AVX-512 (on
    those the default build already is this one), so that both layouts are tested here."""
    monkeypatch.setattr(cpu_kernel, "FLAGS", cpu_kernel.FLAGS + ("-DPV_TWO_ROW_SWEEPS",))
    monkeypatch.setattr(cpu_kernel, "_library", None)
    monkeypatch.setattr(cpu_kernel, "_reason", None)  # monkeypatch restores all three after the test


@needs_compiler
@pytest.mark.parametrize("case", [CASES[3], CASES[6], CASES[7]])
def test_two_row_sweeps_match_torch_kernel(case, two_row_build, monkeypatch):
    assert cpu_kernel.available(), cpu_kernel.unavailable_reason()
    for dtype, fixed_model in itertools.product((torch.float64, torch.float32), (False, True)):
        value, grads, sites = evaluate(case, dtype, True, "c", monkeypatch, 11, fixed_model)
        expected_value, expected_grads, expected_sites = evaluate(case, dtype, True, "torch",
                                                                  monkeypatch, 11, fixed_model)
        rtol = TOLERANCE[dtype]
        torch.testing.assert_close(value, expected_value, rtol=rtol, atol=0)
        torch.testing.assert_close(sites, expected_sites, rtol=rtol, atol=rtol)
        for grad, expected in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected, rtol=50 * rtol, atol=50 * rtol)


@needs_compiler
@pytest.mark.parametrize("flags", [(), ("-DPV_TWO_ROW_SWEEPS",)])
@pytest.mark.parametrize("case", [CASES[3], CASES[6], CASES[7]])
def test_float64_rescaling_matches_torch_kernel(case, flags, monkeypatch):
    """float64 partials rescale only below 1e-100, which the small trees here never
    reach: a build that rescales below 1e-3 takes those paths (the gradient rebuilds a
    node's partials from its contributions and its scale, or, with the model fixed,
    reads the contributions of rescaled children) on every few nodes."""
    monkeypatch.setattr(cpu_kernel, "FLAGS",
                        cpu_kernel.FLAGS + ("-DPV_F64_RESCALE_BELOW=1e-3",) + flags)
    monkeypatch.setattr(cpu_kernel, "_library", None)
    monkeypatch.setattr(cpu_kernel, "_reason", None)
    assert cpu_kernel.available(), cpu_kernel.unavailable_reason()
    for fixed_model in (False, True):
        value, grads, sites = evaluate(case, torch.float64, True, "c", monkeypatch, 13, fixed_model)
        expected_value, expected_grads, expected_sites = evaluate(
            case, torch.float64, True, "torch", monkeypatch, 13, fixed_model)
        rtol = TOLERANCE[torch.float64]
        torch.testing.assert_close(value, expected_value, rtol=rtol, atol=0)
        torch.testing.assert_close(sites, expected_sites, rtol=rtol, atol=rtol)
        for grad, expected in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected, rtol=50 * rtol, atol=50 * rtol)


@needs_compiler
@pytest.mark.parametrize("random_half", [0, 1])
def test_float32_rescales_every_pattern_that_needs_it(random_half):
    """Constant patterns, whose partials stay near 1 on short branches, and random ones,
    which underflow float32 within a few dozen taxa unless rescaled, in alternating
    groups of 8: the random ones fill only one half of every 16-pattern vector. The
    per-node check that decides whether to rescale must see every lane, so float32
    matches float64 at every site."""
    rng = np.random.default_rng(23)
    n_taxa, n_patterns = 120, 72
    taxa = TaxonOrder([f"t{i}" for i in range(n_taxa)])
    codes = rng.choice([1, 2, 4, 8], size=(n_taxa, n_patterns)).astype(np.uint8)
    for start in range(0, n_patterns, 8):
        if start // 8 % 2 != random_half:
            codes[:, start:start + 8] = 1
    patterns = SitePatterns(taxa, codes, np.ones(n_patterns), np.arange(n_patterns))
    batch = TopologyBatch([random_topology(taxa, rng), caterpillar(taxa)])
    lengths = torch.full((2, 1, batch.n_edges), 0.01, dtype=torch.float64)
    sites = {dtype: TreeLikelihood(patterns, parse_model("JC", patterns), dtype=dtype)
             .site_log_likelihoods(batch, lengths) for dtype in (torch.float64, torch.float32)}
    assert float(sites[torch.float64].min()) < -150  # far below float32's range at the root
    torch.testing.assert_close(sites[torch.float32].double(), sites[torch.float64], rtol=1e-5,
                               atol=0)


@needs_compiler
def test_float64_site_log_likelihoods_far_below_exp_minus_700_stay_finite(monkeypatch):
    """A pattern's scales are multiplied into one number until that nears 1e-250 and is
    moved into a sum of logs; a node whose scale was far below 1e-100 once took that
    product to 0 first, so a site below about -1,000 nats could be -inf. Here, one
    all-C site on a balanced 128-taxon tree with C rare: each 64-taxon half rescales by
    about 1e-190 at once."""
    taxa = TaxonOrder([f"t{i}" for i in range(128)])

    def balanced(low, high):
        return low if high - low == 1 else (balanced(low, (low + high) // 2),
                                            balanced((low + high) // 2, high))

    topology = Topology.from_nested(taxa, balanced(0, 128))
    patterns = SitePatterns(taxa, np.full((128, 1), 2, np.uint8), np.ones(1), np.zeros(1, int))
    model = parse_model("F81+F{0.001,0.001,0.001,0.997}", patterns)
    lengths = torch.full((topology.n_edges,), 0.5, dtype=torch.float64)
    values = {}
    for kernel in ("c", "torch"):
        if kernel == "torch":
            monkeypatch.setenv("PHYLOVI_KERNEL", "torch")
        values[kernel] = TreeLikelihood(patterns, model).log_likelihood(topology, lengths)
    assert float(values["torch"]) < -700
    torch.testing.assert_close(values["c"], values["torch"], rtol=1e-11, atol=0)


@pytest.mark.parametrize("model_string, requires_grad, expected", [
    ("JC", False, True), ("F81+G4", False, True), ("GTR{1,1,1,1,1}", False, True),
    ("HKY{1}", False, True), ("K2P{1.5}", False, False), ("GTR{1,2,1,1,1}", False, False),
    # a differentiated kappa or rate moves P off the F81 family, even from equal values
    ("HKY{1}", True, False), ("GTR{1,1,1,1,1}", True, False)])
def test_f81_family_is_recognised(model_string, requires_grad, expected):
    model = parse_model(model_string)
    for name in ("kappa", "rates"):
        if name in model.parameters:
            model.parameters[name].requires_grad_(requires_grad)
    assert model.substitution.is_f81 == expected


@needs_compiler
def test_reused_buffers_are_never_overwritten_while_needed():
    """A node's partials buffer must hold its partials from the node's own step until
    its parent's, and its pre-order buffer (written in the parent's step of the
    reversed pass) until its own: no node in between may be given the same buffer."""
    rng = np.random.default_rng(5)
    taxa = TaxonOrder([f"t{i}" for i in range(40)])
    topologies = [caterpillar(taxa)] + [random_topology(taxa, rng) for _ in range(6)]
    program = cpu_kernel.node_program(TopologyBatch(topologies))
    offsets, nch, ref, _, slots, upper_slots = program.arrays
    largest = program.max_nodes
    ref = ref.reshape(-1, 3)
    assert largest == 38  # internal nodes of an unrooted 40-taxon tree
    for b in range(len(topologies)):
        nodes = range(offsets[b], offsets[b + 1])
        parent = {int(child): node for node in nodes for child in ref[node, :nch[node]]
                  if child >= 0}
        assert upper_slots[nodes.stop - 1] == -1  # the root receives nothing
        assert all(upper_slots[node] >= 0 for node in parent)
        # Both buffers of a node are in use from one of its steps to its parent's
        # (partials: written in the node's step, read in the parent's; pre-order: written
        # in the parent's step, read in the node's, the pass running backwards), ends
        # included: a parent reads its children's buffers while it writes its own.
        for node, up in parent.items():
            for other, other_up in parent.items():
                if other != node and max(node, other) <= min(up, other_up):
                    assert slots[node] != slots[other]
                    assert upper_slots[node] != upper_slots[other]
        # depth-first, larger subtree first: a caterpillar needs 2 buffers, any tree
        # at most about log2 of its size (the random ones here need 4-5), not 38
        for used in (slots, upper_slots):
            n_buffers = used[nodes.start:nodes.stop].max() + 1
            assert n_buffers <= 2 if b == 0 else n_buffers <= np.ceil(np.log2(38)) + 1


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_kernel_does_not_depend_on_threads(threads, monkeypatch):
    monkeypatch.setattr(cpu_kernel, "SMALL_WORK", 0)  # small as it is, use every thread
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = evaluate(CASES[3], torch.float64, True, "c", monkeypatch, 11)
        torch.set_num_threads(threads)
        many = evaluate(CASES[3], torch.float64, True, "c", monkeypatch, 11)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], many[0])
    assert torch.equal(one[2], many[2])
    for a, b in zip(one[1], many[1]):  # per-thread sums add up in another order
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


@needs_compiler
def test_a_small_call_runs_on_one_thread_with_the_same_values(monkeypatch):
    """Where idle threads sleep, a call below SMALL_WORK updates takes one thread whatever
    torch's setting, and gives what an explicit single thread gives."""
    monkeypatch.setattr(cpu_kernel, "THREADS_SLEEP", True)
    before = torch.get_num_threads()
    used = []
    original = cpu_kernel._plan
    monkeypatch.setattr(cpu_kernel, "_plan", lambda *a: used.append(a[-1]) or original(*a))
    try:
        torch.set_num_threads(2)
        small = evaluate(CASES[1], torch.float64, True, "c", monkeypatch, 11)
        assert torch.get_num_threads() == 2  # the one-thread calls left torch's setting alone
        monkeypatch.setattr(cpu_kernel, "SMALL_WORK", 0)
        two = evaluate(CASES[1], torch.float64, True, "c", monkeypatch, 11)
        torch.set_num_threads(1)
        one = evaluate(CASES[1], torch.float64, True, "c", monkeypatch, 11)
    finally:
        torch.set_num_threads(before)
    assert used[:2] == [1, 1] and used[2:4] == [2, 2]  # small; then forced to two threads
    assert torch.equal(small[0], one[0]) and torch.equal(small[2], one[2])
    for a, b in zip(small[1], one[1]):
        assert torch.equal(a, b)
    torch.testing.assert_close(two[0], one[0], rtol=1e-12, atol=0)


@needs_compiler
def test_kernel_gives_the_callers_floating_point_mode_back(monkeypatch):
    """The kernel's threads flush subnormals to zero (an Intel core pays a microcode
    assist for every operation on one); the calling thread, which is one of them, must
    get its mode back, so Python floats and torch keep gradual underflow afterwards."""
    evaluate(CASES[3], torch.float32, True, "c", monkeypatch, 5)
    tiny = float(np.finfo(np.float64).tiny)
    subnormal = tiny * 0.5  # flush-to-zero would make this 0
    assert subnormal > 0
    assert subnormal * 2.0 == tiny  # denormals-are-zero would read it as 0
    assert float(torch.tensor([tiny], dtype=torch.float64) * 0.5) == subnormal


@needs_compiler
@pytest.mark.parametrize("case", [CASES[3], CASES[7]])
@pytest.mark.parametrize("per_pair", [True, False])
def test_gradient_tasks_by_pair_or_by_block_match_torch_kernel(case, per_pair, monkeypatch):
    """With at least 4 (topology, sample) pairs per thread a gradient task is one pair
    over all its pattern blocks; with fewer, tasks split the blocks. One thread makes
    the first happen here, as many threads as pairs the second."""
    n_pairs = case[1] * case[2]
    monkeypatch.setattr(cpu_kernel, "SMALL_WORK", 0)  # small as it is, use every thread
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if per_pair else n_pairs)
        for dtype, fixed_model in itertools.product((torch.float64, torch.float32), (False, True)):
            value, grads, _ = evaluate(case, dtype, True, "c", monkeypatch, 3, fixed_model)
            expected_value, expected_grads, _ = evaluate(case, dtype, True, "torch", monkeypatch, 3,
                                                         fixed_model)
            rtol = TOLERANCE[dtype]
            torch.testing.assert_close(value, expected_value, rtol=rtol, atol=0)
            for grad, expected in zip(grads, expected_grads):
                torch.testing.assert_close(grad, expected, rtol=50 * rtol, atol=50 * rtol)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("node_bytes", [8192, 16384])
@pytest.mark.parametrize("gradient", [False, True])
def test_block_sizes_stay_within_their_rule(node_bytes, gradient, monkeypatch):
    """Blocks are whole vectors of patterns, between 32 and the cap, hold a node's
    partials in the rule's bytes (or 32 patterns), and a gradient's scratch fits its
    budget unless the block is already 32 patterns."""
    monkeypatch.setattr(cpu_kernel, "node_block_bytes", lambda: node_bytes)
    monkeypatch.setattr(cpu_kernel, "_BLOCK", None)
    for categories, itemsize, n_nodes in itertools.product((1, 2, 4, 8), (4, 8), (10, 99, 5000)):
        block = cpu_kernel.block_size(categories, n_nodes, itemsize, gradient, threads=2)
        per_pattern = categories * 4 * itemsize
        assert block % 8 == 0 and 32 <= block <= (128 if gradient else 256)
        assert block * per_pattern <= max(node_bytes, 32 * per_pattern)
        if gradient and block > 32:
            assert 3 * n_nodes * per_pattern * block <= cpu_kernel.gradient_scratch(2)
    # GTR+G4 in float64: 64 patterns under the 8 KiB rule, 128 under AMD's 16 KiB one
    assert cpu_kernel.block_size(4, 26, 8, gradient, threads=2) == node_bytes // 128


@needs_compiler
def test_both_block_rules_give_the_same_values(monkeypatch):
    """Blocks of 64 and of 128 patterns (the two rules' GTR+G4 float64 blocks) over
    several blocks of patterns agree with each other and with the torch kernel."""
    case = (12, 2, 3, "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}", 700, "random")
    monkeypatch.setattr(cpu_kernel, "_BLOCK", None)
    results = []
    for node_bytes in (8192, 16384):
        monkeypatch.setattr(cpu_kernel, "node_block_bytes", lambda: node_bytes)
        for fixed_model in (False, True):
            results.append(evaluate(case, torch.float64, False, "c", monkeypatch, 11, fixed_model))
    expected = [evaluate(case, torch.float64, False, "torch", monkeypatch, 11, fixed_model)
                for fixed_model in (False, True)]
    for k, (value, grads, sites) in enumerate(results):
        expected_value, expected_grads, expected_sites = expected[k % 2]
        torch.testing.assert_close(value, expected_value, rtol=1e-11, atol=0)
        torch.testing.assert_close(sites, expected_sites, rtol=1e-11, atol=1e-11)
        for grad, expected_grad in zip(grads, expected_grads):
            torch.testing.assert_close(grad, expected_grad, rtol=5e-10, atol=5e-10)


def test_torch_fallback_is_reported(monkeypatch):
    monkeypatch.setenv("PHYLOVI_KERNEL", "torch")
    assert not cpu_kernel.available()
    assert cpu_kernel.unavailable_reason() == "PHYLOVI_KERNEL=torch"


def test_compile_failure_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("PHYLOVI_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "phylovi-no-such-compiler")
    with pytest.raises(RuntimeError, match="no C compiler"):
        cpu_kernel._compile()


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "gcc")) is None, reason="no C compiler")
def test_kernel_builds_wherever_a_compiler_exists(monkeypatch):
    """The kernel's tests skip when it is unavailable, so a source that no longer
    compiles would otherwise pass the suite on the torch fallback."""
    monkeypatch.delenv("PHYLOVI_KERNEL", raising=False)
    assert cpu_kernel.available(), cpu_kernel.unavailable_reason()


def _has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@needs_compiler
@pytest.mark.skipif(not _has_avx512(), reason="tip codes are used by AVX-512 builds only")
@pytest.mark.parametrize("model_string", ["F81+F{0.35,0.15,0.2,0.3}+G4{0.4}",
                                          "GTR{0.5,2,1.5,0.7,3}+F{0.35,0.15,0.2,0.3}+G4{0.7}"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tip_codes_match_tip_planes(model_string, dtype):
    """A tip's contribution looked up from its codes (every IUPAC mask, gaps included)
    equals the product of its transition matrix with its planes, tip pairs, tip and
    internal child either way round, and the root's third child included."""
    rng = np.random.default_rng(17)
    patterns = random_patterns(9, 61, rng)
    patterns.codes[:, :16] = np.arange(16)[None, :].repeat(9, 0) % 15 + 1  # every code
    topologies = [random_topology(patterns.taxa, rng) for _ in range(3)] + [caterpillar(patterns.taxa)]
    batch = TopologyBatch(topologies)
    likelihood = TreeLikelihood(patterns, parse_model(model_string, patterns), dtype=dtype)
    lengths = torch.as_tensor(rng.uniform(0.01, 0.8, (len(topologies), 2, batch.n_edges)))
    substitution, site_rates = likelihood.model.substitution, likelihood.model.site_rates
    matrices, frequencies = likelihood._matrices(lengths, substitution, site_rates)
    tips, invariant, codes = likelihood._cpu_planes()
    arguments = (cpu_kernel.node_program(batch), matrices, frequencies, site_rates.pinv, tips,
                 site_rates.weights(dtype), likelihood.weights, invariant, True)
    for gradient in (False, True):
        with_codes = cpu_kernel.evaluate(*arguments, gradient=gradient, sites=True,
                                         f81=substitution.is_f81, codes=codes)
        with_planes = cpu_kernel.evaluate(*arguments, gradient=gradient, sites=True,
                                          f81=substitution.is_f81)
        for a, b in zip(with_codes, with_planes):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
    # derivatives along D = Q @ P for each matrix P, weighted by the categories' rates and
    # summed over them (what a fixed model's branch lengths need, with Q the rate matrix;
    # any Q outside the F81 family, whose path needs its own rate matrix) equal d lnL / d P
    # contracted with D, tips looked up or not
    if substitution.is_f81:
        eigenvalues, products = substitution.eigen_products(torch.float64, "cpu")
        generator = (eigenvalues @ products).reshape(4, 4).to(dtype)
    else:
        generator = torch.as_tensor(rng.normal(size=(4, 4)), dtype=dtype)
    rates = torch.as_tensor(rng.uniform(0.2, 3.0, matrices.shape[2]), dtype=torch.float64)
    jac = cpu_kernel.evaluate(*arguments, gradient=True, codes=codes, f81=substitution.is_f81)[2]
    directions = generator.double() @ matrices.double()
    per_category = (jac.double() * directions).sum((-1, -2))  # [B * n_edges, S, C]
    expected = (per_category @ rates).reshape(len(batch), batch.n_edges, -1).transpose(1, 2)
    for tip_codes in (codes, None):
        along = cpu_kernel.evaluate(*arguments, gradient=True, codes=tip_codes,
                                    f81=substitution.is_f81, generator=generator,
                                    rates=rates)[2]
        torch.testing.assert_close(along, expected, rtol=50 * TOLERANCE[dtype],
                                   atol=50 * TOLERANCE[dtype] * float(expected.abs().max()))
