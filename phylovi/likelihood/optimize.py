"""Maximum-likelihood estimates of a model's free parameters on a fixed tree."""

from __future__ import annotations

import math

import torch

from phylovi.likelihood.model_string import Model
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees import Tree

# The range of each free exchangeability (relative to GT), kappa and Gamma shape,
# IQ-TREE's. Beyond them the likelihood is flat or degenerate (as the shape goes to 0
# the discrete Gamma rates become 0, 0, 0, 4: +I in disguise, with no gradient), and an
# optimiser drifted without bound there: to a shape of 6e-5 where IQ-TREE's 1.6 was
# 0.9 nats better, or to rates of 2e7 and a NaN rate matrix.
BOUNDS = {"kappa": (1e-4, 100.0), "rates": (1e-4, 100.0), "shape": (0.02, 1000.0)}


def _to_unconstrained(name: str, value: torch.Tensor) -> torch.Tensor:
    """Logit of the position on the log scale between the bounds; logit for pinv, log for
    frequencies (a softmax maps them back)."""
    if name in BOUNDS:
        low, high = (math.log(bound) for bound in BOUNDS[name])
        where = (torch.log(value.clamp(*BOUNDS[name])) - low) / (high - low)
        return torch.logit(where.clamp(1e-6, 1 - 1e-6))
    return torch.logit(value) if name == "pinv" else torch.log(value)


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


def optimize_model(likelihood: TreeLikelihood, tree: Tree, max_iterations: int = 200,
                   tolerance: float = 1e-7) -> float:
    """Set ``likelihood.model``'s free parameters to their ML values; return the lnL.

    Uses L-BFGS on the scales of :class:`FreeParameters` with the kernel's
    analytic gradient. With both pinv and the Gamma shape free it starts twice,
    from the model's values and from pinv 0.5, and keeps the better end: +I+G's
    likelihood often has two hills (few invariable sites with a small shape, many
    with a larger one), and one start can end on the lower.
    """
    lengths = torch.as_tensor(tree.branch_lengths, dtype=likelihood.dtype,
                              device=likelihood.device)
    model = likelihood.model
    if not model.free:
        return _total(likelihood, tree, lengths)
    starts = [{}]
    if {"pinv", "shape"} <= set(model.free):
        starts.append({"pinv": 0.5})
    initial = {name: model.parameters[name].detach().clone() for name in model.free}
    best = None
    for start in starts:
        for name, value in initial.items():
            model.parameters[name] = torch.full_like(value, start[name]) if name in start else value
        free = FreeParameters(model)
        optimizer = torch.optim.LBFGS(list(free.tensors.values()), max_iter=max_iterations,
                                      tolerance_change=tolerance, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            free.assign()
            loss = -likelihood.log_likelihood(tree.topology, lengths)
            loss.backward()
            return loss

        optimizer.step(closure)
        free.detach()
        value = _total(likelihood, tree, lengths)
        if best is None or value > best[0]:
            best = value, {name: model.parameters[name] for name in model.free}
    value, parameters = best
    model.parameters.update(parameters)
    return value


def _total(likelihood: TreeLikelihood, tree: Tree, lengths: torch.Tensor) -> float:
    """The log-likelihood as a float. In float32 the sites' values are summed in float64:
    a float32 total is rounded to 0.25-0.5 nats beyond |lnL| = 2.1e6."""
    with torch.no_grad():
        if likelihood.dtype == torch.float64:
            return float(likelihood.log_likelihood(tree.topology, lengths))
        sites = likelihood.site_log_likelihoods(tree.topology, lengths)
        return float(sites.double() @ likelihood.weights.double())
