"""The batched pruning kernel: many topologies x many branch-length samples per call.

Shapes (the one place they are documented; every other docstring refers here):

- ``B`` topologies over one taxon set, ``S`` branch-length samples for each,
  ``C`` rate categories, ``P`` site patterns, 4 states (A, C, G, T).
- branch lengths: ``[B, S, n_edges]`` in each topology's edge order
  (:mod:`phylovi.trees.batch`).
- transition matrices: ``[B * n_edges, S, C, 4, 4]``, row ``b * n_edges + e``
  for edge ``e`` of topology ``b``; ``P[i, j]`` is the probability of ``i -> j``.
- tip data: 4-bit state codes ``[n_taxa, P]`` (A=1, C=2, G=4, T=8, so IUPAC
  ambiguity is a union of bits) and the code table ``[16, 4]``.
- partials: ``[slot, S, C, P, 4]``, one slot per internal node of every
  topology in the batch. Slots are laid out level by level (a node's level is
  its height above the tips), so one level of all topologies is one
  contiguous block computed by a handful of batched tensor operations; the
  roots come last, one slot per topology.
- results: site likelihoods per category ``[B, S, C, P]`` and log scale
  factors ``[B, S, P]``; the true site likelihood of category ``c`` is
  ``exp(log_scale) * site[c]``.

Partials are rescaled by their maximum over categories and states at every
node when ``rescale`` is on (needed in float32 and for very large trees in
float64), and the logarithms of those factors are accumulated per pattern.

The gradient is analytic: a pre-order pass from the root computes, for every
edge, the derivative with respect to its transition matrix (Ji et al. 2020,
"Gradients do grow on trees"; BEAGLE 4). Autograd then carries it to branch
lengths and model parameters through ``P = exp(Q t r)``.

Two implementations share these semantics. The torch one below is the
reference and runs on any device (CUDA included). On CPU,
:mod:`phylovi.likelihood.cpu_kernel` runs the same passes in fused C/OpenMP
loops and, for the total log-likelihood, computes the value and its gradient
in one pass per (tree, sample, block of patterns) without storing partials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from phylovi.trees.batch import TopologyBatch


@dataclass(frozen=True)
class ChildGroup:
    """Children whose contributions ``P_e @ partial`` form one block, tips first.

    Attributes:
        tip_taxa: ``[n_tips]`` taxon of each tip child.
        tip_edges: ``[n_tips]`` global edge row of each tip child.
        slots: ``[n_internal]`` partials slot of each internal child.
        edges: ``[n_internal]`` global edge row of each internal child.
    """

    tip_taxa: torch.Tensor
    tip_edges: torch.Tensor
    slots: torch.Tensor
    edges: torch.Tensor

    @property
    def size(self) -> int:
        return len(self.tip_taxa) + len(self.slots)

    def to(self, device) -> "ChildGroup":
        return ChildGroup(*(t.to(device) for t in (self.tip_taxa, self.tip_edges, self.slots,
                                                    self.edges)))


@dataclass(frozen=True)
class Level:
    """Parents in slots ``start:stop`` whose children all lie below them."""

    start: int
    stop: int
    left: ChildGroup
    right: ChildGroup
    topology: torch.Tensor  # [stop - start] topology of each parent

    def to(self, device) -> "Level":
        return Level(self.start, self.stop, self.left.to(device), self.right.to(device),
                     self.topology.to(device))


@dataclass(frozen=True)
class Schedule:
    """The order of work for one :class:`TopologyBatch` (see the module docstring).

    Attributes:
        levels: non-root internal nodes, level by level.
        roots: for each of the root's 3 children, a tips-first group and
            ``order``, the permutation that puts that group into topology order.
        n_slots: number of partials slots, roots included.
    """

    n_topologies: int
    n_edges: int
    n_slots: int
    levels: tuple[Level, ...]
    roots: tuple[tuple[ChildGroup, torch.Tensor], ...]

    def to(self, device) -> "Schedule":
        return Schedule(self.n_topologies, self.n_edges, self.n_slots,
                        tuple(level.to(device) for level in self.levels),
                        tuple((g.to(device), o.to(device)) for g, o in self.roots))


def build_schedule(batch: TopologyBatch) -> Schedule:
    """Lay out a batch's internal nodes as levels of slots (cached on the batch)."""
    if "schedule" in batch.cache:
        return batch.cache["schedule"]
    n_taxa, n_edges = batch.n_taxa, batch.n_edges
    by_level: dict[int, list[tuple[int, int, int, int]]] = {}
    roots = []
    for b, arrays in enumerate(batch.arrays()):
        for row, kids in enumerate(arrays.children):
            node = n_taxa + row
            if node == arrays.root:
                roots.append((b, kids))
                continue
            left, right = sorted(kids[:2], key=lambda k: k >= n_taxa)  # a tip goes left
            by_level.setdefault(int(arrays.height[node]), []).append((b, node, left, right))
    slot_of: dict[tuple[int, int], int] = {}
    levels = []
    for height in sorted(by_level):
        # Both-tips parents first, then one-tip, then none: tips stay at the front.
        parents = sorted(by_level[height], key=lambda p: int(p[2] >= n_taxa) + int(p[3] >= n_taxa))
        start = len(slot_of)
        for b, node, _, _ in parents:
            slot_of[b, node] = len(slot_of)
        left = _group([(p[0], p[2]) for p in parents], n_taxa, n_edges, slot_of)
        right = _group([(p[0], p[3]) for p in parents], n_taxa, n_edges, slot_of)
        topology = torch.tensor([p[0] for p in parents], dtype=torch.long)
        levels.append(Level(start, len(slot_of), left, right, topology))
    root_groups = []
    for j in range(3):
        children = [(b, int(kids[j])) for b, kids in roots]
        order = sorted(range(len(children)), key=lambda i: children[i][1] >= n_taxa)
        group = _group([children[i] for i in order], n_taxa, n_edges, slot_of)
        root_groups.append((group, torch.tensor(np.argsort(order), dtype=torch.long)))
    schedule = Schedule(len(batch), n_edges, len(slot_of) + len(batch), tuple(levels),
                        tuple(root_groups))
    batch.cache["schedule"] = schedule
    return schedule


def _group(children, n_taxa, n_edges, slot_of) -> ChildGroup:
    """``children`` are (topology, node) pairs, tips already before internal nodes."""
    tips = [(b, c) for b, c in children if c < n_taxa]
    inner = [(b, c) for b, c in children if c >= n_taxa]
    assert children == tips + inner
    long = torch.long
    return ChildGroup(
        torch.tensor([c for _, c in tips], dtype=long),
        torch.tensor([b * n_edges + c for b, c in tips], dtype=long),
        torch.tensor([slot_of[b, c] for b, c in inner], dtype=long),
        torch.tensor([b * n_edges + c for b, c in inner], dtype=long))


class _Kernel:
    """One evaluation's tensors, shared by the forward and backward passes."""

    def __init__(self, schedule, matrices, frequencies, tip_codes, code_table, rescale, keep):
        self.schedule = schedule
        self.matrices = matrices  # [B * n_edges, S, C, 4, 4]
        self.frequencies = frequencies
        self.tip_codes = tip_codes
        self.code_table = code_table
        self.rescale = rescale
        _, n_samples, n_categories, _, _ = matrices.shape
        self.shape = (n_samples, n_categories, tip_codes.shape[1], 4)
        like = dict(dtype=matrices.dtype, device=matrices.device)
        self.partials = torch.empty((schedule.n_slots, *self.shape), **like)
        self.log_scale = torch.zeros((schedule.n_topologies, n_samples, self.shape[2]), **like)
        self.scales = torch.ones((schedule.n_slots, n_samples, self.shape[2]), **like)
        # The two children's contributions of every slot, kept for the gradient.
        self.keep = keep
        if keep:
            self.left = torch.empty_like(self.partials)
            self.right = torch.empty_like(self.partials)

    def contributions(self, group: ChildGroup, out: torch.Tensor) -> torch.Tensor:
        """``out[i] = partial_i @ P_e(i)^T`` for each child of ``group``, tips first."""
        n_tips = len(group.tip_taxa)
        if n_tips:
            # A tip's partial is one of 16 code vectors: transform the table, then pick.
            table = self.code_table @ self.matrices[group.tip_edges].transpose(-1, -2)
            index = self.tip_codes[group.tip_taxa][:, None, None, :, None]
            torch.gather(table, -2, index.expand(n_tips, *self.shape), out=out[:n_tips])
        if len(group.slots):
            torch.matmul(self.partials[group.slots],
                         self.matrices[group.edges].transpose(-1, -2), out=out[n_tips:])
        return out

    def store(self, start: int, stop: int, product: torch.Tensor, topology: torch.Tensor):
        """Write parents' partials (rescaled when asked) into their slots."""
        if self.rescale:
            scale = product.amax(dim=(2, 4))  # [k, S, P]
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            product = product / scale[:, :, None, :, None]
            self.scales[start:stop] = scale
            self.log_scale.index_add_(0, topology, scale.log())
        self.partials[start:stop] = product

    def forward(self) -> torch.Tensor:
        empty = lambda k: torch.empty((k, *self.shape), dtype=self.partials.dtype,  # noqa: E731
                                      device=self.partials.device)
        for level in self.schedule.levels:
            k = level.stop - level.start
            left = self.left[level.start:level.stop] if self.keep else empty(k)
            right = self.right[level.start:level.stop] if self.keep else empty(k)
            self.contributions(level.left, left)
            self.contributions(level.right, right)
            self.store(level.start, level.stop, left * right, level.topology)
        n_topologies = self.schedule.n_topologies
        roots = self.root_contributions()
        root_start = self.schedule.n_slots - n_topologies
        self.store(root_start, self.schedule.n_slots, roots[0] * roots[1] * roots[2],
                   torch.arange(n_topologies, device=self.partials.device))
        root = self.partials[root_start:]
        return root @ self.frequencies.to(root.dtype)  # [B, S, C, P]

    def root_contributions(self) -> list[torch.Tensor]:
        n_topologies = self.schedule.n_topologies
        out = []
        for group, order in self.schedule.roots:
            sorted_ = self.contributions(group, torch.empty(
                (n_topologies, *self.shape), dtype=self.partials.dtype,
                device=self.partials.device))
            out.append(sorted_[order])
        return out

    def backward(self, grad_site: torch.Tensor):
        """Gradients with respect to the transition matrices and the root frequencies."""
        schedule = self.schedule
        grad_matrices = torch.zeros_like(self.matrices)
        upper = torch.zeros_like(self.partials)  # d loss / d partials, slot by slot
        root_start = schedule.n_slots - schedule.n_topologies
        root = self.partials[root_start:]
        grad_frequencies = torch.einsum("bscp,bscpk->k", grad_site, root)
        upper_root = grad_site[..., None] * self.frequencies / self.scales[root_start:, :, None, :, None]
        roots = self.root_contributions()
        for j, (group, order) in enumerate(self.schedule.roots):
            others = [roots[i] for i in range(3) if i != j]
            message = upper_root * others[0] * others[1]
            inverse = torch.empty_like(order)
            inverse[order] = torch.arange(len(order), device=order.device)
            self.push_down(group, message[inverse], grad_matrices, upper)
        for level in reversed(schedule.levels):
            above = upper[level.start:level.stop] / self.scales[level.start:level.stop, :, None, :, None]
            self.push_down(level.left, above * self.right[level.start:level.stop],
                           grad_matrices, upper)
            self.push_down(level.right, above * self.left[level.start:level.stop],
                           grad_matrices, upper)
        return grad_matrices, grad_frequencies

    def push_down(self, group: ChildGroup, message, grad_matrices, upper):
        """Given d loss / d contribution of each child, accumulate d loss / d P_e and
        the children's own d loss / d partial."""
        n_tips = len(group.tip_taxa)
        if n_tips:
            index = self.tip_codes[group.tip_taxa][:, None, None, :, None]
            per_code = torch.zeros((n_tips, *self.shape[:2], 16, 4), dtype=message.dtype,
                                   device=message.device)
            per_code.scatter_add_(-2, index.expand(n_tips, *self.shape), message[:n_tips])
            grad_matrices.index_add_(0, group.tip_edges,
                                     per_code.transpose(-1, -2) @ self.code_table)
        if len(group.slots):
            inner = message[n_tips:]
            grad_matrices.index_add_(0, group.edges,
                                     inner.transpose(-1, -2) @ self.partials[group.slots])
            upper[group.slots] = inner @ self.matrices[group.edges]


class _Pruning(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrices, frequencies, schedule, tip_codes, code_table, rescale):
        kernel = _Kernel(schedule, matrices, frequencies, tip_codes, code_table, rescale,
                         keep=True)
        site = kernel.forward()
        ctx.kernel = kernel
        ctx.mark_non_differentiable(kernel.log_scale)
        return site, kernel.log_scale

    @staticmethod
    def backward(ctx, grad_site, _grad_log_scale):
        kernel = ctx.kernel
        grad_matrices, grad_frequencies = kernel.backward(grad_site)
        return grad_matrices, grad_frequencies, None, None, None, None


def prune(schedule: Schedule, matrices: torch.Tensor, frequencies: torch.Tensor,
          tip_codes: torch.Tensor, code_table: torch.Tensor, rescale: bool):
    """Site likelihoods per category ``[B, S, C, P]`` and log scale factors ``[B, S, P]``.

    Args:
        schedule: from :func:`build_schedule`, on the matrices' device.
        matrices: ``[B * n_edges, S, C, 4, 4]`` transition matrices.
        frequencies: ``[4]`` root (stationary) frequencies.
        tip_codes: ``[n_taxa, P]`` int64 state codes.
        code_table: ``[16, 4]`` partial vector of each code, matrices' dtype.
        rescale: rescale partials at every node (see the module docstring).
    """
    needs_grad = torch.is_grad_enabled() and (matrices.requires_grad
                                              or frequencies.requires_grad)
    if needs_grad:
        return _Pruning.apply(matrices, frequencies, schedule, tip_codes, code_table, rescale)
    kernel = _Kernel(schedule, matrices, frequencies, tip_codes, code_table, rescale, keep=False)
    return kernel.forward(), kernel.log_scale
