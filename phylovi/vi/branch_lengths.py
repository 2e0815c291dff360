"""Mean-field variational inference of branch lengths on a fixed topology.

The target is p(b | y, topology) ∝ p(y | b) p(b) over the ``2n - 3`` branch
lengths. q starts at the MAP branch lengths (a coefficient of variation of
0.1 per branch, as physher's VB starts at the MAP) and Adam follows the
gradient of the ELBO or the K-sample bound with a step size decaying as
``lr / sqrt(1 + step / 100)``. The run has converged when the mean bound
over the last ``window`` steps differs from the previous window's by less
than ``tolerance`` relative. Free substitution-model parameters, if any, are
point estimates optimised jointly.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
from torch.distributions import Distribution

from phylovi.errors import ConfigError, InferenceError, require_type
from phylovi.io import atomic
from phylovi.likelihood.optimize import FreeParameters
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees.topology import Topology
from phylovi.vi.bounds import BOUNDS, ESTIMATORS, bound_loss, importance_sampling
from phylovi.vi.families import FAMILIES, MeanField

CHECKPOINT_VERSION = 3  # 2: records the inputs (see _inputs_digest); 3: bounded free parameters


@dataclass
class VISettings:
    """What a run does; a checkpoint only resumes a run with the same settings."""

    family: str = "gamma"
    bound: str = "elbo"
    estimator: str = "pathwise"
    n_particles: int = 1
    max_steps: int = 10000
    lr: float = 0.05
    tolerance: float = 1e-5
    window: int = 200
    is_samples: int = 10000

    def __post_init__(self):
        for name in ("n_particles", "max_steps", "window", "is_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigError(f"VISettings.{name} must be an integer of at least 1, "
                                  f"got {value!r}")
        for name, value in (("lr", self.lr), ("tolerance", self.tolerance)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"VISettings.{name} must be a number, got {value!r}")
        if not 0 < self.lr < math.inf or not 0 <= self.tolerance < math.inf:
            raise ConfigError("VISettings.lr must be positive and tolerance non-negative "
                              f"(both finite), got {self.lr!r} and {self.tolerance!r}")
        for name, value, valid in (("family", self.family, FAMILIES), ("bound", self.bound, BOUNDS),
                                   ("estimator", self.estimator, ESTIMATORS)):
            if value not in valid:  # else the run fails later, as if it had diverged
                raise ConfigError(f"VISettings.{name} must be one of {', '.join(valid)}, "
                                  f"got {value!r}")


@dataclass
class VIResult:
    """The fitted posterior's summary (an estimator result, see DESIGN.md).

    Attributes:
        elbo: mean over the last window of steps of the bound the run maximised:
            the ELBO, or the K-sample (IWAE) bound when ``bound`` is ``"iwae"``.
        bound: ``"elbo"`` or ``"iwae"``.
        pareto_k: the importance weights' tail shape (:func:`~phylovi.vi.bounds.pareto_k`):
            above :func:`~phylovi.vi.bounds.pareto_k_threshold` the estimate is unreliable.
        value, std_error: importance-sampling estimate of log p(y | topology)
            from ``is_samples`` draws of q, and its standard error.
        n_likelihood_evals: tree-likelihood evaluations, fitting and estimate.
        wall_seconds: fitting and estimate.
        method: e.g. ``"vi-gamma-elbo-pathwise"``.
        steps: optimisation steps taken; converged: whether the tolerance was met.
        trace: ``(step, bound, seconds since the start)`` per step.
        branches: per-branch ``mean``, ``median``, ``lower_95``, ``upper_95``.
        model_parameters: the point estimates of free model parameters.
    """

    elbo: float
    value: float
    std_error: float
    n_likelihood_evals: int
    wall_seconds: float
    method: str
    steps: int
    converged: bool
    trace: list[tuple[int, float, float]] = field(default_factory=list)
    branches: dict[str, list[float]] = field(default_factory=dict)
    model_parameters: dict[str, list[float]] = field(default_factory=dict)
    bound: str = "elbo"
    pareto_k: float = math.nan


class BranchLengthVI:
    """Variational branch-length posterior for one topology.

    Args:
        likelihood: the tree likelihood (alignment and substitution model).
        topology: the fixed unrooted topology.
        prior: a branch-length prior over ``[*batch, n_edges]`` (see
            :func:`phylovi.distributions.parse_prior`).
        settings: the run's settings.
    """

    def __init__(self, likelihood: TreeLikelihood, topology: Topology, prior: Distribution,
                 settings: VISettings | None = None):
        require_type(likelihood, TreeLikelihood, "BranchLengthVI's likelihood")
        require_type(topology, Topology, "BranchLengthVI's topology")
        require_type(prior, Distribution, "BranchLengthVI's prior (parse_prior)")
        require_type(settings, (VISettings, type(None)), "BranchLengthVI's settings")
        self.likelihood = likelihood
        self.topology = topology
        self.prior = prior
        self.settings = settings or VISettings()
        self.free = FreeParameters(likelihood.model)
        self.inputs = _inputs_digest(likelihood, prior, topology.n_edges)
        self.n_likelihood_evals = 0
        self.q = MeanField(self.settings.family, self.map_branch_lengths())
        parameters = list(self.q.parameters()) + list(self.free.tensors.values())
        self.optimizer = torch.optim.Adam(parameters, lr=self.settings.lr)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 1 / math.sqrt(1 + step / 100))
        self.step = 0
        self.trace: list[tuple[int, float, float]] = []
        self.converged = False
        self.seconds = 0.0

    def log_joint(self, lengths: torch.Tensor) -> torch.Tensor:
        """log p(y, b) for branch lengths ``[K, n_edges]`` -> ``[K]``."""
        self.free.assign()
        self.n_likelihood_evals += lengths.shape[0]
        return self.likelihood.log_likelihood(self.topology, lengths) + self.prior.log_prob(lengths)

    def map_branch_lengths(self, iterations: int = 200) -> torch.Tensor:
        """The MAP branch lengths (L-BFGS on log lengths), from 0.1 everywhere."""
        dtype, device = self.likelihood.dtype, self.likelihood.device
        log_lengths = torch.full((self.topology.n_edges,), math.log(0.1), dtype=dtype,
                                 device=device, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_lengths], max_iter=iterations, tolerance_change=1e-9,
                                      line_search_fn="strong_wolfe")

        # Some priors (gammadir with a small tree-length shape) have no MAP: on a short
        # alignment the joint density grows without bound as every length shrinks to 0.
        # The search stays within 1e-8 to 100, which is all a starting point needs.
        low, high = math.log(1e-8), math.log(100.0)

        def closure():
            optimizer.zero_grad()
            loss = -self.log_joint(log_lengths.clamp(low, high).exp().unsqueeze(0)).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return log_lengths.detach().clamp(low, high).exp()

    def fit(self, checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 500,
            progress: bool = False) -> VIResult:
        """Optimise q until convergence or ``max_steps``, then estimate log p(y | topology).

        Args:
            checkpoint: file to save the run's state to every ``checkpoint_every``
                steps (and at the end); :meth:`resume` continues from it.
            progress: show a progress bar on a terminal.
        """
        settings = self.settings
        started = time.perf_counter() - self.seconds
        bar = _progress_bar(progress, settings.max_steps, self.step)
        try:
            while self.step < settings.max_steps and not self.converged:
                self.optimizer.zero_grad()
                try:
                    loss, value = bound_loss(self.q.distribution(), self.log_joint,
                                             settings.n_particles, settings.bound,
                                             settings.estimator)
                except ValueError:  # torch's check of a scale or a draw of 0 or inf
                    raise self._diverged("q's parameters left their range") from None
                if not math.isfinite(value):
                    raise self._diverged(f"the bound is {value}")
                loss.backward()
                self.optimizer.step()
                self.schedule.step()
                self.step += 1
                self.trace.append((self.step, value, time.perf_counter() - started))
                self.converged = self._has_converged()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(elbo=f"{value:.2f}")
                if checkpoint is not None and self.step % checkpoint_every == 0:
                    self.seconds = time.perf_counter() - started
                    self.save_checkpoint(checkpoint)
        finally:
            if bar is not None:
                bar.close()
        self.free.detach()
        q = self.q.distribution()
        with torch.no_grad():
            log_marginal, std_error, tail = importance_sampling(q, self.log_joint,
                                                                settings.is_samples)
        self.seconds = time.perf_counter() - started
        if checkpoint is not None:
            self.save_checkpoint(checkpoint)
        window = [v for _, v, _ in self.trace[-settings.window:]]
        return VIResult(
            elbo=sum(window) / max(len(window), 1), value=log_marginal, std_error=std_error,
            n_likelihood_evals=self.n_likelihood_evals, wall_seconds=self.seconds,
            method=f"vi-{settings.family}-{settings.bound}-{settings.estimator}",
            steps=self.step, converged=self.converged, trace=list(self.trace),
            branches=self.q.summary(), model_parameters=self.free.values(), bound=settings.bound,
            pareto_k=tail)

    def _diverged(self, what: str) -> InferenceError:
        if self.step == 0:
            return InferenceError(f"the bound cannot be evaluated at q's start ({what})")
        return InferenceError(f"the optimisation diverged at step {self.step + 1} ({what}); "
                              f"lower the learning rate (now {self.settings.lr:g})")

    def _has_converged(self) -> bool:
        window = self.settings.window
        if len(self.trace) < 2 * window or self.step % window:
            return False
        recent = sum(v for _, v, _ in self.trace[-window:]) / window
        previous = sum(v for _, v, _ in self.trace[-2 * window:-window]) / window
        return abs(recent - previous) < self.settings.tolerance * abs(previous)

    # -- checkpoints -------------------------------------------------------------------

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write everything needed to continue the run, RNG state included, atomically."""
        state = {
            "version": CHECKPOINT_VERSION, "settings": asdict(self.settings), "step": self.step,
            "q": self.q.state_dict(),
            "free": {name: t.detach().clone() for name, t in self.free.tensors.items()},
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "rng": torch.get_rng_state(), "trace": self.trace, "converged": self.converged,
            "seconds": self.seconds, "n_likelihood_evals": self.n_likelihood_evals,
            "edges": list(self.topology.edges), "inputs": self.inputs,
        }
        with atomic.write(path, "wb") as handle:
            torch.save(state, handle)

    def resume(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint written by a run with the same inputs and settings.

        Raises:
            ConfigError: the checkpoint is unreadable or belongs to another run.
        """
        try:
            state = torch.load(path, weights_only=False)
        except Exception as error:  # torch raises many types for a damaged file
            raise ConfigError(f"cannot read the checkpoint: {error}", path=os.fspath(path)) from None
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError("not a phylovi vi checkpoint", path=os.fspath(path))
        if state["settings"] != asdict(self.settings) or state["edges"] != list(self.topology.edges):
            raise ConfigError("the checkpoint was written with other settings or another tree",
                              path=os.fspath(path))
        if state["inputs"] != self.inputs:
            raise ConfigError("the checkpoint was written for another alignment, model or prior",
                              path=os.fspath(path))
        self.q.load_state_dict(state["q"])
        with torch.no_grad():
            for name, value in state["free"].items():
                self.free.tensors[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        self.step, self.trace = state["step"], [tuple(x) for x in state["trace"]]
        self.converged, self.seconds = state["converged"], state["seconds"]
        self.n_likelihood_evals = state["n_likelihood_evals"]


def _inputs_digest(likelihood: TreeLikelihood, prior: Distribution, n_edges: int) -> str:
    """A fingerprint of the alignment, the model as given and the prior, so that a run does
    not resume from another's checkpoint. A prior is known by its log density at a few
    fixed points (distributions have no canonical text form)."""
    patterns = likelihood.patterns
    probes = torch.tensor([[0.01], [0.1], [1.0]], dtype=torch.float64).expand(3, n_edges)
    with torch.no_grad():
        density = prior.log_prob(probes.to(likelihood.device, likelihood.dtype)).double().tolist()
    digest = hashlib.sha256()
    for part in (repr(tuple(patterns.taxa.names)), patterns.codes.tobytes(),
                 patterns.weights.tobytes(), likelihood.model.to_string(), repr(density)):
        digest.update(part if isinstance(part, bytes) else part.encode())
    return digest.hexdigest()


def _progress_bar(enabled: bool, total: int, initial: int):
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="VI", unit="step", file=sys.stderr, leave=False)
