"""Tip partial likelihoods from site patterns, with IUPAC ambiguity.

A tip's partial for a state is 1 when its character allows that state and 0
otherwise, so an ambiguous character sums over the bases it allows. States are
in A, C, G, T order; the kernel's layout of partials is documented in
:mod:`phylovi.likelihood.pruning`.
"""

from __future__ import annotations

import torch

from phylovi.likelihood.patterns import CODE_STATES, SitePatterns


def code_table(dtype: torch.dtype = torch.float64,
               device: torch.device | str | None = None) -> torch.Tensor:
    """The partial vector of every 4-bit code.

    Args:
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        ``[16, 4]``: row ``code`` holds 1.0 for each state ``code`` allows, else 0.0.
    """
    return torch.as_tensor(CODE_STATES, dtype=dtype, device=device)


def tip_partials(patterns: SitePatterns, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Partial likelihoods of the tips.

    Args:
        patterns: the site patterns.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        ``[n_taxa, n_patterns, 4]``: 1.0 where a tip's character allows the state.
    """
    codes = torch.as_tensor(patterns.codes, dtype=torch.long, device=device)
    return code_table(dtype, codes.device)[codes]
