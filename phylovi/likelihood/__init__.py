"""Substitution models, site patterns and the batched tree-likelihood kernel."""

from phylovi.likelihood.model_string import Model, parse_model
from phylovi.likelihood.patterns import SitePatterns, compress_patterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood

__all__ = ["Model", "parse_model", "SitePatterns", "compress_patterns", "TreeLikelihood"]
