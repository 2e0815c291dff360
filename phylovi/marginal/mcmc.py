"""Batched Hamiltonian Monte Carlo over log branch lengths: one chain per row.

Every chain (a temperature of a ladder, or an independent replicate) is a
row of one ``[C, n_edges]`` batch, so a leapfrog step is one kernel call for
all of them. The chains share nothing but the batch: each has its own target,
step size and diagonal mass matrix.

``init(position, log_density) -> HMCState`` and ``step(state, log_density,
n_leapfrog, generator) -> (HMCState, HMCInfo)``, where ``log_density`` maps
positions ``[C, n_edges]`` to ``(log density [C], recorded values [C, k])``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

LogDensity = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class HMCState(NamedTuple):
    position: torch.Tensor       # [C, E] log branch lengths
    log_density: torch.Tensor    # [C]
    gradient: torch.Tensor       # [C, E]
    recorded: torch.Tensor       # [C, k] e.g. log-likelihood, log prior
    step_size: torch.Tensor      # [C]
    inverse_mass: torch.Tensor   # [C, E]


class HMCInfo(NamedTuple):
    accepted: torch.Tensor       # [C] bool
    acceptance: torch.Tensor     # [C] Metropolis acceptance probability


# Log branch lengths beyond this are a diverged trajectory (lengths of e^±30).
_BOUND = 30.0


def evaluate(log_density: LogDensity, position: torch.Tensor):
    """Log density, its gradient and the recorded values at ``position`` ``[C, E]``.

    A row that has left the finite region (a diverged leapfrog trajectory)
    gets log density -inf and gradient 0, so its proposal is rejected.
    """
    bad = ~(torch.isfinite(position) & (position.abs() < _BOUND)).all(-1)
    safe = torch.where(bad.unsqueeze(-1), torch.zeros_like(position), position)
    point = safe.detach().requires_grad_(True)
    value, recorded = log_density(point)
    (grad,) = torch.autograd.grad(value.sum(), point)
    bad = bad | ~torch.isfinite(value) | ~torch.isfinite(grad).all(-1)
    value = torch.where(bad, torch.full_like(value, -torch.inf), value.detach())
    grad = torch.where(bad.unsqueeze(-1), torch.zeros_like(grad), grad)
    return value, grad, recorded.detach()


def init(position: torch.Tensor, log_density: LogDensity, step_size: torch.Tensor,
         inverse_mass: torch.Tensor) -> HMCState:
    value, grad, recorded = evaluate(log_density, position)
    return HMCState(position.detach(), value, grad, recorded, step_size, inverse_mass)


def step(state: HMCState, log_density: LogDensity, n_leapfrog: int,
         generator: torch.Generator | None = None) -> tuple[HMCState, HMCInfo]:
    """One HMC transition of every chain (``n_leapfrog`` leapfrog steps)."""
    x, grad = state.position, state.gradient
    eps = state.step_size.unsqueeze(-1)
    inv_mass = state.inverse_mass
    momentum = torch.randn(x.shape, generator=generator, dtype=x.dtype) / inv_mass.sqrt()
    kinetic0 = 0.5 * (momentum**2 * inv_mass).sum(-1)
    p = momentum + 0.5 * eps * grad
    for i in range(n_leapfrog):
        x = x + eps * inv_mass * p
        value, grad, recorded = evaluate(log_density, x)
        if i < n_leapfrog - 1:
            p = p + eps * grad
    p = p + 0.5 * eps * grad
    kinetic1 = 0.5 * (p**2 * inv_mass).sum(-1)
    log_ratio = value - kinetic1 - state.log_density + kinetic0
    log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -torch.inf))
    acceptance = log_ratio.clamp(max=0).exp()
    accepted = torch.rand(acceptance.shape, generator=generator, dtype=x.dtype) < acceptance
    keep = accepted.unsqueeze(-1)
    new = HMCState(torch.where(keep, x, state.position),
                   torch.where(accepted, value, state.log_density),
                   torch.where(keep, grad, state.gradient),
                   torch.where(keep, recorded, state.recorded),
                   state.step_size, state.inverse_mass)
    return new, HMCInfo(accepted, acceptance)


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
