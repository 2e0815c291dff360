"""The result every marginal-likelihood estimator returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MarginalResult:
    """An estimate of log p(y | topology).

    Attributes:
        value: the estimate, in nats.
        std_error: its standard error where the method gives one, else None.
        n_likelihood_evals: tree-likelihood evaluations this call made (one per
            branch-length vector); work shared with a method run before it in the
            same :func:`~phylovi.marginal.estimate_many` call is not counted again.
        wall_seconds: time this call took, likewise.
        method: the estimator's name.
        settings: the settings it ran with.
        seconds_alone, evals_alone: time and evaluations the method needs on its own
            (its share plus the shared work it reused, e.g. the posterior draws of bridge).
        diagnostics: method-specific checks, e.g. ``pareto_k`` for the importance-sampling
            estimators (nmc, glis, vbis, hm): the shape of the weights' tail, see
            :func:`phylovi.vi.bounds.pareto_k`.
    """

    value: float
    std_error: float | None
    n_likelihood_evals: int
    wall_seconds: float
    method: str
    settings: dict = field(default_factory=dict)
    seconds_alone: float = 0.0
    evals_alone: int = 0
    diagnostics: dict = field(default_factory=dict)
