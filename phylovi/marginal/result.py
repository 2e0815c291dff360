"""The result every marginal-likelihood estimator returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MarginalResult:
    """An estimate of log p(y | topology).

    Attributes:
        value: the estimate, in nats.
        std_error: its standard error where the method gives one, else None.
        n_likelihood_evals: tree-likelihood evaluations used (one per branch-length vector).
        wall_seconds: time taken, optimisation and sampling included.
        method: the estimator's name.
        settings: the settings it ran with.
    """

    value: float
    std_error: float | None
    n_likelihood_evals: int
    wall_seconds: float
    method: str
    settings: dict = field(default_factory=dict)
