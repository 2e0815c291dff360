"""Maximum-likelihood estimates of a model's free parameters on a fixed tree."""

from __future__ import annotations

import torch

from phylovi.likelihood.model_string import Model
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees import Tree

# Each free parameter is optimised on an unconstrained scale.
_TO_UNCONSTRAINED = {"kappa": torch.log, "rates": torch.log, "shape": torch.log,
                     "pinv": torch.logit, "frequencies": torch.log}
_FROM_UNCONSTRAINED = {"kappa": torch.exp, "rates": torch.exp, "shape": torch.exp,
                       "pinv": torch.sigmoid, "frequencies": lambda x: torch.softmax(x, -1)}


class FreeParameters:
    """A model's free parameters on unconstrained scales, as leaf tensors an optimiser can move.

    Log for rates, kappa and shape, logit for pinv, softmax for frequencies;
    GTR rates are relative to GT, which stays 1. Call :meth:`assign` before
    each likelihood evaluation to write the constrained values into the model.
    """

    def __init__(self, model: Model):
        self.model = model
        self.tensors = {name: _TO_UNCONSTRAINED[name](model.parameters[name].detach().clone())
                        .requires_grad_() for name in model.free}

    def assign(self) -> None:
        for name, value in self.tensors.items():
            constrained = _FROM_UNCONSTRAINED[name](value)
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
    analytic gradient.
    """
    lengths = torch.as_tensor(tree.branch_lengths, dtype=likelihood.dtype,
                              device=likelihood.device)
    free = FreeParameters(likelihood.model)
    if not free.tensors:
        return _total(likelihood, tree, lengths)
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
    return _total(likelihood, tree, lengths)


def _total(likelihood: TreeLikelihood, tree: Tree, lengths: torch.Tensor) -> float:
    """The log-likelihood as a float. In float32 the sites' values are summed in float64:
    a float32 total is rounded to 0.25-0.5 nats beyond |lnL| = 2.1e6."""
    with torch.no_grad():
        if likelihood.dtype == torch.float64:
            return float(likelihood.log_likelihood(tree.topology, lengths))
        sites = likelihood.site_log_likelihoods(tree.topology, lengths)
        return float(sites.double() @ likelihood.weights.double())
