"""The protocol of Fourment et al. (2020) on DS1 and DS2: every estimator, scored against golden-run SRFs.

    .venv/bin/python benchmarks/marginal_study.py run DS2 --replicates 10 -o ds2.jsonl
    .venv/bin/python benchmarks/marginal_study.py table ds1.jsonl ds2.jsonl

``run`` estimates log p(y | topology) for every topology of the data set's
credible set (../shared/data/marginal/JC_no_gamma_credible_set_dsN), JC69,
Exp(10) priors, with each method and replicate, appending one JSON line per
(topology, replicate) as it goes, so an interrupted run keeps its results.
``table`` reads any number of files (records of the same data set are pooled;
a later file's result for the same method, tree and replicate wins),
normalises each method's estimates over the set (softmax) and
scores them against the normalised SRFs: KL(P || Q) and split RMSD, averaged
over replicates, with the time per tree; it prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from phylovi.io.alignment import read_alignment
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.marginal import METHODS, Posterior, estimate_many
from phylovi.marginal.scoring import kl_and_split_rmsd, read_credible_set

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "marginal"
DETERMINISTIC = {"laplus-gamma", "laplus-lognormal", "laplus-betaprime", "map", "ml"}


def run(args) -> None:
    torch.set_num_threads(args.threads)
    alignment = read_alignment(DATA / f"{args.data}.nex")
    patterns = compress_patterns(alignment)
    dtype = getattr(torch, args.dtype)
    likelihood = TreeLikelihood(patterns, parse_model("JC", patterns, dtype=dtype), dtype=dtype)
    topologies, _ = read_credible_set(DATA / f"JC_no_gamma_credible_set_{args.data.lower()}",
                                      alignment.taxa)
    methods = args.methods or list(METHODS)
    settings = {k: v for k, v in (item.split("=") for item in args.set)}
    settings = {k: int(v) if v.isdigit() else float(v) for k, v in settings.items()}
    done = set()
    if args.output.exists():
        for line in args.output.read_text().splitlines():
            record = json.loads(line)
            done.add((record["topology"], record["replicate"]))
    limit = args.topologies or len(topologies)
    first = args.first
    with open(args.output, "a") as handle:
        for replicate in range(args.first_replicate, args.replicates + 1):
            chosen = [m for m in methods if replicate == 1 or m not in DETERMINISTIC]
            for index, topology in enumerate(topologies[:limit], 1):
                if (index, replicate) in done or index < first:
                    continue
                started = time.perf_counter()
                results = estimate_many(Posterior(likelihood, topology), chosen,
                                        seed=1000 * replicate + index, **settings)
                # Time and evaluations each method needs on its own, shared draws included
                # (the study's accounting: SS, PS and MPS each pay for the ladder).
                record = {"data": args.data, "topology": index, "replicate": replicate,
                          "wall_seconds": time.perf_counter() - started,
                          "results": {m: {"value": r.value, "std_error": r.std_error,
                                          "evals": r.evals_alone,
                                          "seconds": r.seconds_alone, **r.diagnostics}
                                      for m, r in results.items()}}
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                print(f"{args.data} topology {index} replicate {replicate}: "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr)


def table(args) -> None:
    print("| data | method | replicates | KL (mean) | split RMSD (mean) | split RMSD (max) | "
          "seconds per tree (median) |")
    print("|---|---|---|---|---|---|---|")
    ranking = defaultdict(list)
    by_data = defaultdict(list)
    for path in args.files:  # a later file's result for the same method and tree wins
        for line in Path(path).read_text().splitlines():
            record = json.loads(line)
            by_data[record["data"]].append(record)
    for data, records in by_data.items():
        alignment = read_alignment(DATA / f"{data}.nex")
        topologies, srf = read_credible_set(
            DATA / f"JC_no_gamma_credible_set_{data.lower()}", alignment.taxa)
        n = max(r["topology"] for r in records)
        topologies, srf = topologies[:n], srf[:n]
        by_method = defaultdict(lambda: defaultdict(dict))
        for record in records:
            for method, result in record["results"].items():
                by_method[method][record["replicate"]][record["topology"]] = result
        for method in METHODS:
            replicates = [r for r in by_method.get(method, {}).values() if len(r) == n]
            if not replicates:
                continue
            scores = [kl_and_split_rmsd(srf, np.array([r[i]["value"] for i in range(1, n + 1)]),
                                        topologies) for r in replicates]
            seconds = statistics.median(r[i]["seconds"] for r in replicates for i in r)
            kl = statistics.mean(s[0] for s in scores)
            rmsd = [s[1] for s in scores]
            ranking[method].append(statistics.mean(rmsd))
            print(f"| {data} | {method} | {len(replicates)} | {kl:.4g} | {statistics.mean(rmsd):.4f} | "
                  f"{max(rmsd):.4f} | {seconds:.2f} |")
    print("\nRanking by mean split RMSD over the data sets:\n")
    for place, (method, values) in enumerate(sorted(ranking.items(),
                                                    key=lambda item: statistics.mean(item[1])), 1):
        print(f"{place}. {method} ({statistics.mean(values):.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("data", choices=["DS1", "DS2", "DS3", "DS4", "DS5"])
    run_parser.add_argument("--replicates", type=int, default=10)
    run_parser.add_argument("--methods", nargs="+", default=None)
    run_parser.add_argument("--topologies", type=int, default=None, help="only the first N")
    run_parser.add_argument("--first", type=int, default=1,
                            help="start at this topology (to split a data set between processes; "
                            "concatenate their outputs)")
    run_parser.add_argument("--first-replicate", type=int, default=1,
                            help="start at this replicate (to split replicates between processes)")
    run_parser.add_argument("--set", nargs="*", default=[], help="method settings NAME=VALUE")
    run_parser.add_argument("--threads", type=int, default=1)
    run_parser.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                            help="precision of the likelihood kernel (default float64)")
    run_parser.add_argument("-o", "--output", type=Path, required=True)
    table_parser = commands.add_parser("table")
    table_parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    main()
