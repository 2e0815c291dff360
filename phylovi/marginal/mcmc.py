"""Batched Hamiltonian Monte Carlo over log branch lengths, one tempered chain per row,
with replica exchange between neighbouring rows.

Every chain (a temperature of a ladder, or an independent replicate) is a
row of one ``[C, n_edges]`` batch, so a leapfrog step is one kernel call for
all of them. Chain ``c`` targets ``β_c A(x) + B(x)``: A is the tempered part
(the log-likelihood of a power posterior) and B the rest (prior, Jacobian,
reference). Each chain has its own step size and diagonal mass matrix.
Because both parts and their gradients are kept, two chains can exchange
their states (:func:`swap`) without evaluating anything again.

``init(position, log_density, betas, ...) -> HMCState`` and ``step(state,
log_density, n_leapfrog, generator) -> (HMCState, HMCInfo)``, where
``log_density`` maps positions ``[C, n_edges]`` to ``(A [C], B [C], recorded
values [C, k])``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

LogDensity = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class HMCState(NamedTuple):
    position: torch.Tensor          # [C, E] log branch lengths
    tempered: torch.Tensor          # [C] A(x)
    base: torch.Tensor              # [C] B(x)
    tempered_gradient: torch.Tensor  # [C, E]
    base_gradient: torch.Tensor     # [C, E]
    recorded: torch.Tensor          # [C, k] e.g. log-likelihood, log prior
    betas: torch.Tensor             # [C]
    step_size: torch.Tensor         # [C]
    inverse_mass: torch.Tensor      # [C, E]

    @property
    def log_density(self) -> torch.Tensor:
        return _combine(self.betas, self.tempered, self.base)

    @property
    def gradient(self) -> torch.Tensor:
        return self.betas.unsqueeze(-1) * self.tempered_gradient + self.base_gradient


class HMCInfo(NamedTuple):
    accepted: torch.Tensor       # [C] bool
    acceptance: torch.Tensor     # [C] Metropolis acceptance probability
    proposed: torch.Tensor       # [C, k] the recorded values at the proposal


# Log branch lengths beyond this are a diverged trajectory (lengths of e^±30).
_BOUND = 30.0


def _combine(betas, tempered, base):
    # A diverged point has A = 0 and B = -inf, so that β = 0 gives -inf too, not NaN.
    return betas * tempered + base


def evaluate(log_density: LogDensity, position: torch.Tensor):
    """A, B, their gradients and the recorded values at ``position`` ``[C, E]``.

    A row that has left the finite region (a diverged leapfrog trajectory)
    gets B = -inf and zero gradients, so its proposal is rejected.
    """
    bad = ~(torch.isfinite(position) & (position.abs() < _BOUND)).all(-1)
    safe = torch.where(bad.unsqueeze(-1), torch.zeros_like(position), position)
    point = safe.detach().requires_grad_(True)
    tempered, base, recorded = log_density(point)
    # The expensive backward pass (through the likelihood) runs once, for A.
    (grad_a,) = torch.autograd.grad(tempered.sum(), point, retain_graph=True)
    (grad_b,) = torch.autograd.grad(base.sum(), point)
    bad = (bad | ~torch.isfinite(tempered) | ~torch.isfinite(base)
           | ~torch.isfinite(grad_a).all(-1) | ~torch.isfinite(grad_b).all(-1))
    tempered = torch.where(bad, torch.zeros_like(tempered), tempered.detach())
    base = torch.where(bad, torch.full_like(base, -torch.inf), base.detach())
    grad_a = torch.where(bad.unsqueeze(-1), torch.zeros_like(grad_a), grad_a)
    grad_b = torch.where(bad.unsqueeze(-1), torch.zeros_like(grad_b), grad_b)
    return tempered, base, grad_a, grad_b, recorded.detach()


def init(position: torch.Tensor, log_density: LogDensity, betas: torch.Tensor,
         step_size: torch.Tensor, inverse_mass: torch.Tensor) -> HMCState:
    return HMCState(position.detach(), *evaluate(log_density, position), betas, step_size,
                    inverse_mass)


def step(state: HMCState, log_density: LogDensity, n_leapfrog: int,
         generator: torch.Generator | None = None) -> tuple[HMCState, HMCInfo]:
    """One HMC transition of every chain (``n_leapfrog`` leapfrog steps)."""
    x, grad = state.position, state.gradient
    betas = state.betas
    eps = state.step_size.unsqueeze(-1)
    inv_mass = state.inverse_mass
    momentum = torch.randn(x.shape, generator=generator, dtype=x.dtype) / inv_mass.sqrt()
    kinetic0 = 0.5 * (momentum**2 * inv_mass).sum(-1)
    p = momentum + 0.5 * eps * grad
    for i in range(n_leapfrog):
        x = x + eps * inv_mass * p
        parts = evaluate(log_density, x)
        grad = betas.unsqueeze(-1) * parts[2] + parts[3]
        if i < n_leapfrog - 1:
            p = p + eps * grad
    p = p + 0.5 * eps * grad
    kinetic1 = 0.5 * (p**2 * inv_mass).sum(-1)
    log_ratio = _combine(betas, parts[0], parts[1]) - kinetic1 - state.log_density + kinetic0
    log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -torch.inf))
    acceptance = log_ratio.clamp(max=0).exp()
    accepted = torch.rand(acceptance.shape, generator=generator, dtype=x.dtype) < acceptance
    new = _select(accepted, (x, *parts), state)
    return new, HMCInfo(accepted, acceptance, parts[4])


def _select(accepted: torch.Tensor, proposed: tuple, state: HMCState) -> HMCState:
    """The state with the moving parts of each accepted row taken from ``proposed``."""
    current = (state.position, state.tempered, state.base, state.tempered_gradient,
               state.base_gradient, state.recorded)
    chosen = [torch.where(accepted.view(-1, *([1] * (new.dim() - 1))), new, old)
              for new, old in zip(proposed, current)]
    return state._replace(position=chosen[0], tempered=chosen[1], base=chosen[2],
                          tempered_gradient=chosen[3], base_gradient=chosen[4],
                          recorded=chosen[5])


def swap(state: HMCState, parity: int, generator: torch.Generator | None = None
         ) -> tuple[HMCState, torch.Tensor]:
    """Replica exchange between rows (i, i+1) for every i of the given parity
    (see :func:`exchange_order`). Step sizes and mass matrices stay with their
    row (their temperature). Returns the new state and, for each pair, whether
    it exchanged.
    """
    order, exchanged = exchange_order(state.betas, state.tempered, parity, generator)
    moved = state._replace(position=state.position[order], tempered=state.tempered[order],
                           base=state.base[order], tempered_gradient=state.tempered_gradient[order],
                           base_gradient=state.base_gradient[order], recorded=state.recorded[order])
    return moved, exchanged


def exchange_order(betas: torch.Tensor, tempered: torch.Tensor, parity: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows take which states in one round of replica exchange.

    Rows (i, i+1), for every i of the given parity, exchange states with probability
    min(1, exp((β_{i+1} - β_i)(A_i - A_{i+1}))), which leaves every chain's target
    β A + B invariant. Alternating the parity from one round to the next (the
    deterministic even-odd scheme) carries states along the ladder in O(C) rounds
    rather than O(C²). Returns the permutation of rows (``new = old[order]``) and,
    for each pair, whether it exchanged.
    """
    lower = torch.arange(parity, len(betas) - 1, 2)
    upper = lower + 1
    log_ratio = (betas[upper] - betas[lower]) * (tempered[lower] - tempered[upper])
    log_ratio = torch.where(torch.isnan(log_ratio), torch.full_like(log_ratio, -torch.inf), log_ratio)
    uniform = torch.rand(log_ratio.shape, generator=generator, dtype=log_ratio.dtype)
    exchanged = uniform.log() < log_ratio
    order = torch.arange(len(betas))
    order[lower[exchanged]] = upper[exchanged]
    order[upper[exchanged]] = lower[exchanged]
    return order, exchanged


class StepSizeAdaptation:
    """Dual averaging of each chain's log step size towards a target acceptance
    (Hoffman & Gelman 2014, section 3.2, with their constants).

    ``update(acceptance)`` returns the step size to use next; ``final()`` the
    averaged step size to sample with once warm-up is over. ``restart`` begins
    a new window (after the mass matrix changes) from the current step size.
    """

    def __init__(self, step_size: torch.Tensor, target: float):
        self.target = target
        self.restart(step_size)

    def restart(self, step_size: torch.Tensor) -> None:
        # mu = log(10 eps) biases early steps upwards, so a too-small start recovers quickly.
        self.mu = torch.log(10 * step_size)
        self.error = torch.zeros_like(step_size)
        self.log_average = torch.zeros_like(step_size)
        self.count = 0

    def update(self, acceptance: torch.Tensor) -> torch.Tensor:
        self.count += 1
        m = self.count
        self.error += (self.target - acceptance - self.error) / (m + 10)
        log_step = self.mu - math.sqrt(m) / 0.05 * self.error
        weight = m ** -0.75
        self.log_average = weight * log_step + (1 - weight) * self.log_average
        return log_step.exp()

    def final(self) -> torch.Tensor:
        return self.log_average.exp()


def jittered(state: HMCState, generator: torch.Generator | None, spread: float = 0.2) -> HMCState:
    """The state with each chain's step size scaled by a random factor in [e^-spread, e^spread].

    Jitter keeps a fixed number of leapfrog steps from falling into a
    periodic orbit of the target.
    """
    u = torch.rand(state.step_size.shape, generator=generator, dtype=state.step_size.dtype)
    return state._replace(step_size=state.step_size * torch.exp(spread * (2 * u - 1)))


def effective_sample_size(values: torch.Tensor) -> torch.Tensor:
    """ESS of each row of ``values`` ``[C, S]`` (Geyer's initial positive sequence).

    A constant row (a chain that never moved) has ESS 1: one distinct draw.
    """
    x = values - values.mean(-1, keepdim=True)
    n = x.shape[-1]
    spectrum = torch.fft.rfft(x, n=2 * n)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=2 * n)[..., :n] / n
    rho = acov / acov[..., :1].clamp(min=torch.finfo(x.dtype).tiny)
    ess = []
    constant = values.amax(-1) == values.amin(-1)
    for row, stuck in zip(rho, constant):
        if stuck:
            ess.append(1.0)
            continue
        total = 0.0
        for lag in range(1, n - 1, 2):
            pair = float(row[lag] + row[lag + 1])
            if pair <= 0:
                break
            total += pair
        ess.append(n / max(1.0, -1.0 + 2.0 * (1.0 + total)))
    return torch.tensor(ess, dtype=values.dtype)
