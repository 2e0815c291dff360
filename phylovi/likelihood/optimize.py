"""Maximum-likelihood estimates of a model's free parameters, and of branch lengths, on a
fixed topology."""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits

from phylovi.likelihood.model_string import Model
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees import Tree

# The range of each free exchangeability (relative to GT), kappa and Gamma shape,
# IQ-TREE's. Beyond them the likelihood is flat or degenerate (as the shape goes to 0
# the discrete Gamma rates become 0, 0, 0, 4: +I in disguise, with no gradient), and an
# optimiser drifted without bound there: to a shape of 6e-5 where IQ-TREE's 1.6 was
# 0.9 nats better, or to rates of 2e7 and a NaN rate matrix.
BOUNDS = {"kappa": (1e-4, 100.0), "rates": (1e-4, 100.0), "shape": (0.02, 1000.0)}
# Estimated branch lengths stay within IQ-TREE's defaults (-blmin, -blmax), so that the
# two programs' maxima can be compared; a length at 1e-6 is a zero-length branch.
LENGTH_BOUNDS = (1e-6, 10.0)


def _to_unconstrained(name: str, value: torch.Tensor) -> torch.Tensor:
    """Logit of the position on the log scale between the bounds; logit for pinv, log for
    frequencies (a softmax maps them back)."""
    if name in BOUNDS:
        low, high = (math.log(bound) for bound in BOUNDS[name])
        where = (torch.log(value.clamp(*BOUNDS[name])) - low) / (high - low)
        return torch.logit(where.clamp(1e-6, 1 - 1e-6))
    if name == "pinv":
        return torch.logit(value)
    # a base the alignment lacks has an empirical frequency of 0, whose log (-inf) would
    # make every step NaN: start it at 1e-12 instead
    return torch.log(value.clamp(min=1e-12))


def _from_unconstrained(name: str, value: torch.Tensor) -> torch.Tensor:
    if name in BOUNDS:
        low, high = (math.log(bound) for bound in BOUNDS[name])
        return torch.exp(low + (high - low) * torch.sigmoid(value))
    return torch.sigmoid(value) if name == "pinv" else torch.softmax(value, -1)


class FreeParameters:
    """A model's free parameters on unconstrained scales, as leaf tensors an optimiser can move.

    Exchangeabilities, kappa and shape within :data:`BOUNDS` (a logit of their place
    on the log scale), logit for pinv, softmax for frequencies; GTR rates are
    relative to GT, which stays 1. Call :meth:`assign` before each likelihood
    evaluation to write the constrained values into the model.
    """

    def __init__(self, model: Model):
        self.model = model
        self.tensors = {name: _to_unconstrained(name, model.parameters[name].detach().clone())
                        .requires_grad_() for name in model.free}

    def assign(self) -> None:
        for name, value in self.tensors.items():
            constrained = _from_unconstrained(name, value)
            if name == "rates":  # the last exchangeability (GT) is the unit
                constrained = torch.cat([constrained[:5], torch.ones_like(constrained[5:])])
            self.model.parameters[name] = constrained

    def detach(self) -> None:
        """Write the final values into the model as plain tensors (no graph)."""
        with torch.no_grad():
            self.assign()
        for name in self.tensors:
            self.model.parameters[name] = self.model.parameters[name].detach()

    def values(self) -> dict[str, list[float]]:
        return {name: self.model.parameters[name].detach().reshape(-1).tolist()
                for name in self.tensors}


def optimize_model(likelihood: TreeLikelihood, tree: Tree, max_iterations: int = 1000,
                   tolerance: float = 1e-13) -> float:
    """Set ``likelihood.model``'s free parameters to their ML values on ``tree`` (its
    branch lengths fixed); return the lnL.

    Uses L-BFGS-B on the scales of :class:`FreeParameters` with the kernel's analytic
    gradient, until the lnL's relative change is below ``tolerance``. With both pinv and
    the Gamma shape free it starts twice, from the model's values and from pinv 0.5, and
    keeps the better end: +I+G's
    likelihood often has two hills (few invariable sites with a small shape, many
    with a larger one), and one start can end on the lower.
    """
    return _maximize(likelihood, tree, False, max_iterations, tolerance)[0]


def optimize_branch_lengths(likelihood: TreeLikelihood, tree: Tree, max_iterations: int = 5000,
                            tolerance: float = 1e-13) -> tuple[float, Tree]:
    """ML branch lengths on ``tree``'s topology, jointly with the model's free parameters
    (set in ``likelihood.model`` as :func:`optimize_model` does); IQ-TREE's ``-te`` without
    ``-blfix``.

    The start is the tree's own lengths (0.1 where it has none); the lengths stay within
    :data:`LENGTH_BOUNDS`.

    Returns:
        The lnL and the tree with the estimated lengths.
    """
    return _maximize(likelihood, tree, True, max_iterations, tolerance)


# L-BFGS-B's BLAS calls work on vectors of a few dozen numbers: with OpenBLAS's threads
# they gain nothing, and those threads then spin beside the kernel's (a fit of the
# bundled example took 5 times as long on 2 cores). One limit per fit, for all its starts.
@threadpool_limits.wrap(limits=1, user_api="blas")
def _maximize(likelihood: TreeLikelihood, tree: Tree, fit_lengths: bool, max_iterations: int,
              tolerance: float) -> tuple[float, Tree]:
    """L-BFGS-B (scipy's) over the free parameters' unconstrained scales and, with
    ``fit_lengths``, the branch lengths themselves within :data:`LENGTH_BOUNDS`: a bound a
    length sits on is kept exactly, where on a log scale its gradient would vanish and
    stall the search short of a branch that should grow."""
    like = dict(dtype=likelihood.dtype, device=likelihood.device)
    given = torch.as_tensor(tree.branch_lengths, **like)
    if fit_lengths:
        given = given.nan_to_num(nan=0.1).clamp(*LENGTH_BOUNDS)
    model = likelihood.model
    if not model.free and not fit_lengths:
        return _total(likelihood, tree, given), tree
    starts = [{}]
    if {"pinv", "shape"} <= set(model.free):
        starts.append({"pinv": 0.5})
    initial = {name: model.parameters[name].detach().clone() for name in model.free}
    best = None
    for start in starts:
        for name, value in initial.items():
            model.parameters[name] = torch.full_like(value, start[name]) if name in start else value
        free = FreeParameters(model)
        names = list(free.tensors)
        sizes = [free.tensors[name].numel() for name in names] + [len(given)] * fit_lengths
        x0 = torch.cat([free.tensors[name].detach().reshape(-1) for name in names]
                       + [given] * fit_lengths).double().cpu().numpy()
        bounds = ([(None, None)] * sum(sizes[:len(names)])
                  + [LENGTH_BOUNDS] * (len(given) * fit_lengths))

        def objective(x):
            pieces = [piece.to(**like).requires_grad_()
                      for piece in torch.from_numpy(x).split(sizes)]
            for name, piece in zip(names, pieces):
                free.tensors[name] = piece.reshape(free.tensors[name].shape)
            free.assign()
            lengths = pieces[-1] if fit_lengths else given
            loss = -likelihood.log_likelihood(tree.topology, lengths)
            gradients = torch.autograd.grad(loss, pieces, allow_unused=True)
            flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                              for p, g in zip(pieces, gradients)])
            return float(loss.detach()), flat.double().cpu().numpy()

        found = scipy.optimize.minimize(
            objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": max_iterations, "ftol": tolerance, "gtol": 1e-6, "maxcor": 20})
        pieces = torch.from_numpy(found.x).split(sizes)
        for name, piece in zip(names, pieces):
            free.tensors[name] = piece.to(**like).reshape(free.tensors[name].shape)
        free.detach()
        lengths = pieces[-1].to(**like) if fit_lengths else given
        value = _total(likelihood, tree, lengths)
        if best is None or value > best[0]:
            best = value, {name: model.parameters[name] for name in model.free}, lengths
    value, parameters, lengths = best
    model.parameters.update(parameters)
    if fit_lengths:
        values = lengths.detach().cpu().numpy()
        if values.dtype == np.float32:  # the shortest decimals that give these float32s
            values = values.astype(str).astype(np.float64)  # (1e-06, not 9.999999975e-07)
        tree = Tree(tree.topology, values.astype(np.float64))
    return value, tree


def _total(likelihood: TreeLikelihood, tree: Tree, lengths: torch.Tensor) -> float:
    return likelihood.tree_log_likelihoods([Tree(tree.topology, lengths.detach().cpu().numpy())])[0]
