"""The fused C kernel (phylovi.likelihood.cpu_kernel) against the torch kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phylovi.likelihood import cpu_kernel
from phylovi.likelihood.pruning import _Kernel, build_schedule, prune
from phylovi.likelihood.tips import code_table
from phylovi.trees import TaxonOrder, Topology, TopologyBatch

needs_compiler = pytest.mark.skipif(
    not cpu_kernel.available(),
    reason=f"the C kernel is unavailable: {cpu_kernel.unavailable_reason()}")

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def random_topology(taxa, rng) -> Topology:
    nodes = list(range(len(taxa)))
    while len(nodes) > 3:
        i, j = sorted(rng.choice(len(nodes), 2, replace=False))
        merged = (nodes[i], nodes[j])
        nodes = [n for k, n in enumerate(nodes) if k not in (i, j)] + [merged]
    return Topology.from_nested(taxa, tuple(nodes))


def caterpillar(taxa) -> Topology:
    nested = (0, 1)
    for i in range(2, len(taxa) - 1):
        nested = (nested, i)
    return Topology.from_nested(taxa, (nested, len(taxa) - 1))


def problem(n_taxa, n_topologies, n_samples, n_categories, n_patterns, dtype, seed,
            shape="random"):
    rng = np.random.default_rng(seed)
    taxa = TaxonOrder([f"t{i}" for i in range(n_taxa)])
    if shape == "caterpillar":
        topologies = [caterpillar(taxa)] * n_topologies
    else:
        topologies = [random_topology(taxa, rng) for _ in range(n_topologies)]
    batch = TopologyBatch(topologies)
    schedule = build_schedule(batch)
    raw = rng.uniform(0.02, 1.0, (n_topologies * batch.n_edges, n_samples, n_categories, 4, 4))
    raw += np.eye(4) * rng.uniform(0, 4, raw.shape[:-2])[..., None, None]
    matrices = torch.tensor(raw / raw.sum(-1, keepdims=True), dtype=dtype)
    frequencies = torch.tensor(rng.dirichlet(np.ones(4) * 5), dtype=dtype)
    tip_codes = torch.tensor(rng.integers(1, 16, (n_taxa, n_patterns)), dtype=torch.long)
    grad_site = torch.tensor(rng.uniform(0.5, 2.0, (n_topologies, n_samples, n_categories,
                                                    n_patterns)), dtype=dtype)
    return schedule, matrices, frequencies, tip_codes, code_table(dtype), grad_site


def assert_close(actual, expected, dtype):
    rtol = TOLERANCE[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * 1e-3, equal_nan=False)


CASES = [
    # n_taxa, B, S, C, P, shape
    (3, 1, 1, 1, 5, "random"),
    (4, 2, 1, 4, 37, "random"),
    (7, 3, 2, 1, 70, "random"),
    (12, 4, 3, 4, 150, "random"),
    (16, 1, 2, 4, 129, "caterpillar"),
    (40, 5, 1, 4, 200, "random"),
    (60, 2, 2, 3, 300, "caterpillar"),
]


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_cpu_kernel_matches_torch_kernel(case, rescale, dtype):
    n_taxa, n_topologies, n_samples, n_categories, n_patterns, shape = case
    if dtype == torch.float32 and not rescale and n_taxa > 20:
        pytest.skip("float32 without rescaling underflows on large trees")
    seed = 2 * CASES.index(case) + rescale
    schedule, matrices, frequencies, tip_codes, table, grad_site = problem(
        n_taxa, n_topologies, n_samples, n_categories, n_patterns, dtype, seed, shape)
    args = (schedule, matrices, frequencies, tip_codes, table, rescale)
    reference = _Kernel(*args, keep=True)
    fused = cpu_kernel.CpuKernel(*args, keep=True)
    site = fused.forward()
    expected_site = reference.forward()
    assert_close(site, expected_site, dtype)
    assert_close(fused.log_scale, reference.log_scale, dtype)
    if not rescale:
        assert (fused.log_scale == 0).all()
    # Likelihood only: no partials kept, same numbers.
    light = cpu_kernel.CpuKernel(*args, keep=False)
    assert_close(light.forward(), expected_site, dtype)
    assert_close(light.log_scale, reference.log_scale, dtype)
    grad_matrices, grad_frequencies = fused.backward(grad_site)
    expected_matrices, expected_frequencies = reference.backward(grad_site)
    assert grad_matrices.shape == matrices.shape
    assert_close(grad_matrices, expected_matrices, dtype)
    assert_close(grad_frequencies, expected_frequencies, dtype)


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_kernel_does_not_depend_on_threads(threads):
    schedule, matrices, frequencies, tip_codes, table, grad_site = problem(
        20, 3, 2, 4, 300, torch.float64, 11)
    args = (schedule, matrices, frequencies, tip_codes, table, True)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_kernel.CpuKernel(*args, keep=True)
        site_one = one.forward()
        grads_one = one.backward(grad_site)
        torch.set_num_threads(threads)
        many = cpu_kernel.CpuKernel(*args, keep=True)
        site_many = many.forward()
        grads_many = many.backward(grad_site)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(site_one, site_many)
    assert torch.equal(one.log_scale, many.log_scale)
    torch.testing.assert_close(grads_many, grads_one, rtol=1e-14, atol=0)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prune_dispatches_to_the_cpu_kernel_with_the_same_gradients(monkeypatch, dtype):
    schedule, matrices, frequencies, tip_codes, table, grad_site = problem(
        10, 2, 3, 4, 90, dtype, 5)

    def run():
        m = matrices.clone().requires_grad_()
        f = frequencies.clone().requires_grad_()
        site, log_scale = prune(schedule, m, f, tip_codes, table, True)
        (site * grad_site).sum().backward()
        return site.detach(), log_scale, m.grad, f.grad

    fused = run()
    monkeypatch.setenv("PHYLOVI_KERNEL", "torch")
    assert not cpu_kernel.available()
    assert cpu_kernel.unavailable_reason() == "PHYLOVI_KERNEL=torch"
    reference = run()
    for actual, expected in zip(fused, reference):
        assert_close(actual, expected, dtype)


def test_compile_failure_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("PHYLOVI_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "phylovi-no-such-compiler")
    with pytest.raises(RuntimeError, match="no C compiler"):
        cpu_kernel._compile()
