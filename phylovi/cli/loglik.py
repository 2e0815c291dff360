"""``phylovi loglik``: the log-likelihood of a tree, or of each tree of a file, and the
tree-topology tests between them."""

from __future__ import annotations

import math
import os
import sys

from phylovi.cli._common import HelpFormatter, add_common, setup
from phylovi.io.records import to_json

MODEL_HELP = ("substitution model as an IQ-TREE string: JC, F81, K2P, HKY, TN, SYM or GTR, "
              "with values in braces, +F (empirical) / +FQ (equal) / +FO (estimated) / "
              "+F{a,c,g,t} (not on JC, K2P, SYM: use F81, HKY, GTR), +I[{p}], "
              "+G[k][{alpha}] (k up to 64); e.g. 'GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}'")

MANY_FITS = 50  # more trees to fit one by one than this get a hint about --shared-model
# the tree-topology tests' columns, in IQ-TREE's order
TEST_COLUMNS = ("delta", "bp_rell", "p_kh", "p_sh", "c_elw", "p_au")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "loglik", help="log-likelihood of an alignment on a tree, or on each tree of a file",
        description=("Print log p(alignment | tree, branch lengths, model). Model parameters "
                     "the model string leaves out (e.g. kappa in 'HKY', alpha in '+G') are "
                     "estimated by maximum likelihood on the fixed tree, as IQ-TREE does, "
                     "within IQ-TREE's ranges (exchangeabilities and kappa 1e-4 to 100, "
                     "Gamma shape 0.02 to 1000). Values given in the string are used as "
                     "given: a shape below 0.02 too (IQ-TREE raises it to 0.02), and "
                     "branch lengths of 0 (IQ-TREE raises them to 1e-6): "
                     "where they join sequences that differ the result is -inf (null in "
                     "JSON), with a warning. With --optimize-lengths the branch lengths are "
                     "estimated too (IQ-TREE's -te without -blfix), from the tree's own or "
                     "0.1 where it has none, within IQ-TREE's 1e-6 to 10. A tree file of "
                     "several trees (e.g. a MrBayes .t sample, with --burnin) gives a table, "
                     "a row per tree, numbered by position in the file; each tree's free "
                     "parameters are estimated on that tree alone (or, with --shared-model, "
                     "once on the first), and with none free all trees are evaluated in "
                     "batched calls. --tests adds the tree-topology tests. -m TEST "
                     "chooses the model instead: a table of every candidate's fit, AIC, "
                     "AICc and BIC."),
        formatter_class=HelpFormatter)
    parser.add_argument("alignment", help="DNA alignment: FASTA, NEXUS or PHYLIP (or gzipped)")
    parser.add_argument("tree", help="tree(s) with branch lengths (without them with "
                                     "--optimize-lengths): Newick or NEXUS (MrBayes .t, "
                                     "BEAST .trees)")
    parser.add_argument("-m", "--model", default="JC", help=MODEL_HELP + (
        "; or TEST: fit JC, F81+F, K2P, HKY+F, TN+F, SYM and GTR+F, each alone, +I, +G4 and "
        "+I+G4, with the branch lengths, and rank the 28 by BIC (IQ-TREE's -m TESTONLY "
        "with -te TREE); -o then writes the tree under the best"))
    parser.add_argument("--format", choices=("fasta", "nexus", "phylip"), default=None,
                        help="alignment format (default: from the content, then the extension)")
    parser.add_argument("--burnin", type=float, default=0.0,
                        help="fraction of the tree file's trees to discard from the start, "
                             "in [0, 1)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="keep free model parameters at their starting values")
    parser.add_argument("--optimize-lengths", action="store_true",
                        help="estimate the branch lengths by maximum likelihood as well")
    parser.add_argument("-o", "--output", metavar="TREE",
                        help="with --optimize-lengths: write the tree(s) with the estimated "
                             "lengths here (Newick, one per line)")
    parser.add_argument("--site-lnl", metavar="FILE",
                        help="also write each tree's per-site log-likelihoods here, as "
                             "IQ-TREE's -wsl does (CONSEL's input for AU and SH tests)")
    parser.add_argument("--shared-model", action="store_true",
                        help="with several trees: estimate the free model parameters once, on "
                             "the first tree, and use them for every tree (IQ-TREE's -z with "
                             "-te FIRST): the trees are compared under one model, and without "
                             "--optimize-lengths evaluated in batched calls")
    parser.add_argument("--tests", type=int, nargs="?", const=10000, default=0, metavar="N",
                        help="with several trees: tree-topology tests by N RELL replicates "
                             "(10000 if N is left out), as IQ-TREE's -zb N -au: bp-RELL, "
                             "p-KH, p-SH, c-ELW and p-AU per tree")
    parser.add_argument("--json", action="store_true", help="print a JSON record")
    add_common(parser, seed=True)
    parser.set_defaults(run=run, output_kind="file")


def run(args) -> int:
    from phylovi.errors import ConfigError, TreeFileError
    from phylovi.io.alignment import read_alignment
    from phylovi.io.atomic import check_output, staged
    from phylovi.io.records import write_site_log_likelihoods
    from phylovi.io.trees import read_trees, write_newick
    from phylovi.likelihood.model_string import parse_model
    from phylovi.likelihood.optimize import optimize_branch_lengths, optimize_model
    from phylovi.likelihood.patterns import compress_patterns
    from phylovi.likelihood.topology_tests import topology_tests
    from phylovi.likelihood.tree_likelihood import TreeLikelihood

    selecting = args.model.strip().upper() == "TEST"
    if args.output is not None and not args.optimize_lengths and not selecting:
        raise ConfigError("--output writes the estimated branch lengths: add --optimize-lengths")
    if selecting:
        unused = [flag for flag, given in (("--tests", args.tests), ("--site-lnl", args.site_lnl),
                                           ("--shared-model", args.shared_model),
                                           ("--no-optimize", not args.optimize)) if given]
        if unused:
            raise ConfigError(f"-m TEST chooses a model; it does not take {unused[0]}")
    if args.tests < 0:
        raise ConfigError(f"--tests takes a number of replicates, got {args.tests}")
    kernel = setup(args)
    if args.site_lnl is not None:
        check_output(args.site_lnl)
        if args.output is not None and os.path.realpath(args.output) == os.path.realpath(
                args.site_lnl):
            raise ConfigError("--output and --site-lnl name the same file")
    alignment = read_alignment(args.alignment, format=args.format)
    patterns = compress_patterns(alignment)
    sample = read_trees(args.tree, taxa=alignment.taxa, burnin=args.burnin,
                        taxa_source="the alignment")
    numbers = range(sample.first_number, sample.first_number + len(sample))
    # a file of several trees gets the table, even where the burn-in leaves one
    several = sample.first_number - 1 + len(sample) > 1
    if selecting:
        if len(sample) != 1:
            raise ConfigError(f"-m TEST chooses the model on one tree; {args.tree} gives "
                              f"{len(sample)} (after the burn-in)")
        return _select(args, kernel, alignment, patterns, sample.trees[0])
    if args.tests and len(sample) < 2:
        raise ConfigError("--tests compares two or more trees; "
                          + ("the burn-in leaves one" if several else f"{args.tree} holds one"))
    if 0 < args.tests < 1000:
        print(f"phylovi: warning: --tests {args.tests}: with fewer than 1000 replicates the "
              "p-values are rough (IQ-TREE advises at least 1000)", file=sys.stderr)
    if not args.optimize_lengths:
        for number, tree in zip(numbers, sample.trees):
            missing = int(sum(math.isnan(b) for b in tree.branch_lengths))
            if missing:
                which = f"tree {number}: " if several else ""
                raise TreeFileError(f"{which}{missing} of {len(tree.branch_lengths)} edges have "
                                    "no branch length (add --optimize-lengths to estimate them)",
                                    path=args.tree)
    model = parse_model(args.model, patterns, dtype=kernel["dtype"])
    if not args.optimize:
        model.free = ()
    likelihood = TreeLikelihood(patterns, model, **kernel)
    estimated = list(model.free) + ["branch_lengths"] * args.optimize_lengths
    shared = args.shared_model and bool(model.free) and len(sample) > 1
    if shared:  # fit on the first tree, then hold the values fixed
        fitted = (optimize_branch_lengths if args.optimize_lengths else optimize_model)(
            likelihood, sample.trees[0])
        if (fitted[0] if args.optimize_lengths else fitted) == -math.inf:
            raise ConfigError(f"--shared-model: tree {sample.first_number} is impossible "
                              "(log-likelihood -inf), so the model cannot be fitted on it; "
                              "put a possible tree first")
        model.free = ()
    per_tree_model = bool(model.free)
    if per_tree_model and len(sample) > MANY_FITS and not args.quiet:
        print(f"phylovi: fitting {', '.join(model.free)} on each of {len(sample)} trees; "
              "--shared-model fits them once, or give their values in the model string",
              file=sys.stderr)
    rows, sites = _evaluate(likelihood, sample.trees, args.optimize_lengths,
                            progress=not args.quiet and len(sample) > 1,
                            sites=args.site_lnl is not None or bool(args.tests))
    tests = {}
    if args.tests:
        result = topology_tests(sites.double().cpu().numpy(), patterns.weights, args.tests,
                                args.seed)
        tests = {name: getattr(result, name).tolist() for name in TEST_COLUMNS}
    for number, (value, _, tree) in zip(numbers, rows):
        if value == -math.inf:  # P(0) is exactly the identity: see models.from_spectrum
            cause = ("zero-length branches join sequences that differ"
                     if min(tree.branch_lengths) == 0 else
                     "a substitution the data need has a probability below the dtype's "
                     "precision under this model")
            which = f"tree {number}: " if several else ""
            print(f"phylovi: warning: {which}the log-likelihood is -inf: the alignment is "
                  f"impossible on this tree ({cause})", file=sys.stderr)
    outputs = [path for path in (args.output, args.site_lnl) if path is not None]
    with staged(outputs) as temporary:  # both files or neither
        if args.output is not None:
            write_newick(temporary[args.output], [tree for _, _, tree in rows])
        if args.site_lnl is not None:
            write_site_log_likelihoods(temporary[args.site_lnl],
                                       sites.double().cpu().numpy()[:, patterns.site_pattern],
                                       numbers if several else None)
    about = _about(args, alignment, patterns)
    summary = (f"{alignment.n_taxa} taxa, {alignment.n_sites} sites, "
               f"{patterns.n_patterns} patterns")
    if not several:
        value, model_string, tree = rows[0]
        record = {"log_likelihood": value, "model": model_string, "estimated": estimated,
                  **about, **({"tree_newick": tree.to_newick()} if args.optimize_lengths else {})}
        if args.json:
            print(to_json(record))
        else:
            print(f"{value:.6f}")
            if not args.quiet:
                which = f" (estimated: {', '.join(estimated)})" if estimated else ""
                print(f"model {model_string}{which}; {summary}")
        return 0
    per_tree = [{"number": number, "log_likelihood": value,
                 **({"model": model_string} if per_tree_model else {}),
                 **{name: tests[name][i] for name in tests},
                 **({"tree_newick": tree.to_newick()} if args.optimize_lengths else {})}
                for i, (number, (value, model_string, tree)) in enumerate(zip(numbers, rows))]
    if args.json:
        print(to_json({"trees": per_tree, "n_trees": len(sample), "burnin": args.burnin,
                       **({} if per_tree_model else {"model": rows[0][1]}),
                       "estimated": estimated, "shared_model": shared,
                       **({"tests": {"replicates": args.tests, "seed": args.seed}}
                          if tests else {}), **about}))
        return 0
    print("\t".join(["tree", "log_likelihood"] + ["model"] * per_tree_model + list(tests)))
    for row in per_tree:
        print("\t".join([str(row["number"]), f"{row['log_likelihood']:.6f}"]
                        + ([row["model"]] if per_tree_model else [])
                        + [f"{row[name]:.4f}" for name in tests]))
    if not args.quiet:
        fitted = [name for name in estimated if name != "branch_lengths"]
        which = (f"model {rows[0][1]} (estimated on tree {sample.first_number}: "
                 f"{', '.join(fitted)})" if shared else
                 f"estimated per tree: {', '.join(estimated)}" if estimated
                 else f"model {rows[0][1]}")
        count = f"{len(sample)} tree" + "s" * (len(sample) != 1)
        print(f"phylovi: {count}; {which}; {summary}", file=sys.stderr)
        if tests:
            rejected = [str(row["number"]) for row in per_tree if row["p_au"] < 0.05]
            print(f"phylovi: {args.tests} RELL replicates; the AU test rejects at 5%: "
                  f"{', '.join(rejected) or 'no tree'}", file=sys.stderr)
    return 0


def _about(args, alignment, patterns) -> dict:
    """The inputs, as every JSON record of the command names them."""
    return {"alignment": args.alignment, "tree": args.tree, "n_taxa": alignment.n_taxa,
            "n_sites": alignment.n_sites, "n_patterns": patterns.n_patterns,
            "dtype": args.dtype, "device": args.device}


def _select(args, kernel, alignment, patterns, tree) -> int:
    """-m TEST: every candidate model fitted on ``tree``, a row each, best BIC first."""
    from tqdm import tqdm

    from phylovi.io.atomic import staged
    from phylovi.io.trees import write_newick
    from phylovi.likelihood.model_selection import CANDIDATES, select_model

    with tqdm(total=len(CANDIDATES), desc="models", unit="model", file=sys.stderr,
              leave=False, disable=args.quiet or None) as bar:
        fits = select_model(patterns, tree, progress=lambda fit: bar.update(1), **kernel)
    best = {criterion: min(fits, key=lambda fit: getattr(fit, criterion)).name
            for criterion in ("bic", "aic", "aicc")}
    if args.output is not None:
        with staged([args.output]) as temporary:
            write_newick(temporary[args.output], [fits[0].tree])
    if args.json:
        print(to_json({
            "models": [{"name": fit.name, "log_likelihood": fit.log_likelihood, "df": fit.df,
                        "aic": fit.aic, "aicc": fit.aicc, "bic": fit.bic, "model": fit.model,
                        "tree_newick": fit.tree.to_newick()} for fit in fits],
            "best": best, **_about(args, alignment, patterns)}))
        return 0
    print("\t".join(["model", "log_likelihood", "df", "AIC", "AICc", "BIC"]))
    for fit in fits:
        print("\t".join([fit.name, f"{fit.log_likelihood:.4f}", str(fit.df),
                         *(f"{getattr(fit, c):.4f}" for c in ("aic", "aicc", "bic"))]))
    if not args.quiet:
        print(f"phylovi: best-fit model by BIC: {best['bic']} (by AIC: {best['aic']}, by "
              f"AICc: {best['aicc']}); its fit: {fits[0].model}; {alignment.n_taxa} taxa, "
              f"{alignment.n_sites} sites, {patterns.n_patterns} patterns", file=sys.stderr)
    return 0


def _evaluate(likelihood, trees, fit_lengths: bool, progress: bool, sites: bool):
    """``(lnL, model string, tree)`` per tree, and with ``sites`` their per-pattern values
    ``[n_trees, P]`` (else None): free parameters (and, with ``fit_lengths``, the branch
    lengths) estimated on each tree alone, from the same start, so that a tree's row does
    not depend on the trees before it; with nothing to estimate, batched evaluations."""
    import torch

    from phylovi.likelihood.optimize import optimize_branch_lengths, optimize_model

    model = likelihood.model
    if not model.free and not fit_lengths:
        if sites:  # one pass: the totals are the weighted sums of the site values
            per_pattern = likelihood.tree_site_log_likelihoods(trees)
            values = (per_pattern.double() @ likelihood.weights.double()).tolist()
        else:
            per_pattern, values = None, likelihood.tree_log_likelihoods(trees)
        return [(value, model.to_string(), tree) for value, tree in zip(values, trees)], per_pattern
    start = dict(model.parameters)
    rows, per_pattern = [], []
    for tree in _progress_bar(trees, progress):
        model.parameters = dict(start)
        if fit_lengths:
            value, tree = optimize_branch_lengths(likelihood, tree)
        else:
            value = optimize_model(likelihood, tree)
        rows.append((value, model.to_string(), tree))
        if sites:
            per_pattern.append(likelihood.tree_site_log_likelihoods([tree]))
    return rows, torch.cat(per_pattern) if sites else None


def _progress_bar(trees, enabled: bool):
    from tqdm import tqdm

    return tqdm(trees, disable=not enabled or None, desc="trees", unit="tree",
                file=sys.stderr, leave=False)
