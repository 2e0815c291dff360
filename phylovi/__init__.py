"""phylovi: Bayesian phylogenetics on PyTorch.

The public API is importable from here; it loads lazily, so that
``phylovi --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_ERRORS = ("PhyloviError", "InputError", "AlignmentError", "TreeFileError", "TaxonMismatchError",
           "ModelError", "GenotypeMatrixError", "ConfigError", "OutputError", "PosteriorFileError",
           "InferenceError")
_PUBLIC = {
    **{name: "phylovi.errors" for name in _ERRORS},
    "read_alignment": "phylovi.io.alignment",
    "read_tree": "phylovi.io.trees",
    "read_trees": "phylovi.io.trees",
    "write_newick": "phylovi.io.trees",
    "TaxonOrder": "phylovi.trees",
    "Topology": "phylovi.trees",
    "RootedTopology": "phylovi.trees",
    "Tree": "phylovi.trees",
    "TopologyBatch": "phylovi.trees",
    "compress_patterns": "phylovi.likelihood",
    "parse_model": "phylovi.likelihood",
    "TreeLikelihood": "phylovi.likelihood",
    "TreePosterior": "phylovi.sbn",
    "parse_prior": "phylovi.distributions",
    "BranchLengthVI": "phylovi.vi.branch_lengths",
    "VISettings": "phylovi.vi.branch_lengths",
    "Posterior": "phylovi.marginal",
    "estimate": "phylovi.marginal",
    "estimate_many": "phylovi.marginal",
    "METHODS": "phylovi.marginal",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'phylovi' has no attribute {name!r}")
