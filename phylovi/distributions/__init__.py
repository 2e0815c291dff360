"""``torch.distributions`` subclasses the inference layers need."""

from phylovi.distributions.beta_prime import BetaPrime
from phylovi.distributions.priors import CompoundDirichlet, parse_prior

__all__ = ["BetaPrime", "CompoundDirichlet", "parse_prior"]
