"""Variational inference: mean-field branch-length posteriors on a fixed topology."""

from phylovi.vi.branch_lengths import BranchLengthVI, VIResult
from phylovi.vi.families import FAMILIES, MeanField

__all__ = ["FAMILIES", "BranchLengthVI", "MeanField", "VIResult"]
