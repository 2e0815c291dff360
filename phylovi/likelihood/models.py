"""Reversible 4-state nucleotide substitution models (JC69 to GTR).

Every model is a GTR parameterisation: six exchangeabilities in the order
AC, AG, AT, CG, CT, GT and four base frequencies in the order A, C, G, T. The
rate matrix is normalised to one expected substitution per site, so branch
lengths are in substitutions per site.
"""

from __future__ import annotations

import torch

from phylovi.errors import ModelError

_EIGENSYSTEMS: dict = {}  # SubstitutionModel.eigensystem's cache
_IDENTITY: dict = {}  # from_spectrum's flattened 4 x 4 identity, by dtype and device

_SMALLEST_FREQUENCY = 1e-12  # see SubstitutionModel._spectral

# Position of each exchangeability in the upper triangle of the 4x4 matrix.
_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


class SubstitutionModel:
    """A time-reversible model given by exchangeabilities and base frequencies.

    Args:
        exchangeabilities: ``[6]`` AC, AG, AT, CG, CT, GT (any positive scale).
        frequencies: ``[4]`` A, C, G, T, positive, summing to one.
        name: IQ-TREE-style name, for reports.

    Parameters may be tensors that require gradients; the likelihood then
    differentiates through them.
    """

    def __init__(self, exchangeabilities: torch.Tensor, frequencies: torch.Tensor,
                 name: str = "GTR"):
        self.exchangeabilities = exchangeabilities
        self.frequencies = frequencies
        self.name = name

    @property
    def requires_grad(self) -> bool:
        return self.exchangeabilities.requires_grad or self.frequencies.requires_grad

    @property
    def is_f81(self) -> bool:
        """Whether ``P(t) = e I + 1 w^T`` for every value of the free parameters (JC69,
        F81): all exchangeabilities equal and fixed, so only ``t`` and the frequencies
        move ``P``, and only within that family."""
        if self.exchangeabilities.requires_grad:
            return False
        values = self.exchangeabilities.detach().reshape(-1).tolist()  # cheaper than tensor ops
        return min(values) == max(values)

    def rate_matrix(self) -> torch.Tensor:
        """The normalised rate matrix ``Q`` ``[4, 4]``, rows summing to zero."""
        return _rate_matrix(self.exchangeabilities, self.frequencies)

    def transition_matrices(self, times: torch.Tensor) -> torch.Tensor:
        """``P(t) = exp(Q t)`` for a tensor of times ``[*batch]`` -> ``[*batch, 4, 4]``.

        From the eigendecomposition of the symmetrised rate matrix, differentiable in
        ``t`` and, when a parameter requires a gradient, in ``Q`` too (through
        :class:`_SpectralExp`, whose derivative holds for repeated eigenvalues as well).
        """
        if self.requires_grad:
            # Q exactly as _spectral decomposes it (frequencies clamped and normalised), so
            # that its gradient is that of the matrices computed
            pi = self.frequencies.to(device=times.device, dtype=torch.float64)
            pi = pi.clamp(min=_SMALLEST_FREQUENCY)
            q = _rate_matrix(self.exchangeabilities.to(pi), pi / pi.sum())
            left, eigenvalues, right, products = self._spectral(torch.float64, times.device)
            flat = _SpectralExp.apply(q, times.reshape(-1).to(torch.float64), left, eigenvalues,
                                      right, products)
            return flat.to(times.dtype).reshape(*times.shape, 4, 4)
        _, eigenvalues, _, products = self._spectral(times.dtype, times.device)
        # P_ij = sum_k left_ik right_kj exp(lambda_k t): one [N, 4] @ [4, 16] product, several
        # times faster than a batch of 4 x 4 products when N is large
        return from_spectrum(times[..., None] * eigenvalues, products).reshape(*times.shape, 4, 4)

    def eigensystem(self, dtype: torch.dtype = torch.float64, device=None):
        """``(left, eigenvalues, right)`` with ``P(t) = left @ diag(exp(eigenvalues t)) @ right``.

        From the symmetrised rate matrix, in float64, then cast. Cached by the
        parameters' values: a sampler evaluates the same model many times, and
        building and decomposing Q is most of a small tree's per-call overhead.
        """
        return self._spectral(dtype, device)[:3]

    def eigen_products(self, dtype: torch.dtype = torch.float64, device=None):
        """``(eigenvalues [4], products [4, 16])`` with ``P(t)`` flattened ``= exp(eigenvalues t)
        @ products``; cached like :meth:`eigensystem`."""
        _, eigenvalues, _, products = self._spectral(dtype, device)
        return eigenvalues, products

    def _spectral(self, dtype, device):
        """``eigensystem()`` and ``products [4, 16]``, ``products[k, 4 i + j] = left_ik right_kj``."""
        key = (tuple(self.exchangeabilities.detach().reshape(-1).tolist()),
               tuple(self.frequencies.detach().tolist()), dtype, str(device))
        cached = _EIGENSYSTEMS.get(key)
        if cached is None:
            # A base that the alignment lacks has an empirical frequency of 0, where the
            # symmetrisation below would divide by zero. Decompose the model with such
            # frequencies raised to 1e-12 instead: its matrices differ by about that much.
            pi = self.frequencies.detach().to(device=device, dtype=torch.float64)
            pi = pi.clamp(min=_SMALLEST_FREQUENCY)
            pi = pi / pi.sum()
            q = _rate_matrix(self.exchangeabilities.detach().to(pi), pi)
            root = pi.sqrt()
            symmetric = root[:, None] * q / root[None, :]
            # Estimated parameters can run off to the boundary on degenerate data (an
            # alignment of one base, say), where Q's normalisation breaks down.
            problem = None if bool(torch.isfinite(symmetric).all()) else "it is not finite"
            if problem is None:
                try:
                    eigenvalues, vectors = torch.linalg.eigh((symmetric + symmetric.T) / 2)
                except torch.linalg.LinAlgError as error:
                    problem = str(error)
            if problem is not None:
                values = ", ".join(f"{v:.6g}" for v in key[0] + key[1])
                raise ModelError(f"{self.name}: cannot decompose the rate matrix with "
                                 f"exchangeabilities and frequencies {values} ({problem}); "
                                 "fix the parameters in the model string")
            # Q's largest eigenvalue is 0 and the others are negative; rounding leaves
            # about 1e-17 there, which a branch of 1e15 or more turns into rows of P that
            # no longer sum to 1 (and log-likelihoods above 0). eigh sorts them ascending.
            eigenvalues = eigenvalues.clamp(max=0.0)
            eigenvalues[-1] = 0.0
            left = vectors / root[:, None]  # diag(pi^-1/2) U
            right = vectors.T * root[None, :]  # U^T diag(pi^1/2)
            products = (left.T[:, :, None] * right[:, None, :]).reshape(4, 16)
            cached = tuple(t.to(dtype) for t in (left, eigenvalues, right, products))
            if len(_EIGENSYSTEMS) >= 64:
                _EIGENSYSTEMS.clear()
            _EIGENSYSTEMS[key] = cached
        return cached

    def __repr__(self) -> str:
        return f"SubstitutionModel({self.name})"


def _rate_matrix(r: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """Q from exchangeabilities ``r`` [6] and frequencies ``pi`` [4], normalised to one
    expected substitution per unit time."""
    sym = torch.zeros(4, 4, dtype=r.dtype, device=r.device)
    rows = torch.tensor([i for i, _ in _PAIRS], device=r.device)
    cols = torch.tensor([j for _, j in _PAIRS], device=r.device)
    sym = sym.index_put((rows, cols), r).index_put((cols, rows), r)
    off = sym * pi[None, :]
    q = off - torch.diag(off.sum(-1))
    rate = (pi * off.sum(-1)).sum()
    return q / rate


def from_spectrum(exponents: torch.Tensor, products: torch.Tensor) -> torch.Tensor:
    """Flattened ``P = sum_k exp(x_k) E_k`` ``[N, 16]`` from exponents ``x = lambda t``
    ``[..., K]`` and ``products`` ``[K, 16]`` (the E_k, which sum to the identity; or
    :func:`compact_spectrum`'s fewer terms).

    Written as ``I + sum_k expm1(x_k) E_k``: at t = 0 that is exactly the identity,
    so a zero-length branch between different sequences gives a likelihood of exactly
    0, not rounding noise of 1e-16; and a short branch keeps its off-diagonal
    probabilities (about q_ij t) to full relative precision.
    """
    key = (products.dtype, products.device)
    if key not in _IDENTITY:
        _IDENTITY[key] = torch.eye(4, dtype=products.dtype, device=products.device).reshape(16)
    return torch.addmm(_IDENTITY[key], torch.expm1(exponents).reshape(-1, products.shape[0]),
                       products)


class _SpectralExp(torch.autograd.Function):
    """``P_m = exp(Q t_m)`` ``[N, 4, 4]`` from Q's eigensystem ``left diag(lambda) right``
    (float64), with the derivatives in ``t`` and in ``Q``.

    In this basis the derivative of ``exp(Q t)`` is ``dP = left ((right dQ left) * Phi) right``
    with ``Phi_ij = (exp(lambda_i t) - exp(lambda_j t)) / (lambda_i - lambda_j)``
    (``t exp(lambda_i t)`` where they are equal), so the gradient of all N matrices is
    ``dQ = right^T (sum_m (left^T G_m right^T) * Phi_m) left^T``: a few batched 4 x 4
    products, where autograd through ``matrix_exp`` differentiated a Pade approximant of
    every 8 x 8 block matrix (most of a model-fitting step's time).
    """

    @staticmethod
    def forward(ctx, q, times, left, eigenvalues, right, products):
        matrices = from_spectrum(times[:, None] * eigenvalues, products).reshape(-1, 4, 4)
        ctx.save_for_backward(times, left, eigenvalues, right, products, matrices)
        return matrices

    @staticmethod
    def backward(ctx, grad):
        times, left, eigenvalues, right, products, matrices = ctx.saved_tensors
        grad_q = grad_times = None
        if ctx.needs_input_grad[1]:  # dP/dt = Q P
            q = (eigenvalues @ products).reshape(4, 4)
            grad_times = (grad * (q @ matrices)).sum((-1, -2))
        if ctx.needs_input_grad[0]:
            t = times[:, None, None]
            high = torch.maximum(eigenvalues[:, None], eigenvalues[None, :])
            gap = (eigenvalues[:, None] - eigenvalues[None, :]).abs()
            # (exp(a t) - exp(b t)) / (a - b) = exp(max t) (1 - exp(-|a - b| t)) / |a - b|,
            # which neither overflows nor cancels
            safe = torch.where(gap > 0, gap, torch.ones_like(gap))
            ratio = torch.where(gap > 0, -torch.expm1(-gap * t) / safe, t.expand(-1, 4, 4))
            phi = torch.exp(high * t) * ratio
            inner = left.T @ grad @ right.T  # [N, 4, 4]
            grad_q = right.T @ (inner * phi).sum(0) @ left.T
        return grad_q, grad_times, None, None, None, None


def compact_spectrum(eigenvalues: torch.Tensor, products: torch.Tensor,
                     tolerance: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """The terms of :func:`from_spectrum` that are not always zero: without the zero
    eigenvalue (``expm1(0 t) = 0``) and with equal eigenvalues merged (their ``E_k``
    summed), so the same ``P`` takes one term instead of four for JC and F81, two for
    K2P, three for HKY, TN and GTR. Eigenvalues within ``tolerance`` times the largest
    one's size of zero or of each other count as such."""
    values = eigenvalues.tolist()
    scale = max(abs(value) for value in values)
    groups: list[list[int]] = []
    for k, value in enumerate(values):
        if abs(value) <= tolerance * scale:
            continue
        group = next((g for g in groups if abs(values[g[0]] - value) <= tolerance * scale), None)
        if group is None:
            groups.append([k])
        else:
            group.append(k)
    if not groups:  # Q = 0: P is the identity, which one zero term gives
        return eigenvalues[:1] * 0, products[:1] * 0
    merged = torch.stack([eigenvalues[g].mean() for g in groups])
    return merged, torch.stack([products[g].sum(0) for g in groups])


def gtr(exchangeabilities, frequencies, name: str = "GTR") -> SubstitutionModel:
    """GTR from six exchangeabilities (or five, with GT = 1) and four frequencies."""
    r = torch.as_tensor(exchangeabilities, dtype=torch.float64) if not torch.is_tensor(
        exchangeabilities) else exchangeabilities
    if r.shape[-1] == 5:
        r = torch.cat([r, torch.ones(1, dtype=r.dtype, device=r.device)])
    pi = frequencies if torch.is_tensor(frequencies) else torch.as_tensor(
        frequencies, dtype=r.dtype, device=r.device)
    return SubstitutionModel(r, pi, name)
