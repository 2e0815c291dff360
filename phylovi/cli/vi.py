"""``phylovi vi``: variational branch-length posterior and marginal likelihood on a fixed tree."""

from __future__ import annotations

import math
import os
import sys

from phylovi.cli._common import HelpFormatter, add_common, setup
from phylovi.cli.loglik import MODEL_HELP

PRIOR_HELP = ("branch-length prior: exp(RATE) i.i.d. Exponential, gamma(SHAPE,RATE) i.i.d. Gamma, "
              "or gammadir(aT,bT,a,c), MrBayes' compound Dirichlet: tree length ~ Gamma(aT, bT), "
              "proportions ~ Dirichlet(a on external branches, a*c on internal ones)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "vi", help="variational branch-length posterior on a fixed topology",
        description=(
            "Fit a mean-field variational posterior (Gamma, Beta-prime or log-normal per branch) "
            "to the branch lengths of a fixed topology with implicit reparameterisation "
            "gradients, and estimate log p(alignment | topology) by importance sampling from "
            "it. Writes OUTDIR/summary.json, OUTDIR/posterior_mean.nwk, OUTDIR/elbo.csv, "
            "OUTDIR/elbo.png and OUTDIR/checkpoint.pt. A branch whose posterior mean is "
            "infinite (a beta-prime of shape beta <= 1) takes its median in "
            "posterior_mean.nwk; summary.json's median_for_mean lists those edges. Free "
            "model parameters (e.g. kappa in 'HKY') are point estimates optimised jointly."),
        formatter_class=HelpFormatter)
    parser.add_argument("alignment", help="DNA alignment: FASTA, NEXUS or PHYLIP (or gzipped)")
    parser.add_argument("tree", help="the topology: Newick or NEXUS (branch lengths are ignored)")
    parser.add_argument("-m", "--model", default="JC", help=MODEL_HELP)
    parser.add_argument("--family", choices=("gamma", "betaprime", "lognormal"), default="gamma",
                        help="variational family of each branch length")
    parser.add_argument("--prior", default="exp(10)", help=PRIOR_HELP)
    parser.add_argument("--bound", choices=("elbo", "iwae"), default="elbo",
                        help="objective: the ELBO or the K-sample importance-weighted bound")
    parser.add_argument("--gradient", choices=("pathwise", "score"), default="pathwise",
                        help="gradient estimator: pathwise (implicit reparameterisation) or the "
                        "score function with a leave-one-out baseline (ELBO only; for comparison: "
                        "its variance can stop a gamma q well short of the pathwise optimum, "
                        "5-20 nats on small problems)")
    parser.add_argument("-k", "--samples", type=int, default=4,
                        help="Monte Carlo draws of the branch lengths per step (K)")
    parser.add_argument("--steps", type=int, default=10000, help="maximum optimisation steps")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam's initial step size")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="converged when the windowed mean bound changes by less than this, "
                        "relative")
    parser.add_argument("--window", type=int, default=200, help="steps per convergence window")
    parser.add_argument("--is-samples", type=int, default=10000,
                        help="draws of q for the importance-sampling estimate of log p(y)")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="save OUTDIR/checkpoint.pt every this many steps")
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run from OUTDIR/checkpoint.pt")
    parser.add_argument("--format", choices=("fasta", "nexus", "phylip"), default=None,
                        help="alignment format (default: from the content, then the extension)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                        help="folder for the outputs (created if missing)")
    add_common(parser, seed=True)
    parser.set_defaults(run=run, output_kind="folder")


def run(args) -> int:
    from phylovi.distributions.priors import parse_prior
    from phylovi.errors import ConfigError, InferenceError, OutputError
    from phylovi.io.alignment import read_alignment
    from phylovi.io.trees import read_tree
    from phylovi.likelihood.model_string import parse_model
    from phylovi.likelihood.patterns import compress_patterns
    from phylovi.likelihood.tree_likelihood import TreeLikelihood
    from phylovi.vi.bounds import pareto_k_threshold
    from phylovi.vi.branch_lengths import BranchLengthVI, VISettings
    from phylovi.vi.report import write_outputs

    for name in ("samples", "steps", "window", "is_samples", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not 0 < args.lr < math.inf or not 0 <= args.tolerance < math.inf:
        raise ConfigError("--lr must be positive and --tolerance non-negative (both finite)")
    if args.gradient == "score" and (args.bound != "elbo" or args.samples < 2):
        raise ConfigError("--gradient score needs --bound elbo and --samples of at least 2")
    kernel = setup(args)
    alignment = read_alignment(args.alignment, format=args.format)
    patterns = compress_patterns(alignment)
    topology = read_tree(args.tree, taxa=alignment.taxa, lengths=False,
                         taxa_source="the alignment").topology
    model = parse_model(args.model, patterns, dtype=kernel["dtype"])
    likelihood = TreeLikelihood(patterns, model, **kernel)
    internal = topology.internal_edges
    prior = parse_prior(args.prior, topology.n_edges, internal, dtype=kernel["dtype"],
                        device=kernel["device"])
    settings = VISettings(family=args.family, bound=args.bound, estimator=args.gradient,
                          n_particles=args.samples, max_steps=args.steps, lr=args.lr,
                          tolerance=args.tolerance, window=args.window,
                          is_samples=args.is_samples)
    checkpoint = os.path.join(args.output, "checkpoint.pt")
    if args.resume and not os.path.exists(checkpoint):
        raise ConfigError(f"--resume: no checkpoint at {checkpoint}")
    created = not os.path.exists(args.output)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as error:  # /proc, a read-only mount: what check_output cannot foresee
        raise OutputError(f"cannot create the folder: {error.strerror or error}",
                          path=args.output) from None
    try:
        vi = BranchLengthVI(likelihood, topology, prior, settings)
        if args.resume:
            vi.resume(checkpoint)
        result = vi.fit(checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                        progress=not args.quiet)
        record = write_outputs(args.output, result, topology, {
            "alignment": args.alignment, "tree": args.tree, "model": model.to_string(),
            "prior": args.prior, "seed": args.seed, "dtype": args.dtype, "device": args.device})
    except BaseException as error:
        if created and isinstance(error, InferenceError) and os.path.exists(checkpoint):
            os.remove(checkpoint)  # a diverged run is not worth resuming
        if created and not os.listdir(args.output):  # a checkpoint stays, for --resume
            os.rmdir(args.output)
        raise
    if not args.quiet:
        state = "converged" if result.converged else "stopped at --steps"
        print(f"{result.method}: {state} after {result.steps} steps, "
              f"{result.bound.upper()} {result.elbo:.3f}; "
              f"log p(y) = {result.value:.3f} ± {result.std_error:.3f} "
              f"({settings.is_samples} draws); {result.wall_seconds:.1f} s; wrote {args.output}/")
    if not math.isfinite(record["log_marginal_likelihood"]):
        print("phylovi: warning: the importance-sampling estimate is not finite", file=sys.stderr)
    elif result.pareto_k > pareto_k_threshold(settings.is_samples):
        print(f"phylovi: warning: the importance weights' Pareto k is {result.pareto_k:.2f} (above "
              f"{pareto_k_threshold(settings.is_samples):.2f}): q's tails are too light for "
              "the estimate of log p(y) and its standard error to be trusted", file=sys.stderr)
    return 0
