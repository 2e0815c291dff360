"""Distributions over tree topologies: SRF, CCD and subsplit Bayesian networks (SA, EM, EM-alpha)."""

from phylovi.sbn.posterior import METHODS, TreePosterior

__all__ = ["METHODS", "TreePosterior"]
