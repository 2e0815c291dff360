"""Records phylovi writes: JSON as every output writes it, and per-site log-likelihood
tables."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np


def to_json(record) -> str:
    """``record`` as JSON, with infinities and NaN written as null (strict JSON has no
    -Infinity, and jq, R and JavaScript reject it)."""
    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(item) for item in value]
        return value

    return json.dumps(finite(record), indent=2, allow_nan=False)


def write_site_log_likelihoods(path: str | os.PathLike, values: np.ndarray,
                               numbers: Sequence[int] | None = None) -> None:
    """Write ``values`` ``[n_trees, n_sites]`` as IQ-TREE's ``-wsl`` does (the PUZZLE
    layout that CONSEL's ``makermt --puzzle`` reads): a line ``n_trees n_sites``, then a
    line per tree and its values, named ``Tree<number>`` (``numbers``: each tree's
    position in its file; default 1, 2, ...), or ``Site_Lh`` for a single tree without
    ``numbers``. Atomic: the file appears whole or not at all."""
    from phylovi.io.atomic import write

    values = np.asarray(values, dtype=np.float64)
    n_trees, n_sites = values.shape
    if numbers is None:
        names = ["Site_Lh"] if n_trees == 1 else [f"Tree{k}" for k in range(1, n_trees + 1)]
    else:
        names = [f"Tree{k}" for k in numbers]
    with write(path) as handle:
        handle.write(f"{n_trees} {n_sites}\n")
        for name, row in zip(names, values):
            handle.write(f"{name:<10}" + "".join(f" {value:.10g}" for value in row) + "\n")
