"""Fused C/OpenMP tree-likelihood kernel for CPU tensors.

The C source (``cpu_kernel.c``, plain C99 + OpenMP, no torch headers) is compiled
at first use with the system ``gcc`` into a cache directory (``$PHYLOVI_CACHE`` or
``~/.cache/phylovi``), under a name keyed by a hash of the source, the compiler
flags, the compiler version and the machine, and loaded with :mod:`ctypes`. The
library is written to a temporary name and moved into place with
:func:`os.replace`, so concurrent processes may compile it at once.

It computes the semantics of :mod:`phylovi.likelihood.pruning` (same rescaling) in
one pass per (topology, sample, block of patterns): the post-order partials, each
pattern's log-likelihood with the category mixture and invariable sites, and, when
asked, the pre-order pass that gives the gradient of ``lnL[b, s]`` with respect to
that tree's own transition matrices, the frequencies and pinv. Only the block's
partials are ever held, so the gradient costs no memory beyond its result, whatever
B and S are.

:func:`available` is False (with :func:`unavailable_reason` saying why) when gcc
is missing, compilation or loading fails, or ``PHYLOVI_KERNEL=torch`` is set;
:class:`phylovi.likelihood.TreeLikelihood` then uses the torch kernel.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from phylovi.likelihood.models import from_spectrum

SOURCE = Path(__file__).with_name("cpu_kernel.c")
FLAGS = ("-std=gnu99", "-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared",
         "-fPIC")
_PAD = 8  # patterns are padded to a multiple of this (one AVX-512 double vector)
_BLOCK = os.environ.get("PHYLOVI_CPU_BLOCK")  # patterns per task, a multiple of _PAD
# Where idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE, the command line's default),
# a call with fewer partial-likelihood updates than SMALL_WORK (topologies x samples x
# internal nodes x patterns x categories) runs on one thread: waking a second costs more
# than its share of the work. On a 2-core AMD EPYC, one-tree calls on one thread against
# two: sim27 JC (28k updates) 7001 against 4843 per second, with the gradient 2529
# against 1944; the bundled example under GTR+G4 (48k) 2101 against 1524, 950 against
# 750. Where they spin (OpenMP's default), two threads were as fast or faster (the
# example 3486 against 3067), so the rule stays off. The runtime reads the policy once,
# at start-up, as this does.
THREADS_SLEEP = os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
SMALL_WORK = 64_000


@functools.lru_cache(maxsize=None)
def gradient_scratch(threads: int) -> int:
    """Bytes of per-task scratch a gradient pass may keep: half of the last-level
    cache's share per thread, between 2 and 8 MiB (2 MiB when the cache size is
    unknown). Measured on a 2-core AMD EPYC with 1 MiB L2 per core and 32 MiB L3,
    sim100 with gradient: JC float32 blocks of 256 patterns (3.2 MB) beat blocks of
    64 (the old fixed 2 MiB rule) by 24%, while GTR+G4 float64 blocks of 256 (12.8 MB)
    lost 35-70% against 64 or 128."""
    size = 0
    try:
        for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
            if (index / "level").read_text().strip() == "3":
                text = (index / "size").read_text().strip().upper()
                size = int(text.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(text[-1], 0)
    except (OSError, ValueError):
        size = 0
    return min(8 << 20, max(2 << 20, size // (2 * max(1, threads))))


@functools.lru_cache(maxsize=None)
def node_block_bytes() -> int:
    """Bytes of one node's partials per block (see :func:`block_size`): 16 KiB on AMD
    processors with AVX-512 (Zen 4 and later), 8 KiB elsewhere.

    On a 2-core AMD EPYC (Zen 4), GTR+G4 float64 in blocks of 128 patterns against 64
    (paired calls, 2 threads, 2026-12-07): the log-likelihood 0-12% and its gradient
    2-14% faster on sim27 and sim100 at B = 1, 10 and 100; float32's log-likelihood in
    256 against 128, 1-5%. On a 2-core Emerald Rapids Xeon, 64 had beaten 128 by 20-35%.
    JC's blocks (capped at 256 and 128 patterns) are the same under both rules: 512 and
    256 were 4-38% slower there."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 8192
    amd = "AuthenticAMD" in text
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return 16384 if amd and " avx512f" in flags else 8192


def block_size(n_categories: int, n_nodes: int, itemsize: int, gradient: bool,
               threads: int = 1) -> int:
    """Patterns per task: long loops, but scratch that stays in cache.

    A node's partials for one block, ``n_categories x 4 x block`` values, take at most
    :func:`node_block_bytes` (8 KiB, or 16 KiB on AMD's AVX-512 cores), so that the few
    buffers a node's step reads and writes stay in the L1 and L2 caches: 256 patterns at
    most without a gradient, 128 with one, at least 32. A gradient pass keeps up to three
    such buffers per node (partials and both contributions; the pre-order partials take
    only a few, see ``pv_build_plan`` in the C source): there the block halves, down to
    32, until they fit in :func:`gradient_scratch`. Measured on a 2-core Emerald Rapids
    Xeon (48 KiB L1) against the earlier 512 / n_categories patterns: GTR+G4 float64
    takes 64 instead of 128, and its gradient ran 20-30% faster (sim27 and sim100), its
    log-likelihood up to 35% (sim100); JC's gradient takes 128 instead of 256 (float64
    up to 20% faster, float32 unchanged).
    """
    if _BLOCK:
        return int(_BLOCK)
    node_bytes = n_categories * 4 * itemsize
    block = max(32, min(128 if gradient else 256,
                        node_block_bytes() // node_bytes // _PAD * _PAD))
    if gradient:
        budget = gradient_scratch(threads)
        while block > 32 and 3 * n_nodes * node_bytes * block > budget:
            block = max(32, block // 2 // _PAD * _PAD)
    return block

_lock = threading.Lock()
_library = None
_reason: str | None = None


class _Plan(ctypes.Structure):
    _fields_ = [("n_topologies", ctypes.c_int), ("n_samples", ctypes.c_int),
                ("n_categories", ctypes.c_int), ("n_patterns", ctypes.c_int),
                ("n_padded", ctypes.c_int), ("block", ctypes.c_int),
                ("split_blocks", ctypes.c_int),
                ("topo_off", ctypes.c_void_p), ("node_nch", ctypes.c_void_p),
                ("ch_ref", ctypes.c_void_p), ("ch_edge", ctypes.c_void_p),
                ("slot", ctypes.c_void_p), ("up_slot", ctypes.c_void_p)]


def cache_dir() -> Path:
    return Path(os.environ.get("PHYLOVI_CACHE") or Path.home() / ".cache" / "phylovi")


def _machine_key(compiler: str) -> str:
    version = subprocess.run([compiler, "-dumpfullversion", "-dumpversion"], capture_output=True,
                             text=True, timeout=60).stdout.strip()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                flags += line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return f"{platform.machine()}|{platform.system()}|{version}|{flags}"


def _compile() -> ctypes.CDLL:
    compiler = os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C compiler: {compiler!r} is not on PATH")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + repr(FLAGS).encode() + _machine_key(compiler).encode())
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"cpu_kernel-{key.hexdigest()[:20]}.so"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
            src = Path(tmp) / "cpu_kernel.c"  # the file includes itself by name
            src.write_bytes(source)
            out = Path(tmp) / "cpu_kernel.so"
            result = subprocess.run([compiler, *FLAGS, str(src), "-o", str(out), "-lm"],
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                raise RuntimeError(f"{compiler} failed:\n{result.stderr.strip()[-2000:]}")
            os.replace(out, target)
    library = ctypes.CDLL(str(target))
    if library.pv_version() != 12:
        raise RuntimeError("cpu_kernel library version mismatch")
    for suffix in ("f64", "f32"):
        function = getattr(library, f"pv_loglik_{suffix}")
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.POINTER(_Plan), ctypes.c_int] + [ctypes.c_void_p] * 4 + \
            [ctypes.c_double] + [ctypes.c_void_p] * 2 + [ctypes.c_int] + \
            [ctypes.c_void_p] * 4 + [ctypes.c_int] + [ctypes.c_void_p] * 4 + [ctypes.c_int]
    library.pv_build_plan.restype = ctypes.c_int
    library.pv_build_plan.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 7
    return library


def _load():
    global _library, _reason
    if _library is not None or _reason is not None:
        return _library
    with _lock:
        if _library is None and _reason is None:
            if os.environ.get("PHYLOVI_KERNEL", "").lower() == "torch":
                _reason = "PHYLOVI_KERNEL=torch"
            else:
                try:
                    _library = _compile()
                except Exception as error:  # noqa: BLE001 - any failure means: use torch
                    _reason = f"{type(error).__name__}: {error}"
    return _library


def available() -> bool:
    """Whether the compiled kernel can be used (compiles it on the first call)."""
    if os.environ.get("PHYLOVI_KERNEL", "").lower() == "torch":
        return False
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False, or None when it is True."""
    if os.environ.get("PHYLOVI_KERNEL", "").lower() == "torch":
        return "PHYLOVI_KERNEL=torch"
    _load()
    return _reason


def supports_device(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether an evaluation on ``device`` in ``dtype`` can run on this kernel."""
    return (torch.device(device).type == "cpu" and dtype in (torch.float32, torch.float64)
            and available())


# --- plans and tip codes ------------------------------------------------------------------

@dataclass(eq=False)
class NodeProgram:
    """A batch's node program for the C kernel: the arrays of ``pv_plan`` (see
    ``pv_build_plan`` in the C source), and the C plans of the calls made with it."""

    n_topologies: int
    n_edges: int
    arrays: tuple[np.ndarray, ...]  # offsets, nch, ref, edge, slots, upper_slots (int32)
    max_nodes: int  # internal nodes per topology
    plans: dict = field(default_factory=dict)


def node_program(batch) -> NodeProgram:
    """The node program of a :class:`~phylovi.trees.TopologyBatch`, built in C from the
    topologies' arrays (a few microseconds a tree) and cached on the batch."""
    program = batch.cache.get("cpu_program")
    if program is None:
        library = _load()
        assert library is not None, unavailable_reason()
        children = np.ascontiguousarray(np.stack([a.children for a in batch.arrays()]),
                                        dtype=np.int32)
        n_topologies, n_internal, _ = children.shape
        n_nodes = n_topologies * n_internal
        arrays = (np.empty(n_topologies + 1, np.int32), np.empty(n_nodes, np.int32),
                  np.empty(3 * n_nodes, np.int32), np.empty(3 * n_nodes, np.int32),
                  np.empty(n_nodes, np.int32), np.empty(n_nodes, np.int32))
        if library.pv_build_plan(n_topologies, batch.n_taxa, n_internal, batch.n_edges,
                                 children.ctypes.data, *(a.ctypes.data for a in arrays)):
            raise MemoryError("cpu_kernel: out of memory")
        program = batch.cache["cpu_program"] = NodeProgram(n_topologies, batch.n_edges, arrays,
                                                            n_internal)
    return program


def tip_planes(tip_codes: torch.Tensor, code_table: torch.Tensor) -> torch.Tensor:
    """``[n_taxa, 4, P_padded]`` tip partials as state planes, in ``code_table``'s dtype.

    Patterns are padded to a multiple of 8 with all-ambiguous tips. Build it once
    per alignment and pass it to :func:`evaluate`.
    """
    n_taxa, n_patterns = tip_codes.shape
    codes = torch.full((n_taxa, -(-n_patterns // _PAD) * _PAD), 15, dtype=torch.long)
    codes[:, :n_patterns] = tip_codes.cpu()
    return code_table.detach().cpu()[codes].transpose(1, 2).contiguous()


def tip_code_rows(tip_codes: torch.Tensor) -> torch.Tensor:
    """``[n_taxa, P_padded]`` uint8 tip codes (4-bit state masks, bit j = state j), the
    padding all-ambiguous, plus 16 bytes at the end: the kernel reads codes 8 or 16 at a
    time. With them a tip's contribution is a table lookup. Build it once per alignment."""
    n_taxa, n_patterns = tip_codes.shape
    padded = -(-n_patterns // _PAD) * _PAD
    flat = torch.full((n_taxa * padded + 16,), 15, dtype=torch.uint8)
    rows = flat[:n_taxa * padded].view(n_taxa, padded)
    rows[:, :n_patterns] = tip_codes.cpu()
    return flat


def invariant_planes(constant: torch.Tensor, padded: int, dtype: torch.dtype) -> torch.Tensor:
    """``[4, P_padded]``: 1 where every tip of the pattern allows the state (``constant``
    is ``[P, 4]``), 0 on the padding. Build it once per alignment, like the tip planes."""
    planes = torch.zeros((4, padded), dtype=dtype)
    planes[:, :constant.shape[0]] = constant.detach().cpu().T
    return planes


def _plan(program, n_samples, n_categories, n_patterns, padded, n_taxa, itemsize, gradient,
          threads):
    """The C plan of a call and its block size, kept on the node program (a sampler makes
    the same call again and again, and building the struct costs as much as a small
    tree's kernel).

    A gradient task normally owns one (topology, sample) pair over all pattern blocks,
    and so reads all the tip planes once per pair; split by block, consecutive tasks
    share a block's tip planes instead, and each thread adds into its own copy of every
    pair's gradient rows. ``split_blocks`` picks the second when the tip planes do not
    fit in :func:`gradient_scratch` and the copies do: on sim100 (24 MB of float64
    tip planes) that made JC float64 gradients 8-19% faster at B=10 and 100 and moved
    GTR+G4 at B=10 by under 3% (measured on a 2-core AVX-512 EPYC)."""
    key = (n_samples, n_categories, n_patterns, padded, n_taxa, itemsize, gradient, threads)
    plans = program.plans
    if key not in plans:
        block = block_size(n_categories, program.max_nodes, itemsize, gradient, threads)
        budget = gradient_scratch(threads)
        copies = program.n_topologies * program.n_edges * n_samples * n_categories * 16 * 8
        split = gradient and n_taxa * 4 * padded * itemsize > budget and copies <= budget
        pointers = (a.ctypes.data for a in program.arrays)
        plans[key] = (_Plan(program.n_topologies, n_samples, n_categories, n_patterns, padded,
                            block, int(split), *pointers), block)
    return plans[key]


def _ptr(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def evaluate(program, matrices, frequencies, pinv, tips, category_weights, pattern_weights,
             invariant, rescale: bool, gradient: bool = False, sites: bool = False,
             f81: bool = False, codes: torch.Tensor | None = None,
             generator: torch.Tensor | None = None, rates: torch.Tensor | None = None):
    """Log-likelihoods of every (topology, sample), and optionally more.

    Args:
        program: the batch's :func:`node_program`.
        matrices: ``[B * n_edges, S, C, 4, 4]`` transition matrices.
        frequencies: ``[4]``; pinv: proportion of invariable sites (a float or scalar).
        tips: ``[n_taxa, 4, P_padded]`` from :func:`tip_planes`, in the matrices' dtype.
        category_weights: ``[C]``; pattern_weights: ``[P]``.
        invariant: ``[4, P_padded]`` from :func:`invariant_planes`.
        rescale: rescale partials at every node.
        gradient: also return ``d lnL[b, s] / d P`` of tree ``b``'s own matrices
            ``[B * n_edges, S, C, 4, 4]`` and ``d lnL[b, s] / d (frequencies, pinv)``
            ``[B, S, 5]``.
        sites: also return each pattern's log-likelihood ``[B, S, P]``.
        f81: the model has equal exchangeabilities (JC69, F81) that do not require a
            gradient, so every matrix is ``e I + 1 w^T`` and moves only within that
            family: the kernel then takes its cheaper path, and ``jac_matrices`` is the
            gradient on that family's directions only (enough for the chain rule).
        codes: the tips as :func:`tip_code_rows`, which makes a tip's contribution in the
            post-order pass a table lookup; ``None``: computed from the planes.
        generator: ``[4, 4]``, a matrix ``Q``, with ``rates`` ``[C]`` (float64): with
            ``gradient``, ``jac_matrices`` is then only the derivative of each edge's
            matrices ``P_c`` along ``D_c = Q @ P_c``, ``sum_c rates[c] <d lnL / d P_c, D_c>``,
            ``[B, S, n_edges]`` in float64 (with ``P_c = exp(Q rates[c] t)``, ``d lnL / d t``
            in the lengths' own layout). The kernel then
            takes each edge's sums over its kept contribution ``P @ x`` instead of the
            child's partials (which it neither keeps nor rebuilds) and skips them at
            tips; with ``f81``, ``Q`` must be that model's rate matrix, and an edge
            needs one sum (``f81_dir_pair`` in the C source). With ``Q`` the rate
            matrix, ``D = dP/dt``: the branch lengths' gradient. ``jac_other`` is not
            computed.

    Returns:
        ``(lnL [B, S], sites or None, jac_matrices or None, jac_other or None)``
    """
    library = _load()
    assert library is not None, unavailable_reason()
    matrices = matrices.detach().contiguous()
    dtype = matrices.dtype
    suffix = {torch.float64: "f64", torch.float32: "f32"}[dtype]
    _, n_samples, n_categories, _, _ = matrices.shape
    n_topologies, n_patterns = program.n_topologies, pattern_weights.shape[0]
    padded = tips.shape[-1]
    threads = torch.get_num_threads()
    work = n_topologies * n_samples * program.max_nodes * padded * n_categories
    if THREADS_SLEEP and work < SMALL_WORK:
        threads = 1
    plan, block = _plan(program, n_samples, n_categories, n_patterns, padded, tips.shape[0],
                        matrices.element_size(), gradient, threads)
    as_input = lambda t: t.detach().to(dtype).contiguous()  # noqa: E731
    frequencies, category_weights = as_input(frequencies), as_input(category_weights)
    pattern_weights = as_input(pattern_weights)
    partial_sums = torch.empty((n_topologies, n_samples, -(-padded // block)), dtype=torch.float64)
    site = torch.empty((n_topologies, n_samples, n_patterns), dtype=dtype) if sites else None
    directional = gradient and generator is not None
    jac_matrices = jac_times = jac_other = None
    if directional:
        generator = generator.detach().to(dtype).contiguous()
        rates = rates.detach().to(torch.float64).contiguous()
        assert generator.shape == (4, 4) and rates.shape == (n_categories,), (generator, rates)
        jac_times = torch.empty((n_topologies, n_samples, program.n_edges), dtype=torch.float64)
    elif gradient:
        jac_matrices = torch.empty_like(matrices)
        jac_other = torch.empty((n_topologies, n_samples, 5), dtype=dtype)
    status = getattr(library, f"pv_loglik_{suffix}")(
        ctypes.byref(plan), program.n_edges, _ptr(matrices), _ptr(tips), _ptr(frequencies),
        _ptr(category_weights), float(pinv), _ptr(pattern_weights), _ptr(invariant),
        int(rescale), _ptr(partial_sums), _ptr(site), _ptr(jac_matrices), _ptr(jac_other),
        int(f81), _ptr(codes), _ptr(generator if directional else None),
        _ptr(rates if directional else None), _ptr(jac_times), threads)
    if status:
        raise MemoryError("cpu_kernel: out of memory")
    return (partial_sums.sum(-1).to(dtype), site,
            jac_times if directional else jac_matrices, jac_other)


class FusedLogLikelihood(torch.autograd.Function):
    """Log-likelihoods ``[B, S]`` whose gradient the C kernel computes in the same pass.

    Inputs: ``matrices, frequencies, pinv`` (differentiable), then the other
    arguments of :func:`evaluate` (``f81`` last). Each ``lnL[b, s]`` depends only on its own
    tree's matrices, so the backward pass scales the stored Jacobians by the
    incoming gradient: no partials are kept between the passes.
    """

    @staticmethod
    def forward(ctx, matrices, frequencies, pinv, program, tips, category_weights,
                pattern_weights, invariant, rescale, f81, codes):
        gradient = any(ctx.needs_input_grad[:3])
        value, _, jac_matrices, jac_other = evaluate(
            program, matrices, frequencies, pinv, tips, category_weights, pattern_weights,
            invariant, rescale, gradient=gradient, f81=f81, codes=codes)
        if gradient:
            ctx.save_for_backward(jac_matrices, jac_other)
        return value

    @staticmethod
    def backward(ctx, grad):
        jac_matrices, jac_other = ctx.saved_tensors
        n_topologies, n_samples = grad.shape
        grad = grad.to(jac_matrices.dtype)
        per_tree = jac_matrices.view(n_topologies, -1, n_samples, jac_matrices[0, 0].numel())
        grad_matrices = (per_tree * grad[:, None, :, None]).view_as(jac_matrices)
        grad_other = (jac_other * grad[..., None]).sum((0, 1))
        return grad_matrices, grad_other[:4], grad_other[4], *([None] * 8)


def fixed_model_log_likelihood(lengths, rates, eigenvalues, products, dtype, program,
                               frequencies, pinv, tips, category_weights, pattern_weights,
                               invariant, rescale, f81, codes=None):
    """Log-likelihoods ``[B, S]`` as a function of the branch lengths alone (the model's
    parameters fixed), from the eigen-products of the rate matrix.

    ``P(r_c t) = sum_k exp(lambda_k r_c t) E_k`` (``E_k`` the rows of ``products``), so
    ``d lnL / d t = sum_c r_c <G, D_c>`` with ``G`` the kernel's ``d lnL / d P`` and
    ``D_c = sum_k lambda_k exp(lambda_k r_c t) E_k = Q P(r_c t)``: a few tensor operations
    instead of autograd through the construction of every matrix, which is most of a small
    tree's gradient call. The kernel takes ``Q`` and the rates and returns
    ``d lnL / d t`` itself (see :func:`evaluate`).

    Args:
        lengths: ``[B, S, n_edges]``, differentiable.
        rates: ``[C]``; eigenvalues: ``[4]``; products: ``[4, 16]`` (all float64).
        dtype: the kernel's; the rest are :func:`evaluate`'s arguments after the matrices.
    """
    arguments = (lengths, rates, eigenvalues, products, dtype, program, frequencies, pinv, tips,
                 category_weights, pattern_weights, invariant, rescale, f81, codes)
    if torch.is_grad_enabled() and lengths.requires_grad:
        return _FixedModelLogLikelihood.apply(*arguments)
    return _fixed_model_forward(*arguments, gradient=False)[0]


def _fixed_model_forward(lengths, rates, eigenvalues, products, dtype, program, frequencies,
                         pinv, tips, category_weights, pattern_weights, invariant, rescale, f81,
                         codes, gradient):
    times = lengths.detach().double().transpose(1, 2)[..., None] * rates  # [B, E, S, C]
    exponents = times[..., None] * eigenvalues  # [B, E, S, C, 4]
    matrices = from_spectrum(exponents, products).to(dtype).reshape(-1, *times.shape[2:], 4, 4)
    generator = None
    if gradient:  # Q = sum_k lambda_k E_k: dP / d(r_c t) = Q P, for every matrix
        generator = (eigenvalues @ products).reshape(4, 4)
    value, _, jac, _ = evaluate(
        program, matrices, frequencies, pinv, tips, category_weights, pattern_weights, invariant,
        rescale, gradient=gradient, f81=f81, codes=codes, generator=generator, rates=rates)
    return value, jac


class _FixedModelLogLikelihood(torch.autograd.Function):
    """:func:`fixed_model_log_likelihood` with its gradient in the branch lengths."""

    @staticmethod
    def forward(ctx, lengths, rates, eigenvalues, products, *rest):
        value, jac = _fixed_model_forward(lengths, rates, eigenvalues, products, *rest,
                                          gradient=True)
        ctx.save_for_backward(jac)  # d lnL / d t  [B, S, n_edges], the lengths' layout
        ctx.lengths_dtype = lengths.dtype
        return value

    @staticmethod
    def backward(ctx, grad):
        jac, = ctx.saved_tensors
        return ((jac * grad.double()[..., None]).to(ctx.lengths_dtype), *([None] * 14))
