"""What a genotype network is trained on, and how: kept apart from
:mod:`phylovi.genotype.train` so that building the command line does not import torch."""

from __future__ import annotations

from dataclasses import dataclass

from phylovi.genotype.simulate import PRIORS

TASKS = ("branching", "noise", "eliminate")  # the networks of phylovi.genotype.nets


# The largest batch, validation set and hidden width a training run accepts.
LARGEST = {"batch_size": 65536, "n_validation": 1_000_000, "width": 4096}


@dataclass
class TrainSettings:
    """What a model is trained on, and how.

    Ranges are inclusive ``(low, high)``; each step draws its size and rates uniformly.
    """

    task: str = "branching"
    cells: tuple[int, int] = (5, 60)
    mutations: tuple[int, int] = (5, 40)
    alpha: tuple[float, float] = (0.0, 0.01)
    beta: tuple[float, float] = (0.0, 0.3)
    missing: tuple[float, float] = (0.0, 0.2)
    prior: str = "coalescent"
    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 1e-3
    width: int = 64
    validate_every: int = 100
    n_validation: int = 2000
    seed: int = 0

    def check(self) -> None:
        from phylovi.errors import ConfigError

        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        if self.prior not in PRIORS:
            raise ConfigError(f"unknown prior {self.prior!r}; valid priors: {', '.join(PRIORS)}")
        for name in ("cells", "mutations"):
            low, high = getattr(self, name)
            if not 2 <= low <= high:
                raise ConfigError(f"{name} must be a range LOW..HIGH with 2 <= LOW <= HIGH, "
                                  f"got {low}..{high}")
        for name in ("alpha", "beta", "missing"):
            low, high = getattr(self, name)
            if not 0 <= low <= high < 1:
                raise ConfigError(f"{name} must be a range in [0, 1), got {low}..{high}")
        for name in ("steps", "batch_size", "validate_every", "n_validation", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, most in LARGEST.items():  # beyond these a step does not fit in memory
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**64:  # torch.manual_seed takes no more
            raise ConfigError(f"seed must be from 0 to 2**64 - 1, got {self.seed}")
