"""Speed of the likelihood kernel: evaluations and partial-likelihood updates per second.

    .venv/bin/python benchmarks/likelihood.py [--data sim27 sim100] [--repeats 5] [--device cpu]

For sim27 and sim100 (../shared/data/sim) x JC and GTR+G4 x float64/float32 x
batch sizes 1, 10, 100, it times the log-likelihood alone and with its
gradient with respect to all branch lengths, alternating the two in each of
``--repeats`` rounds, and prints a Markdown table of medians (the gradient's
cost is the median of the rounds' ratios). One update = one internal node x pattern x rate category, so
updates per evaluation = (n_taxa - 1) x patterns x categories. A batch of B
is B copies of the reference topology with independently jittered branch
lengths (every copy is computed in full). Where a batch would not fit in
memory, it is evaluated in chunks (the gradient of a sum is the sum of the
chunks' gradients); the ``chunk`` column says so.

Peers timed on the same float64 batches in the same run, their log-likelihood
checked against phylovi's to 1e-6 relative: torchtree 1.0.2 with
``--torchtree-python PYTHON``, and BEAGLE's C API (CPU SSE, double; needs
libhmsbeagle-dev) with ``--beagle`` (log-likelihood only).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from beagle_peer import beagle_peer

from phylovi.io.alignment import read_alignment
from phylovi.io.trees import read_tree
from phylovi.likelihood import cpu_kernel
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.tips import tip_partials
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.trees import TopologyBatch

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sim"
MODELS = {"JC": "JC", "GTRG4": "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}"}
# BEAGLE 3.1.2 (SSE, double) on this machine kind, from
# ../shared/references/likelihood.md, in evaluations per second. Machines
# differ from run to run by up to 2-3x, so the same-run peer ratios are the
# ones to trust; this column compares with another day's measurement.
BEAGLE_REFERENCE = {("sim27", "JC"): 13585, ("sim27", "GTRG4"): 4850,
                    ("sim100", "JC"): 562, ("sim100", "GTRG4"): 143}


def seconds_per_call(fn, min_seconds: float = 0.2) -> float:
    """Mean seconds per call over calls that last at least ``min_seconds`` in all, so
    a millisecond call is not timed by one sample that a scheduler hiccup can spoil."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def paired_seconds(plain, gradient, repeats: int) -> tuple[float, float, float]:
    """Medians over ``repeats`` rounds of the seconds per call of ``plain`` and of
    ``gradient``, and the median of their per-round ratio. The two alternate within
    each round, so a burst of load on this shared machine slows both sides of a
    ratio instead of one."""
    plain(), gradient()  # warm-up: compiles, allocates, fills caches
    rounds = [(seconds_per_call(plain), seconds_per_call(gradient)) for _ in range(repeats)]
    return (statistics.median(a for a, _ in rounds), statistics.median(b for _, b in rounds),
            statistics.median(b / a for a, b in rounds))


def run(data: str, model_name: str, dtype, batch_size: int, repeats: int, device: str,
        memory_budget: float, torchtree_python: str | None, beagle: bool = False):
    alignment = read_alignment(SHARED / f"{data}.fasta")
    patterns = compress_patterns(alignment)
    tree = read_tree(SHARED / f"{data}.nwk", taxa=alignment.taxa)
    model = parse_model(MODELS[model_name], patterns)
    likelihood = TreeLikelihood(patterns, model, dtype=dtype, device=device)
    generator = torch.Generator().manual_seed(1)
    base = torch.as_tensor(tree.branch_lengths)
    jitter = torch.exp(0.1 * torch.randn(batch_size, base.numel(), generator=generator,
                                         dtype=torch.float64))
    lengths = (base * jitter).to(dtype=dtype, device=device)
    # Bytes of partials one tree costs with the gradient (partials, contributions, upper).
    per_tree = (patterns.n_taxa * patterns.n_patterns * model.n_categories * 4
                * torch.finfo(dtype).bits // 8 * 4)
    chunk = max(1, min(batch_size, int(memory_budget // per_tree)))
    if cpu_kernel.supports_device(likelihood.device, dtype):
        chunk = batch_size  # the fused C kernel keeps no partials between its passes
    batches = [TopologyBatch([tree.topology] * len(part)) for part in lengths.split(chunk)]

    def log_likelihood():
        with torch.no_grad():
            for batch, part in zip(batches, lengths.split(chunk)):
                likelihood.log_likelihood(batch, part)

    def with_gradient():
        for batch, part in zip(batches, lengths.split(chunk)):
            part = part.clone().requires_grad_()
            likelihood.log_likelihood(batch, part).sum().backward()

    updates = (patterns.n_taxa - 1) * patterns.n_patterns * model.n_categories * batch_size
    plain, gradient, ratio = paired_seconds(log_likelihood, with_gradient, repeats)
    result = {"evals": batch_size / plain, "updates": updates / plain,
              "evals_grad": batch_size / gradient, "updates_grad": updates / gradient,
              "ratio": ratio, "chunk": chunk}
    if (torchtree_python or beagle) and dtype == torch.float64:
        with torch.no_grad():
            expected = float(likelihood.log_likelihood(tree.topology, lengths[0]))
        inputs = export_inputs(patterns, tree, model, lengths)
        if torchtree_python:
            result["torchtree"] = torchtree_peer(torchtree_python, inputs, repeats, expected)
        if beagle:
            # BEAGLE's C++ threads often slow it down on 2 cores: give it its better of 1 and 2.
            records = [beagle_peer(inputs, repeats, threads) for threads in (1, 2)]
            for record in records:
                assert abs(record["value"] - expected) < 1e-6 * abs(expected), (record, expected)
            result["beagle"] = max(records, key=lambda record: record["evals"])
    return result


def export_inputs(patterns, tree, model, lengths) -> dict:
    """The batch's inputs for the peers, in float64 on the CPU.

    The peers need a rooted tree: the root goes on taxon 0's edge (all of the
    edge's length on taxon 0's side), which leaves the likelihood unchanged.
    ``post_indexing`` lists (node, left, right) in post-order; branch index =
    child node id, and ``lengths`` [B, n_branches] gets the extra root branch
    (length 0). The rate matrix's eigensystem gives
    P(t) = left @ diag(exp(eigenvalues * t)) @ right.
    """
    arrays = tree.topology.arrays
    n_taxa, root = arrays.n_taxa, arrays.root
    post = []
    for node in range(n_taxa, root):
        left, right = arrays.children[node - n_taxa][:2]
        post.append((node, int(left), int(right)))
    _, a, b = arrays.children[root - n_taxa]
    post += [(root, int(a), int(b)), (root + 1, 0, root)]
    substitution = model.substitution
    left, eigenvalues, right = substitution.eigensystem()
    tips = compress_tip_planes(patterns)
    batch = lengths.shape[0]
    return {"tips": tips, "weights": torch.as_tensor(patterns.weights), "post_indexing": post,
            "left": left, "eigenvalues": eigenvalues, "right": right,
            "rates": model.site_rates.rates(torch.float64), "dtype": torch.float64,
            "category_weights": model.site_rates.weights(torch.float64),
            "frequencies": substitution.frequencies.double(),
            "lengths": torch.cat([lengths.double().cpu(), torch.zeros(batch, 1,
                                                                    dtype=torch.float64)], 1)}


def torchtree_peer(python: str, inputs: dict, repeats: int, expected: float):
    """Evaluations/s of torchtree's kernel on the same batch, timed in its own environment."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inputs.pt"
        torch.save(inputs, path)
        result = subprocess.run([python, str(Path(__file__).with_name("torchtree_peer.py")),
                                 str(path), str(repeats), str(torch.get_num_threads())],
                                capture_output=True, text=True)
    record = {"evals": math.nan, "evals_grad": math.nan}
    for line in result.stdout.splitlines():
        record.update(json.loads(line))
    if result.returncode != 0 and math.isnan(record["evals_grad"]):
        record["note"] = "torchtree ran out of memory" if result.returncode == -9 else \
            f"torchtree failed: {result.stderr.strip()[-200:]}"
    assert abs(record["value"] - expected) < 1e-6 * abs(expected), (record["value"], expected)
    return record


def compress_tip_planes(patterns) -> list[torch.Tensor]:
    partials = tip_partials(patterns, torch.float64)  # [n_taxa, P, 4]
    return [p.T.contiguous() for p in partials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["sim27", "sim100"])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--torchtree-python", default=None, metavar="PYTHON",
                        help="python of a venv with torchtree==1.0.2: time it on the same "
                        "float64 batches in the same run")
    parser.add_argument("--beagle", action="store_true",
                        help="time BEAGLE (C API, CPU SSE, double; libhmsbeagle-dev) on the same "
                        "float64 batches in the same run")
    parser.add_argument("--memory-gb", type=float, default=6.0,
                        help="largest partials buffer per chunk, in GB")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kernel = ("fused C kernel" if cpu_kernel.supports_device(torch.device(args.device), torch.float64)
              else f"torch kernel ({cpu_kernel.unavailable_reason() or args.device})")
    print(f"device {args.device}, {kernel}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| data | model | dtype | B | lnL evals/s | lnL updates/s | lnL+grad evals/s "
          "| lnL+grad updates/s | grad/lnL time | torchtree lnL evals/s (same run) "
          "| vs torchtree lnL | vs torchtree lnL+grad | BEAGLE lnL evals/s (same run) "
          "| vs BEAGLE (same run) | vs BEAGLE (reference table) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    beagle_details = None
    for data in args.data:
        for model_name in args.models:
            for dtype_name in args.dtypes:
                for batch_size in args.batches:
                    r = run(data, model_name, getattr(torch, dtype_name), batch_size,
                            args.repeats, args.device, args.memory_gb * 1e9,
                            args.torchtree_python, args.beagle)
                    beagle = BEAGLE_REFERENCE[data, model_name]
                    peer = r.get("torchtree")
                    same_run = "| - | - | -"
                    if peer:
                        with_gradient = (f"{r['evals_grad'] / peer['evals_grad']:.2f}x"
                                         if not math.isnan(peer["evals_grad"])
                                         else peer.get("note", "failed"))
                        same_run = (f"| {peer['evals']:.4g} | {r['evals'] / peer['evals']:.2f}x "
                                    f"| {with_gradient}")
                    record = r.get("beagle")
                    same_beagle = (f"| {record['evals']:.4g} | {r['evals'] / record['evals']:.2f}x"
                                   if record else "| - | -")
                    beagle_details = record["details"] if record else beagle_details
                    chunked = "" if r["chunk"] == batch_size else f" (chunks of {r['chunk']})"
                    print(f"| {data} | {model_name} | {dtype_name} | {batch_size}{chunked} "
                          f"| {r['evals']:.4g} | {r['updates']:.3g} | {r['evals_grad']:.4g} "
                          f"| {r['updates_grad']:.3g} | {r['ratio']:.2f} {same_run} {same_beagle} "
                          f"| {r['evals'] / beagle:.2f}x |", flush=True)
    if beagle_details:
        print(f"\nBEAGLE: {beagle_details}")


if __name__ == "__main__":
    main()
