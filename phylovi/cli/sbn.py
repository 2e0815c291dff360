"""``phylovi sbn``: fit a distribution over tree topologies to MCMC samples, then query it."""

from __future__ import annotations

import sys

from phylovi.cli._common import HelpFormatter, check_seed
from phylovi.io.records import to_json

METHOD_HELP = ("srf: sample relative frequencies; ccd: conditional clade distribution; "
               "sa: subsplit Bayesian network (SBN), rootings averaged; em: SBN fitted by EM "
               "over root positions; em-alpha: EM with an SA-based Dirichlet prior of strength "
               "--alpha (Zhang & Matsen 2018)")
SAMPLES_HELP = ("treat each file's weights as rounded fractions of N samples and use the "
                "counts round(w * N), pooled over the files (MrBayes .trprobs prints 6 "
                "decimals; the published SBN benchmarks use 750001); default: normalise each "
                "file's weights and give the files equal weight")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sbn", help="tree-topology posteriors: fit, query, KL",
        description=("Subsplit Bayesian networks and their baselines over unrooted tree "
                     "topologies: fit one to sampled trees (MrBayes .t/.trprobs, BEAST .trees, "
                     "Newick lists), then ask it for topology probabilities, the MAP tree, "
                     "credible sets, split support, draws, or its KL divergence from a "
                     "reference run."),
        formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="sbn_command", metavar="SBN_COMMAND",
                                     parser_class=type(parser))
    commands.required = True
    _add_fit(commands)
    _add_query(commands)
    _add_kl(commands)


def _add_fit(commands) -> None:
    parser = commands.add_parser(
        "fit", help="fit a topology posterior to tree samples",
        description=("Fit a distribution over unrooted topologies to one or more tree files "
                     "and save it as JSON. Several files (e.g. independent runs) are pooled."),
        formatter_class=HelpFormatter)
    parser.add_argument("trees", nargs="+", metavar="TREES",
                        help="tree files: Newick (one per line) or NEXUS (MrBayes .t/.trprobs, "
                        "BEAST .trees)")
    parser.add_argument("--method", choices=("srf", "ccd", "sa", "em", "em-alpha"), default="em",
                        help=METHOD_HELP)
    parser.add_argument("--alpha", type=float, default=None,
                        help="prior strength for --method em-alpha (default 1e-4)")
    parser.add_argument("--burnin", type=float, default=0.0,
                        help="fraction of each file's trees to discard from the start, in [0, 1)")
    parser.add_argument("--samples-per-file", type=int, default=None, metavar="N", help=SAMPLES_HELP)
    parser.add_argument("--rooted", action="store_true",
                        help="model rooted topologies, keeping each tree's root (e.g. BEAST time "
                        "trees); every tree must have a root of two children")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="EM stops when the objective changes by less than this")
    parser.add_argument("--min-iterations", type=int, default=50, help="EM runs at least this many iterations")
    parser.add_argument("--max-iterations", type=int, default=1000, help="EM runs at most this many iterations")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL",
                        help="model file to write (JSON)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary of the fit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or summary output")
    parser.set_defaults(run=run_fit)


def _add_query(commands) -> None:
    parser = commands.add_parser(
        "query", help="ask a fitted posterior about topologies",
        description=("Print topology probabilities, the top K topologies, a credible set, "
                     "split support or random draws from a model written by 'phylovi sbn "
                     "fit', as TSV (or JSON with --json)."),
        formatter_class=HelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="model file from 'phylovi sbn fit'")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--tree", metavar="TREE",
                      help="probability of a Newick string, or of every tree in a file")
    what.add_argument("--top", type=int, metavar="K", help="the K most probable topologies")
    what.add_argument("--credible", type=float, metavar="P",
                      help="the smallest set of most probable topologies with total probability P")
    what.add_argument("--splits", action="store_true",
                      help="support of every non-trivial split (bipartition)")
    what.add_argument("--clades", action="store_true",
                      help="support of every clade of two or more taxa (rooted models only)")
    what.add_argument("--sample", type=int, metavar="N", help="draw N topologies (Newick)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for --sample")
    parser.add_argument("--json", action="store_true", help="print JSON instead of TSV")
    parser.set_defaults(run=run_query)


def _add_kl(commands) -> None:
    parser = commands.add_parser(
        "kl", help="KL divergence from a reference run to a fitted posterior",
        description=("Print KL(reference || model) = sum over the reference's topologies of "
                     "p log(p / max(q, eps)), eps = float64 machine epsilon, where p pools "
                     "the reference files (e.g. MrBayes golden runs)."),
        formatter_class=HelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="model file from 'phylovi sbn fit'")
    parser.add_argument("--reference", nargs="+", required=True, metavar="TREES",
                        help="reference tree files (.trprobs, .t, Newick), pooled")
    parser.add_argument("--burnin", type=float, default=0.0,
                        help="fraction of each reference file's trees to discard first")
    parser.add_argument("--samples-per-file", type=int, default=None, metavar="N", help=SAMPLES_HELP)
    parser.add_argument("--json", action="store_true", help="print a JSON record")
    parser.set_defaults(run=run_kl)


def run_fit(args) -> int:
    from phylovi.io.atomic import check_output
    from phylovi.sbn.posterior import TreePosterior

    check_output(args.output)
    posterior = TreePosterior.fit(
        args.trees, method=args.method, alpha=args.alpha, burnin=args.burnin,
        samples_per_file=args.samples_per_file, rooted=args.rooted, tolerance=args.tolerance,
        min_iterations=args.min_iterations, max_iterations=args.max_iterations,
        progress=not args.quiet)
    posterior.save(args.output)
    info = posterior.info
    record = {"model": args.output, "method": posterior.method, "alpha": posterior.alpha,
              "rooted": posterior.rooted,
              "n_taxa": len(posterior.taxa), "n_trees": info.n_trees,
              "n_topologies": info.n_topologies, "iterations": info.iterations,
              "converged": info.converged,
              "objective": info.objective[-1] if info.objective else None,
              "seconds": round(info.seconds, 3)}
    if args.json:
        print(to_json(record))
    elif not args.quiet:
        em = ""
        if info.iterations:
            state = "converged" if info.converged else "stopped at the iteration cap"
            em = f"; EM {state} after {info.iterations} iterations, objective {record['objective']:.6f}"
        kind = "rooted topologies" if posterior.rooted else "topologies"
        print(f"{posterior.method}: {info.n_trees} trees, {info.n_topologies} {kind}, "
              f"{len(posterior.taxa)} taxa{em}; {info.seconds:.2f} s; wrote {args.output}")
    return 0


def run_query(args) -> int:
    from phylovi.errors import ConfigError
    from phylovi.io.trees import is_newick_string, read_trees
    from phylovi.sbn.posterior import TreePosterior

    posterior = TreePosterior.load(args.model)
    if args.tree is not None:
        if is_newick_string(args.tree):
            names, trees = [args.tree.strip()], [args.tree]
        else:
            sample = read_trees(args.tree, taxa=posterior.taxa, lengths=False)
            trees = (sample.rooted_topologies() if posterior.rooted
                     else [t.topology for t in sample.trees])
            names = [str(i) for i in range(1, len(trees) + 1)]  # its place in the file
        log_probs = posterior.log_prob(trees)
        # The topology as phylovi writes it (as --top does), so a file's rows say which tree.
        newicks = [t.to_newick() for t in posterior.topologies_of(trees)]
        rows = [{"tree": name, "probability": float(_exp(lp)), "log_probability": float(lp),
                 "newick": newick} for name, lp, newick in zip(names, log_probs, newicks)]
        return _emit(args, ["tree", "probability", "log_probability", "newick"], rows)
    if args.top is not None or args.credible is not None:
        if args.top is not None:
            ranked = posterior.top(args.top)
        else:
            ranked = posterior.credible_set(args.credible)
        rows, total = [], 0.0
        for rank, (topology, p) in enumerate(ranked, 1):
            total += p
            rows.append({"rank": rank, "probability": p, "cumulative": total,
                         "newick": topology.to_newick()})
        if args.credible is not None and total < args.credible * (1 - 1e-9):
            print(f"phylovi: note: the ranked topologies hold only {total:.10g} of the "
                  f"probability, less than {args.credible}", file=sys.stderr)
        return _emit(args, ["rank", "probability", "cumulative", "newick"], rows)
    if args.splits:
        rows = []
        for split, p in posterior.split_support().items():
            side, _ = posterior.split_names(split)
            rows.append({"support": p, "size": len(side), "taxa": ",".join(side)})
        return _emit(args, ["support", "size", "taxa"], rows)
    if args.clades:
        rows = [{"support": p, "size": c.bit_count(), "taxa": ",".join(posterior.clade_names(c))}
                for c, p in posterior.clade_support().items()]
        return _emit(args, ["support", "size", "taxa"], rows)
    if args.sample < 0:
        raise ConfigError(f"--sample must be at least 0, got {args.sample}")
    check_seed(args.seed)
    draws = posterior.sample(args.sample, seed=args.seed)
    if args.json:
        print(to_json([t.to_newick() for t in draws]))
    else:
        for topology in draws:
            print(topology.to_newick())
    return 0


def run_kl(args) -> int:
    from phylovi.sbn.posterior import TreePosterior

    posterior = TreePosterior.load(args.model)
    reference = TreePosterior.fit(args.reference, method="srf", taxa=posterior.taxa,
                                  burnin=args.burnin, samples_per_file=args.samples_per_file,
                                  rooted=posterior.rooted)  # compare like with like
    value = posterior.kl(reference)
    if args.json:
        print(to_json({"kl": value, "model": args.model, "method": posterior.method,
                       "reference": args.reference,
                       "reference_topologies": len(reference.training)}))
    else:
        print(f"{value:.6g}")
    return 0


def _emit(args, columns: list[str], rows: list[dict]) -> int:
    if args.json:
        print(to_json(rows))
        return 0
    print("\t".join(columns))
    for row in rows:
        print("\t".join(_cell(row[c]) for c in columns))
    return 0


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _exp(value: float) -> float:
    import math

    return math.exp(value) if value > -math.inf else 0.0
