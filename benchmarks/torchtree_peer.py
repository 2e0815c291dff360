"""Time torchtree 1.0.2's likelihood kernel on inputs exported by benchmarks/likelihood.py.

Runs inside a virtual environment that has torchtree (not phylovi):

    python benchmarks/torchtree_peer.py INPUTS.pt REPEATS THREADS

INPUTS.pt holds the tip partials, pattern weights, a rooted post-order, the
eigensystem of the rate matrix, rates, frequencies and a batch of branch
lengths; the transition matrices are rebuilt from them on every evaluation, as
phylovi does. Prints one JSON line: evaluations per second for the
log-likelihood alone and with its gradient (medians), one JSON line per figure.
"""

import json
import statistics
import sys
import time

import torch
from torchtree.evolution.tree_likelihood import calculate_treelikelihood_discrete


def main() -> None:
    inputs = torch.load(sys.argv[1])
    repeats, threads = int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    left, eigenvalues, right = inputs["left"], inputs["eigenvalues"], inputs["right"]
    rates, dtype = inputs["rates"], inputs["dtype"]
    tips = [t.to(dtype) for t in inputs["tips"]]  # [4, N] each
    weights = inputs["weights"].to(dtype)
    frequencies = inputs["frequencies"].to(dtype).reshape(1, 4)
    proportions = torch.full((len(rates), 1, 1), 1.0 / len(rates), dtype=dtype)
    lengths = inputs["lengths"]  # [B, n_branches]
    n_nodes = len(tips) + len(inputs["post_indexing"])

    def evaluate(branch_lengths):
        scaled = torch.exp(branch_lengths[..., None, None] * rates[:, None] * eigenvalues)
        mats = ((left * scaled[..., None, :]) @ right).to(dtype)  # [B, n_branches, K, 4, 4]
        partials = tips + [None] * (n_nodes - len(tips))
        return calculate_treelikelihood_discrete(partials, weights, inputs["post_indexing"], mats,
                                                 frequencies, proportions)

    def plain():
        with torch.no_grad():
            evaluate(lengths)

    def gradient():
        x = lengths.clone().requires_grad_()
        evaluate(x).sum().backward()

    with torch.no_grad():
        print(json.dumps({"value": float(evaluate(lengths[:1]).sum())}), flush=True)
    # One line per measurement, so the caller keeps the first if the gradient runs out of memory.
    for name, fn in (("evals", plain), ("evals_grad", gradient)):
        fn()
        times = []
        for _ in range(repeats):  # as likelihood.py's seconds_per_call: each run lasts >= 0.2 s
            calls, start = 0, time.perf_counter()
            while calls == 0 or time.perf_counter() - start < 0.2:
                fn()
                calls += 1
            times.append((time.perf_counter() - start) / calls)
        print(json.dumps({name: lengths.shape[0] / statistics.median(times)}), flush=True)


if __name__ == "__main__":
    main()
