"""``phylovi simulate``: an alignment evolved along a tree under a model."""

from __future__ import annotations


from phylovi.cli import _common
from phylovi.cli._common import HelpFormatter, add_common, setup
from phylovi.cli.loglik import MODEL_HELP


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulate a DNA alignment along a tree",
        description="Simulate a DNA alignment along a tree with branch lengths and write FASTA.",
        formatter_class=HelpFormatter)
    parser.add_argument("tree", help="tree with branch lengths: Newick or NEXUS")
    parser.add_argument("-m", "--model", default="JC",
                        help=MODEL_HELP + "; every parameter must be given or takes its "
                        "default (kappa 2, rates 1, alpha 1, pinv 0.1, equal frequencies)")
    parser.add_argument("-n", "--sites", type=int, default=1000, help="alignment length")
    add_common(parser, seed=True, output="FASTA file to write", compute=False)
    parser.set_defaults(run=run)


MAX_SITES = 10**8  # a byte per taxon and site, and far beyond any alignment


def run(args) -> int:
    import torch

    from phylovi.errors import ConfigError, TreeFileError
    from phylovi.io.atomic import write
    from phylovi.io.trees import read_tree
    from phylovi.likelihood.model_string import parse_model
    from phylovi.likelihood.simulate import simulate_alignment

    if not 1 <= args.sites <= MAX_SITES:
        raise ConfigError(f"--sites must be from 1 to {MAX_SITES}, got {args.sites}")
    setup(args)
    tree = read_tree(args.tree)
    if any(b != b for b in tree.branch_lengths):
        raise TreeFileError("every edge needs a branch length to simulate", path=args.tree)
    spaced = [name for name in tree.taxa if len(name.split()) != 1]
    if spaced:  # a FASTA reader, phylovi's included, cuts the name at the space
        raise TreeFileError(f"taxon {spaced[0]!r} has a space, which a FASTA header cannot "
                            "hold; rename it in the tree (e.g. with '_')", path=args.tree)
    model = parse_model(args.model)
    # The states of every node, the letters and the per-site draws (simulate_alignment).
    needed = args.sites * (tree.topology.arrays.n_nodes + 2 * len(tree.taxa) + 128)
    if needed > _common.available_memory():  # the kernel would kill us silently
        raise ConfigError(f"not enough memory to simulate --sites {args.sites} for "
                          f"{len(tree.taxa)} taxa (about {needed / 2**30:.1f} GiB)")
    generator = torch.Generator().manual_seed(args.seed)
    sequences = simulate_alignment(tree, model, args.sites, generator)
    with write(args.output) as handle:
        for name, sequence in zip(tree.taxa, sequences):
            handle.write(f">{name}\n")
            for start in range(0, len(sequence), 60):
                handle.write(sequence[start:start + 60] + "\n")
    return 0
