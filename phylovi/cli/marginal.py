"""``phylovi marginal``: log marginal likelihood of fixed topologies by any of 19 estimators."""

from __future__ import annotations

import math
import sys

from phylovi.cli._common import HelpFormatter, add_common, setup
from phylovi.cli.loglik import MODEL_HELP
from phylovi.cli.vi import PRIOR_HELP
from phylovi.io.records import to_json

METHOD_NAMES = ("gss", "ss", "ps", "mps", "bridge", "hm", "shm", "nested", "nmc", "cpo", "ppd",
                "laplus-gamma", "laplus-lognormal", "laplus-betaprime", "glis", "vbis", "elbo",
                "map", "ml")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "marginal", help="marginal likelihood of a fixed topology (19 estimators)",
        description=(
            "Estimate log p(alignment | topology), integrating over branch lengths, with the "
            "estimators of Fourment et al. (2020). Power posteriors run every temperature of "
            "the ladder as one batch. With --topologies, every topology of a credible-set file "
            "is estimated once and normalised; if the file gives reference probabilities "
            "(PROBABILITY<TAB>NEWICK lines, a MrBayes .trprobs, 'phylovi sbn query --credible' "
            "output), KL and split RMSD against them are reported. The importance-sampling "
            "estimators (nmc, glis, vbis, hm) give their weights' Pareto k in --json output, "
            "and a warning where it is too large for the estimate to be trusted. Nested "
            "sampling integrates over GLIS's gamma Laplus fit mixed with the prior; "
            "--set nested.prior_weight=1 integrates over the prior, as the study did."),
        formatter_class=HelpFormatter)
    parser.add_argument("alignment", help="DNA alignment: FASTA, NEXUS or PHYLIP (or gzipped)")
    parser.add_argument("tree", nargs="?", help="the topology (Newick or NEXUS)")
    parser.add_argument("--topologies", metavar="FILE",
                        help="estimate every topology of FILE: Newick or PROBABILITY<TAB>NEWICK lines, "
                        "'phylovi sbn query' output, or a tree file (a MrBayes .t's repeats "
                        "count once, a .trprobs' weights are its probabilities); the JSON "
                        "record lists them in order, as 'topologies'")
    parser.add_argument("--burnin", type=float, default=0.0, metavar="FRACTION",
                        help="with --topologies from a tree sample (a MrBayes .t, Newick lines): "
                        "the fraction of its trees to drop from the start, in [0, 1)")
    parser.add_argument("--method", action="append", default=None, metavar="METHOD",
                        help=f"estimator (repeat for several; default gss): {', '.join(METHOD_NAMES)}")
    parser.add_argument("--all", action="store_true", help="every estimator")
    parser.add_argument("--replicates", type=int, default=1,
                        help="independent replicates of each stochastic method")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a method setting, e.g. n_temperatures=50 or n_live=50; a bare NAME applies to "
                        "every method that has it, METHOD.NAME (gss.n_samples=200) to one method")
    parser.add_argument("-m", "--model", default="JC", help=MODEL_HELP)
    parser.add_argument("--prior", default="exp(10)", help=PRIOR_HELP)
    parser.add_argument("--format", choices=("fasta", "nexus", "phylip"), default=None,
                        help="alignment format (default: from the content, then the extension)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of TSV")
    add_common(parser, seed=True)
    parser.set_defaults(run=run)


def run(args) -> int:
    from phylovi.distributions.priors import parse_prior
    from phylovi.errors import ConfigError
    from phylovi.io.alignment import read_alignment
    from phylovi.io.trees import read_tree
    from phylovi.likelihood.model_string import parse_model
    from phylovi.likelihood.patterns import compress_patterns
    from phylovi.likelihood.tree_likelihood import TreeLikelihood
    from phylovi.marginal import METHODS, Posterior, estimate_many, parse_settings
    from phylovi.marginal.scoring import kl_and_split_rmsd, normalised, read_credible_set

    if (args.tree is None) == (args.topologies is None):
        raise ConfigError("give either a TREE or --topologies FILE")
    if args.burnin and args.topologies is None:
        raise ConfigError("--burnin applies to --topologies FILE, not to one TREE")
    methods = list(METHODS) if args.all else (args.method or ["gss"])
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; valid methods: {', '.join(METHODS)}")
    if args.replicates < 1:
        raise ConfigError(f"--replicates must be at least 1, got {args.replicates}")
    settings = parse_settings(args.set)
    kernel = setup(args)
    alignment = read_alignment(args.alignment, format=args.format)
    patterns = compress_patterns(alignment)
    if args.topologies:
        topologies, reference = read_credible_set(args.topologies, alignment.taxa, args.burnin)
    else:
        tree = read_tree(args.tree, taxa=alignment.taxa, lengths=False,  # integrated out
                         taxa_source="the alignment")
        topologies, reference = [tree.topology], None
    model = parse_model(args.model, patterns, dtype=kernel["dtype"])
    if model.free:
        raise ConfigError(f"the model leaves {', '.join(model.free)} free; give every value "
                          "(e.g. 'HKY{2}') since the marginal likelihood is for a fixed model")
    likelihood = TreeLikelihood(patterns, model, **kernel)
    rows = []
    for index, topology in enumerate(topologies, 1):
        internal = topology.internal_edges
        prior = parse_prior(args.prior, topology.n_edges, internal, dtype=kernel["dtype"],
                            device=kernel["device"])
        for replicate in range(1, args.replicates + 1):
            posterior = Posterior(likelihood, topology, prior)
            seed = (args.seed * 1_000_003 + index * 1009 + replicate) % 2**64
            results = estimate_many(posterior, methods, seed=seed, **settings)
            for method, result in results.items():
                rows.append({"topology": index, "method": method, "replicate": replicate,
                             "log_marginal_likelihood": result.value,
                             "std_error": result.std_error,
                             "likelihood_evals": result.evals_alone,
                             "seconds": round(result.seconds_alone, 3),
                             **result.diagnostics})
            if not args.quiet:
                print(f"topology {index}/{len(topologies)}, replicate {replicate} done",
                      file=sys.stderr)
    _warn_about_heavy_tails(rows)
    record = {"estimates": rows, "topologies": [t.to_newick() for t in topologies]}
    if len(topologies) > 1:
        record["scores"] = _scores(rows, methods, args.replicates, topologies, reference,
                                   normalised, kl_and_split_rmsd)
    if args.json:
        print(to_json(record))
        return 0
    _print_table(rows, ["topology", "method", "replicate", "log_marginal_likelihood", "std_error",
                        "likelihood_evals", "seconds"])
    if "scores" in record:
        print()
        columns = ["method", "replicate", "posterior_probabilities"]
        columns += ["kl", "split_rmsd"] if reference is not None else []
        _print_table(record["scores"], columns + ["seconds_per_tree"])
    return 0


def _warn_about_heavy_tails(rows: list[dict]) -> None:
    """One line per importance-sampling method whose weights' Pareto k is above its
    threshold in some rows: there the estimate and its standard error are unreliable."""
    flagged: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("pareto_k", -math.inf) > row.get("pareto_k_threshold", math.inf):
            flagged.setdefault(row["method"], []).append(row)
    for method, bad in flagged.items():
        of = sum(1 for row in rows if row["method"] == method)
        worst = max(row["pareto_k"] for row in bad)
        print(f"phylovi: warning: {method}: the importance weights' Pareto k is above "
              f"{bad[0]['pareto_k_threshold']:.2f} in {len(bad)} of {of} estimates (up to "
              f"{worst:.2f}): there the estimate and its standard error are unreliable",
              file=sys.stderr)


def _scores(rows, methods, replicates, topologies, reference, normalised, kl_and_split_rmsd):
    import numpy as np

    scores = []
    for method in methods:
        for replicate in range(1, replicates + 1):
            chosen = [r for r in rows if r["method"] == method and r["replicate"] == replicate]
            values = np.array([r["log_marginal_likelihood"] for r in chosen])
            score = {"method": method, "replicate": replicate,
                     "posterior_probabilities": [round(float(p), 6) for p in normalised(values)],
                     "seconds_per_tree": sum(r["seconds"] for r in chosen) / len(chosen)}
            if reference is not None:
                score["kl"], score["split_rmsd"] = kl_and_split_rmsd(reference, values, topologies)
            scores.append(score)
    return scores




def _print_table(rows: list[dict], columns: list[str]) -> None:
    print("\t".join(columns))
    for row in rows:
        cells = []
        for column in columns:
            value = row[column]
            if isinstance(value, float) and math.isnan(value):
                cells.append("NA")  # as None: no value (e.g. a standard error from one draw)
            elif isinstance(value, float):
                cells.append(f"{value:.6g}" if column != "log_marginal_likelihood" else f"{value:.4f}")
            elif isinstance(value, list):
                cells.append(",".join(f"{v:.4g}" for v in value))
            else:
                cells.append("NA" if value is None else str(value))
        print("\t".join(cells))
