"""ML and MAP branch lengths, and the per-branch derivatives the Laplus approximations need."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from phylovi.marginal.posterior import Posterior


def maximize(posterior: Posterior, include_prior: bool, start: torch.Tensor | None = None,
             tolerance: float = 1e-9) -> tuple[torch.Tensor, float]:
    """Branch lengths maximising log p(y | b) (ML) or log p(y, b) (MAP), and the maximum.

    L-BFGS on log branch lengths (positivity without bounds), from 0.1 or
    ``start``, restarted until the value changes by less than 1e-6 nats.
    Log lengths are clamped to [log 1e-10, log 100]: a branch whose optimum
    is 0 flattens its direction, and without the clamp L-BFGS's curvature
    estimate there shrinks until a step overflows to infinite lengths.
    """
    target = posterior.log_joint if include_prior else posterior.log_likelihood
    x = (torch.full((posterior.n_edges,), math.log(0.1), dtype=posterior.dtype)
         if start is None else start.detach().log().clone()).requires_grad_(True)
    best = -math.inf
    for _ in range(20):
        optimizer = torch.optim.LBFGS([x], max_iter=500, tolerance_grad=1e-10,
                                      tolerance_change=tolerance, history_size=20,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = -target(_lengths(x).unsqueeze(0)).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            x.clamp_(LOG_LENGTH_RANGE[0], LOG_LENGTH_RANGE[1])
            value = float(target(_lengths(x).unsqueeze(0)))
        if value - best < 1e-6:
            best = max(best, value)
            break
        best = value
    return _lengths(x).detach(), best


LOG_LENGTH_RANGE = (math.log(1e-10), math.log(100.0))


def _lengths(log_lengths: torch.Tensor) -> torch.Tensor:
    return log_lengths.clamp(*LOG_LENGTH_RANGE).exp()


def gradient(function: Callable[[torch.Tensor], torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
    """Gradient of ``function`` (``[K, n_edges] -> [K]``) at each row of ``lengths`` ``[K, n_edges]``."""
    points = lengths.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(function(points).sum(), points)
    return grad


def diagonal_hessian(function: Callable[[torch.Tensor], torch.Tensor],
                     lengths: torch.Tensor, relative_step: float = 1e-4) -> torch.Tensor:
    """``∂² f / ∂b_i²`` at ``lengths`` ``[n_edges]``: central differences of the analytic gradient.

    All 2 n_edges shifted points go through the kernel in one batch.
    """
    n = lengths.shape[0]
    steps = relative_step * lengths.detach()
    eye = torch.eye(n, dtype=lengths.dtype)
    points = torch.cat([lengths + eye * steps, lengths - eye * steps])
    grads = gradient(function, points)
    return (grads[:n].diagonal() - grads[n:].diagonal()) / (2 * steps)
