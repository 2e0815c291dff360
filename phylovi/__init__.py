"""phylovi: Bayesian phylogenetics on PyTorch."""

__version__ = "0.1.0"

from phylovi.errors import PhyloviError  # noqa: E402

__all__ = ["__version__", "PhyloviError"]
