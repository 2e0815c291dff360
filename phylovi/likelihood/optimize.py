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


def optimize_model(likelihood: TreeLikelihood, tree: Tree, max_iterations: int = 200,
                   tolerance: float = 1e-7) -> float:
    """Set ``likelihood.model``'s free parameters to their ML values; return the lnL.

    Uses L-BFGS on log (rates, kappa, shape), logit (pinv) and softmax
    (frequencies) scales with the kernel's analytic gradient; GTR rates are
    relative to GT, which stays 1.
    """
    model: Model = likelihood.model
    lengths = torch.as_tensor(tree.branch_lengths, dtype=likelihood.dtype,
                              device=likelihood.device)
    free = {name: _TO_UNCONSTRAINED[name](model.parameters[name].detach().clone())
            .requires_grad_() for name in model.free}
    if not free:
        with torch.no_grad():
            return float(likelihood.log_likelihood(tree.topology, lengths))

    def assign():
        for name, value in free.items():
            constrained = _FROM_UNCONSTRAINED[name](value)
            if name == "rates":  # the last exchangeability (GT) is the unit
                constrained = torch.cat([constrained[:5], torch.ones_like(constrained[5:])])
            model.parameters[name] = constrained

    optimizer = torch.optim.LBFGS(list(free.values()), max_iter=max_iterations,
                                  tolerance_change=tolerance, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        assign()
        loss = -likelihood.log_likelihood(tree.topology, lengths)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        assign()
    for name in free:
        model.parameters[name] = model.parameters[name].detach()
    with torch.no_grad():
        return float(likelihood.log_likelihood(tree.topology, lengths))
