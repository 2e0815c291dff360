"""Marginal likelihood of a fixed topology: every estimator of Fourment et al. (2020) behind one call.

    posterior = Posterior(likelihood, topology)               # Exp(10) prior by default
    result = estimate(posterior, method="gss", seed=1)        # a MarginalResult
    results = estimate_many(posterior, ["ss", "ps", "mps"])   # one ladder for all three
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence

from phylovi.errors import ConfigError
from phylovi.marginal.estimators import ESTIMATORS, SharedWork
from phylovi.marginal.posterior import Posterior
from phylovi.marginal.result import MarginalResult

METHODS = tuple(ESTIMATORS)

__all__ = ["METHODS", "MarginalResult", "Posterior", "estimate", "estimate_many"]


def estimate(posterior: Posterior, method: str = "gss", seed: int | None = None,
             **settings) -> MarginalResult:
    """Estimate log p(y | topology) with one method.

    Args:
        posterior: the target (alignment, topology, model, prior).
        method: one of :data:`METHODS`.
        seed: seeds the method's random numbers (None: fresh randomness).
        **settings: the method's settings (see ``ESTIMATORS[method][1]`` for
            names and defaults), e.g. ``n_temperatures=50, n_samples=500``.

    Raises:
        ConfigError: an unknown method or setting, or a setting out of range.
    """
    return estimate_many(posterior, [method], seed, **settings)[method]


def estimate_many(posterior: Posterior | Sequence[Posterior], methods: Sequence[str],
                  seed: int | None = None, **settings):
    """Several methods on one posterior (or on each of a list); methods that use the same
    draws share them.

    The ladder's power posteriors serve ss, ps and mps; the posterior draws
    serve hm, shm, bridge, cpo and ppd (and gss's reference); the MAP serves
    the Laplus methods and glis. Each result's ``wall_seconds`` and
    ``n_likelihood_evals`` are what its method added (shared work is charged to
    the first method that needs it); ``seconds_alone`` and ``evals_alone`` add
    the shared work it reused, i.e. what the method costs on its own.

    A setting ``NAME`` applies to every method that has it; ``METHOD.NAME``
    (e.g. ``**{"gss.n_samples": 200}``) to that method only.

    Returns:
        ``{method: MarginalResult}``, or a list of them, one per posterior, when
        ``posterior`` is a list (the i-th posterior is seeded with ``seed + i``).
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or not 0 <= seed < 2**64):
        raise ConfigError(f"the seed must be an integer from 0 to 2**64 - 1, got {seed!r}")
    if isinstance(methods, str):  # one method, not a list of one-letter names
        methods = [methods]
    if not isinstance(posterior, Posterior):
        if not isinstance(posterior, (list, tuple)):
            raise ConfigError(f"estimate takes a Posterior or a list of them, got "
                              f"{type(posterior).__name__}")
        return [estimate_many(p, methods, None if seed is None else (seed + i) % 2**64, **settings)
                for i, p in enumerate(posterior)]
    chosen = check_settings(methods, settings)
    shared = SharedWork(posterior, seed)
    results = {}
    for method in methods:
        function = ESTIMATORS[method][0]
        done_before, shared.used = shared.computed(), set()
        evals_before, started = posterior.n_likelihood_evals, time.perf_counter()
        value, std_error, *diagnostics = function(posterior, shared.generator_for(method),
                                                  chosen[method], shared)
        seconds = time.perf_counter() - started
        evals = posterior.n_likelihood_evals - evals_before
        reused_seconds, reused_evals = shared.cost_of_reused(done_before)
        results[method] = MarginalResult(
            value=value, std_error=std_error, n_likelihood_evals=evals, wall_seconds=seconds,
            method=method, settings=chosen[method], seconds_alone=seconds + reused_seconds,
            evals_alone=evals + reused_evals, diagnostics=diagnostics[0] if diagnostics else {})
    return results


def parse_settings(items: Sequence[str]) -> dict:
    """``NAME=VALUE`` strings (``phylovi marginal --set``) as a settings dict: numbers,
    an integer where the text is one (``5000``, or ``1e4``), else a float."""
    settings = {}
    for item in items:
        name, _, value = str(item).partition("=")
        if not name or not value:
            raise ConfigError(f"--set expects NAME=VALUE, got {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--set {name}: {value!r} is not a number") from None
        # a count may be written 1e5; a plain "2.0" stays a float
        if value.strip().lstrip("-").isdigit():
            number = int(value)
        elif "e" in value.lower() and number.is_integer():
            number = int(number)
        settings[name.strip()] = number
    return settings


def check_settings(methods: Sequence[str], settings: dict) -> dict[str, dict]:
    """Each method's settings (its defaults overridden as :func:`estimate_many` does), or a
    ConfigError naming an unknown method or a setting out of place or out of range; for
    callers that check a configuration before running anything (the workflow)."""
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ConfigError(f"methods are given as a list of names, got {methods!r:.60}")
    unknown = [m for m in methods if not isinstance(m, str) or m not in ESTIMATORS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; valid methods: {', '.join(METHODS)}")
    return {method: _settings_of(method, methods, settings) for method in methods}


def _settings_of(method: str, methods: Sequence[str], settings: dict) -> dict:
    """``method``'s defaults overridden by the shared and then by its ``method.``-prefixed settings."""
    defaults = ESTIMATORS[method][1]
    shared, own = {}, {}
    for name, value in settings.items():
        target, dot, key = name.rpartition(".")
        if not dot:
            if not any(key in ESTIMATORS[m][1] for m in methods):
                raise ConfigError(f"setting {key!r} does not apply to {', '.join(methods)}")
            if key in defaults:
                shared[key] = value
            continue
        if target not in methods:
            raise ConfigError(f"setting {name!r}: {target!r} is not among the methods run "
                              f"({', '.join(methods)})")
        if key not in ESTIMATORS[target][1]:
            valid = ", ".join(ESTIMATORS[target][1]) or "none"
            raise ConfigError(f"setting {name!r}: {target} has no setting {key!r} "
                              f"(its settings: {valid})")
        if target == method:
            own[key] = value
    chosen = {**defaults, **shared, **own}
    _check(method, chosen)
    # numpy's numbers pass the checks; the estimators get Python's
    return {name: int(value) if isinstance(value, numbers.Integral) else float(value)
            for name, value in chosen.items()}


# A count beyond this would run for days: more likely a typo than a wish.
_LARGEST_COUNT = 10**9
_MOST_TEMPERATURES = 10_000


def _check(method: str, settings: dict) -> None:
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ConfigError(f"{method}: {name} must be a finite number, got {value!r}")
        if (name.startswith("n_") or name.startswith("max_")) and (
                not isinstance(value, numbers.Integral) or value < 1):
            raise ConfigError(f"{method}: {name} must be a positive integer, got {value!r}")
        if (name.startswith("n_") or name.startswith("max_")) and value > _LARGEST_COUNT:
            raise ConfigError(f"{method}: {name} must be at most {_LARGEST_COUNT:.0e} (a typo?), "
                              f"got {value!r}")
    if "tolerance" in settings and not settings["tolerance"] > 0:
        raise ConfigError(f"{method}: tolerance must be positive")
    if "n_live" in settings and settings["n_live"] < 3:
        raise ConfigError(f"{method}: nested sampling needs at least 3 live points")
    if "n_adapt" in settings and settings["n_adapt"] < 2:
        raise ConfigError(f"{method}: n_adapt must be at least 2 (the proposals are fitted to "
                          "the adaptation's draws)")
    if "n_temperatures" in settings and settings["n_temperatures"] < 2:
        raise ConfigError(f"{method}: the ladder needs at least 2 temperatures (0 and 1)")
    if "n_temperatures" in settings and settings["n_temperatures"] > _MOST_TEMPERATURES:
        # every temperature runs a chain; a billion of them once took all 23 GB of a
        # machine and were killed without a word
        raise ConfigError(f"{method}: n_temperatures must be at most {_MOST_TEMPERATURES:,} "
                          f"(the study used 50-100), got {settings['n_temperatures']}")
    if "ladder_shape" in settings and not settings["ladder_shape"] > 0:
        raise ConfigError(f"{method}: ladder_shape must be positive")
    if "independent" in settings and settings["independent"] not in (0, 1):
        raise ConfigError(f"{method}: independent must be 1 (independence sampler) or 0 (HMC)")
    if "prior_weight" in settings and not 0 <= settings["prior_weight"] <= 1:
        raise ConfigError(f"{method}: prior_weight must be from 0 to 1 (1: nested sampling from "
                          "the prior, as in the study)")
    if "delta" in settings and not 0 < settings["delta"] < 1:
        raise ConfigError(f"{method}: delta must be in (0, 1)")
