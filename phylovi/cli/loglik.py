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
                     "JSON), with a warning."),
        formatter_class=HelpFormatter)
    parser.add_argument("alignment", help="DNA alignment: FASTA, NEXUS or PHYLIP (or gzipped)")
    parser.add_argument("tree", help="tree with branch lengths: Newick or NEXUS")
    parser.add_argument("-m", "--model", default="JC", help=MODEL_HELP)
    parser.add_argument("--format", choices=("fasta", "nexus", "phylip"), default=None,
                        help="alignment format (default: from the content, then the extension)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="keep free model parameters at their starting values")
    parser.add_argument("--json", action="store_true", help="print a JSON record")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from phylovi.errors import TreeFileError
    from phylovi.io.alignment import read_alignment
    from phylovi.io.trees import read_tree
    from phylovi.likelihood.model_string import parse_model
    from phylovi.likelihood.optimize import optimize_model
    from phylovi.likelihood.patterns import compress_patterns
    from phylovi.likelihood.tree_likelihood import TreeLikelihood

    kernel = setup(args)
    alignment = read_alignment(args.alignment, format=args.format)
    patterns = compress_patterns(alignment)
    tree = read_tree(args.tree, taxa=alignment.taxa)
    missing = int(sum(math.isnan(b) for b in tree.branch_lengths))
    if missing:
        raise TreeFileError(f"{missing} of {len(tree.branch_lengths)} edges have no branch "
                            "length", path=args.tree)
    model = parse_model(args.model, patterns, dtype=kernel["dtype"])
    likelihood = TreeLikelihood(patterns, model, **kernel)
    if not args.optimize:
        model.free = ()
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
        "estimated": list(model.free),
        "alignment": args.alignment,
        "tree": args.tree,
        "n_taxa": alignment.n_taxa,
        "n_sites": alignment.n_sites,
        "n_patterns": patterns.n_patterns,
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
