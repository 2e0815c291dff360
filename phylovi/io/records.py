"""Records phylovi writes: JSON as every output writes it, and per-site log-likelihood
tables."""

from __future__ import annotations

import json
import math
import os

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


def write_site_log_likelihoods(path: str | os.PathLike, values: np.ndarray) -> None:
    """Write ``values`` ``[n_trees, n_sites]`` as IQ-TREE's ``-wsl`` does (the PUZZLE
    layout that CONSEL's ``makermt --puzzle`` reads): a line ``n_trees n_sites``, then a
    line per tree, ``Tree1``, ``Tree2``, ... (``Site_Lh`` for a single tree) and its
    values. Atomic: the file appears whole or not at all."""
    from phylovi.io.atomic import write

    values = np.asarray(values, dtype=np.float64)
    n_trees, n_sites = values.shape
    with write(path) as handle:
        handle.write(f"{n_trees} {n_sites}\n")
        for number, row in enumerate(values, 1):
            name = "Site_Lh" if n_trees == 1 else f"Tree{number}"
            handle.write(f"{name:<10}" + "".join(f" {value:.10g}" for value in row) + "\n")
