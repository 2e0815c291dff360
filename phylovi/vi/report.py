"""The files ``phylovi vi`` writes: a JSON summary, a Newick tree, the ELBO trace as CSV and PNG."""

from __future__ import annotations

import math
import os

from phylovi.io import atomic
from phylovi.io.records import to_json
from phylovi.trees.topology import Topology
from phylovi.vi.branch_lengths import VIResult


def write_outputs(folder: str, result: VIResult, topology: Topology, inputs: dict) -> dict:
    """Write summary.json, posterior_mean.nwk, elbo.csv and elbo.png; return the summary.

    The summary names the bound the run maximised (``bound``) and gives its final value
    under that name: ``elbo``, or ``iwae`` for the K-sample bound. A branch whose
    posterior mean is infinite (a beta-prime with shape beta <= 1) takes its median in
    posterior_mean.nwk and tree_length_mean; ``median_for_mean`` lists those edges. Each
    branch's ``taxa`` are the smaller side of its split (a pendant branch: its taxon)."""
    means = [m if math.isfinite(m) else med
             for m, med in zip(result.branches["mean"], result.branches["median"])]
    branches = []
    for edge, split in enumerate(topology.edges):
        if 2 * bin(split).count("1") > topology.n_taxa:
            split = ((1 << topology.n_taxa) - 1) ^ split
        side = [topology.taxa[i] for i in range(topology.n_taxa) if split >> i & 1]
        branches.append({"edge": edge, "taxa": side,
                         **{key: values[edge] for key, values in result.branches.items()}})
    record = {
        **inputs,
        "method": result.method,
        "bound": result.bound,
        result.bound: result.elbo,  # "elbo", or "iwae" for the K-sample bound
        "log_marginal_likelihood": result.value,
        "log_marginal_likelihood_se": result.std_error,
        "pareto_k": result.pareto_k,
        "steps": result.steps,
        "converged": result.converged,
        "n_likelihood_evals": result.n_likelihood_evals,
        "wall_seconds": result.wall_seconds,
        "model_parameters": result.model_parameters,
        "tree_length_mean": sum(means),
        "median_for_mean": [edge for edge, m in enumerate(result.branches["mean"])
                            if not math.isfinite(m)],
        "branches": branches,
    }
    summary, tree, trace, plot = (os.path.join(folder, name) for name in (
        "summary.json", "posterior_mean.nwk", "elbo.csv", "elbo.png"))
    with atomic.staged([summary, tree, trace, plot]) as temporary:  # all four or none
        with open(temporary[summary], "w", encoding="utf-8") as handle:
            handle.write(to_json(record) + "\n")
        with open(temporary[tree], "w", encoding="utf-8") as handle:
            handle.write(topology.to_newick(means) + "\n")
        with open(temporary[trace], "w", encoding="utf-8") as handle:
            handle.write("step,bound,seconds\n")
            handle.writelines(f"{step},{value!r},{seconds:.4f}\n"
                              for step, value, seconds in result.trace)
        plot_trace(temporary[plot], result)
    return record


def plot_trace(path: str, result: VIResult) -> None:
    """The bound per step and its running mean, with the final estimate of log p(y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _, _ in result.trace]
    values = [v for _, v, _ in result.trace]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    axis.plot(steps, values, lw=0.5, color="0.6", label="bound per step")
    width = max(1, len(values) // 50)
    running = [sum(values[max(0, i - width + 1):i + 1]) / len(values[max(0, i - width + 1):i + 1])
               for i in range(len(values))]
    axis.plot(steps, running, lw=1.5, color="C0", label=f"running mean ({width} steps)")
    axis.axhline(result.value, color="C3", ls="--", lw=1, label="IS estimate of log p(y)")
    tail = values[len(values) // 5:] or values
    low, high = min(tail), max(max(tail), result.value)
    axis.set_ylim(low - 0.05 * (high - low + 1), high + 0.05 * (high - low + 1))
    axis.set_xlabel("step")
    axis.set_ylabel("nats")
    axis.set_title(result.method)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    with atomic.write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    plt.close(figure)
