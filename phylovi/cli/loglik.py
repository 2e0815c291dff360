"""``phylovi loglik``: the log-likelihood of a tree with branch lengths."""

from __future__ import annotations

import math
import sys

from phylovi.cli._common import HelpFormatter, add_common, setup
from phylovi.io.records import to_json

MODEL_HELP = ("substitution model as an IQ-TREE string: JC, F81, K2P, HKY, TN, SYM or GTR, "
              "with values in braces, +F (empirical) / +FQ (equal) / +FO (estimated) / "
              "+F{a,c,g,t} (not on JC, K2P, SYM: use F81, HKY, GTR), +I[{p}], "
              "+G[k][{alpha}] (k up to 64); e.g. 'GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}'")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "loglik", help="log-likelihood of an alignment on a tree",
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
                     "0.1 where it has none, within IQ-TREE's 1e-6 to 10."),
        formatter_class=HelpFormatter)
    parser.add_argument("alignment", help="DNA alignment: FASTA, NEXUS or PHYLIP (or gzipped)")
    parser.add_argument("tree", help="tree with branch lengths (without them with "
                                     "--optimize-lengths): Newick or NEXUS")
    parser.add_argument("-m", "--model", default="JC", help=MODEL_HELP)
    parser.add_argument("--format", choices=("fasta", "nexus", "phylip"), default=None,
                        help="alignment format (default: from the content, then the extension)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="keep free model parameters at their starting values")
    parser.add_argument("--optimize-lengths", action="store_true",
                        help="estimate the branch lengths by maximum likelihood as well")
    parser.add_argument("-o", "--output", metavar="TREE",
                        help="with --optimize-lengths: write the tree with the estimated "
                             "lengths here (Newick)")
    parser.add_argument("--json", action="store_true", help="print a JSON record")
    add_common(parser)
    parser.set_defaults(run=run, output_kind="file")


def run(args) -> int:
    from phylovi.errors import ConfigError, TreeFileError
    from phylovi.io.alignment import read_alignment
    from phylovi.io.trees import read_tree, write_newick
    from phylovi.likelihood.model_string import parse_model
    from phylovi.likelihood.optimize import optimize_branch_lengths, optimize_model
    from phylovi.likelihood.patterns import compress_patterns
    from phylovi.likelihood.tree_likelihood import TreeLikelihood

    if args.output is not None and not args.optimize_lengths:
        raise ConfigError("--output writes the estimated branch lengths: add --optimize-lengths")
    kernel = setup(args)
    alignment = read_alignment(args.alignment, format=args.format)
    patterns = compress_patterns(alignment)
    tree = read_tree(args.tree, taxa=alignment.taxa, taxa_source="the alignment")
    missing = int(sum(math.isnan(b) for b in tree.branch_lengths))
    if missing and not args.optimize_lengths:
        raise TreeFileError(f"{missing} of {len(tree.branch_lengths)} edges have no branch "
                            "length (add --optimize-lengths to estimate them)", path=args.tree)
    model = parse_model(args.model, patterns, dtype=kernel["dtype"])
    likelihood = TreeLikelihood(patterns, model, **kernel)
    if not args.optimize:
        model.free = ()
    if args.optimize_lengths:
        value, tree = optimize_branch_lengths(likelihood, tree)
        if args.output is not None:
            write_newick(args.output, [tree])
    else:
        value = optimize_model(likelihood, tree)
    if value == -math.inf:  # P(0) is exactly the identity: see models.from_spectrum
        cause = ("zero-length branches join sequences that differ"
                 if min(tree.branch_lengths) == 0 else
                 "a substitution the data need has a probability below the dtype's precision "
                 "under this model")
        print(f"phylovi: warning: the log-likelihood is -inf: the alignment is impossible on this "
              f"tree ({cause})", file=sys.stderr)
    record = {
        "log_likelihood": value,
        "model": model.to_string(),
        "estimated": list(model.free) + ["branch_lengths"] * args.optimize_lengths,
        "alignment": args.alignment,
        "tree": args.tree,
        "n_taxa": alignment.n_taxa,
        "n_sites": alignment.n_sites,
        "n_patterns": patterns.n_patterns,
        **({"tree_newick": tree.to_newick()} if args.optimize_lengths else {}),
        "dtype": args.dtype,
        "device": args.device,
    }
    if args.json:
        print(to_json(record))
    else:
        print(f"{value:.6f}")
        if not args.quiet:
            estimated = f" (estimated: {', '.join(record['estimated'])})" if record["estimated"] else ""
            print(f"model {record['model']}{estimated}; {alignment.n_taxa} taxa, "
                  f"{alignment.n_sites} sites, {patterns.n_patterns} patterns")
    return 0
