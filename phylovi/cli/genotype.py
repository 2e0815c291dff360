"""``phylovi genotype``: tumour single-cell genotype matrices (exact tests, simulation, networks)."""

from __future__ import annotations

import sys

from phylovi.cli import _common
from phylovi.cli._common import HelpFormatter, add_common, check_seed
from phylovi.genotype.correct import DEFAULT_ALPHA, DEFAULT_BETA
from phylovi.io.records import to_json

# Upper bounds on the sizes, checked before any work: the coalescent simulator needs
# cells^2 bytes per matrix, and larger values only fail deep inside numpy.
MAX_SIZE = 100_000
MAX_NUMBER = 10_000_000

MATRIX_HELP = ("genotype matrix, TSV or CSV: a header (corner label, then mutation names), then "
               "one row per cell (name, then 0, 1, or 3/NA/?/nan/empty for missing; gzip is read)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "genotype", help="tumour genotype matrices: exact tests, simulation, networks",
        description=("Binary cells x mutations matrices from single-cell sequencing: test them "
                     "exactly (perfect phylogeny, linear or branching, the mutation tree), "
                     "simulate them under the infinite-sites model with noise, and train or "
                     "apply networks that call branching and conflicts on noisy matrices of "
                     "any size and correct them (noise elimination)."),
        formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="genotype_command", metavar="GENOTYPE_COMMAND",
                                     parser_class=type(parser))
    commands.required = True
    _add_check(commands)
    _add_simulate(commands)
    _add_train(commands)
    _add_predict(commands)
    _add_evaluate(commands)


def _add_matrix_arguments(parser) -> None:
    parser.add_argument("matrix", help=MATRIX_HELP)
    parser.add_argument("--mutations-as-rows", action="store_true",
                        help="the file is mutations x cells (SCITE's layout)")


def _add_check(commands) -> None:
    parser = commands.add_parser(
        "check", help="exact tests: perfect phylogeny, linear or branching, mutation tree",
        description=("Whether the matrix admits a perfect phylogeny (no pair of mutations shows "
                     "all three gametes 11, 10, 01), which pairs conflict (how many and the "
                     "first 10 as MUTATION/MUTATION; --json lists them all), whether a "
                     "conflict-free matrix is linear or branching, and its mutation tree in "
                     "Newick."),
        formatter_class=HelpFormatter)
    _add_matrix_arguments(parser)
    parser.add_argument("--missing-as", type=int, choices=(0, 1), default=0,
                        help="read missing entries as this value for the exact tests")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run_check)


_SHOWN_PAIRS = 10  # conflicting pairs that check's text output names


def run_check(args) -> int:
    import numpy as np

    from phylovi.genotype import GenotypeMatrix, conflicting_pairs, perfect_phylogeny_tree
    from phylovi.genotype.perfect_phylogeny import (is_linear, is_perfect_phylogeny,
                                                    n_conflicting_pairs)

    matrix = GenotypeMatrix.read(args.matrix, mutations_as_rows=args.mutations_as_rows)
    values = matrix.filled(args.missing_as)
    perfect = is_perfect_phylogeny(values)  # O(nm); the pairs below only when there are some
    # JSON lists every conflicting pair; the text gives their number and the first few
    shown = (np.zeros((0, 2), dtype=np.int64) if perfect
             else conflicting_pairs(values, None if args.json else _SHOWN_PAIRS))
    n_pairs = 0 if perfect else len(shown) if args.json else n_conflicting_pairs(values)
    record = {"cells": matrix.n_cells, "mutations": matrix.n_mutations,
              "missing": int(matrix.missing.sum()), "perfect_phylogeny": perfect,
              "conflicting_pairs": [[matrix.mutations[p], matrix.mutations[q]] for p, q in shown]}
    if perfect:
        record["shape"] = "linear" if is_linear(values) else "branching"
        record["tree"] = perfect_phylogeny_tree(values, matrix.mutations, matrix.cells)
    if args.json:
        print(to_json(record))
        return 0
    print(f"matrix\t{matrix.n_cells} cells x {matrix.n_mutations} mutations, "
          f"{record['missing']} missing (read as {args.missing_as})")
    print(f"perfect_phylogeny\t{'yes' if record['perfect_phylogeny'] else 'no'}")
    listed = "".join(f"\t{p}/{q}" for p, q in record["conflicting_pairs"])
    more = "\t..." if n_pairs > len(shown) else ""
    print(f"conflicting_pairs\t{n_pairs} of {matrix.n_mutations * (matrix.n_mutations - 1) // 2}"
          f"{listed}{more}")
    if "shape" in record:
        print(f"shape\t{record['shape']}")
        print(f"tree\t{record['tree']}")
    return 0


def _add_size_and_noise(parser) -> None:
    """The matrix size and noise flags of ``simulate`` and ``evaluate``."""
    parser.add_argument("--cells", type=int, default=10, help="cells (rows)")
    parser.add_argument("--mutations", type=int, default=10, help="mutations (columns)")
    parser.add_argument("--alpha", type=float, default=0.002, help="false-positive rate")
    parser.add_argument("--beta", type=float, default=0.1, help="false-negative rate")
    parser.add_argument("--missing", type=float, default=0.0, help="missing-entry rate")
    _add_prior(parser)


def _add_prior(parser) -> None:
    from phylovi.genotype.simulate import PRIORS

    parser.add_argument("--prior", choices=PRIORS, default="coalescent",
                        help="tree prior: coalescent (the paper's: a neutral genealogy of the "
                        "cells), clonal (a few clones, truncal mutations, identical cells, "
                        "sometimes normal cells), or mixed (each matrix from either)")


def _add_simulate(commands) -> None:
    parser = commands.add_parser(
        "simulate", help="simulate noisy matrices under the infinite-sites model",
        description=("Simulate true and observed genotype matrices: a tree of the cells (see "
                     "--prior), mutations on its branches, then false positives, false "
                     "negatives and missing entries. Writes "
                     "PREFIX_true_K.tsv and PREFIX_observed_K.tsv for each matrix K, and "
                     "PREFIX_labels.tsv with the exact labels."),
        formatter_class=HelpFormatter)
    _add_size_and_noise(parser)
    parser.add_argument("--linear-fraction", type=float, default=0.0,
                        help="fraction of matrices made linear (same column sizes); the "
                        "others keep their simulated tree, which can be linear too (often "
                        "under --prior clonal: a few clones may form one chain)")
    parser.add_argument("-n", "--number", type=int, default=1, help="matrices to simulate")
    add_common(parser, seed=True, compute=False,
               output="output prefix, e.g. sims/m (folders must exist)")
    parser.set_defaults(run=run_simulate)


def run_simulate(args) -> int:
    from phylovi.genotype import GenotypeMatrix
    from phylovi.genotype.simulate import simulate
    from phylovi.io.atomic import staged

    _check_sizes(args, number=1, cells=2, mutations=1)
    check_seed(args.seed)
    labels = f"{args.output}_labels.tsv"
    matrices = {(kind, k): f"{args.output}_{kind}_{k + 1}.tsv"
                for k in range(args.number) for kind in ("true", "observed")}
    # All files or none; a path that cannot be written fails before the simulation.
    if _bytes_needed(args) > _common.available_memory():  # the kernel would kill us silently
        raise _too_large(args)
    with staged([*matrices.values(), labels]) as temporary:
        try:
            batch = simulate(args.number, args.cells, args.mutations, args.alpha, args.beta,
                             args.missing, args.linear_fraction, args.seed, args.prior)
        except MemoryError:
            raise _too_large(args) from None
        for (kind, k), path in matrices.items():
            GenotypeMatrix(getattr(batch, kind)[k]).write(temporary[path])
        with open(temporary[labels], "w", encoding="utf-8") as handle:
            handle.write("matrix\tshape\tobserved_conflict_free\n")
            for k in range(len(batch)):
                shape = "linear" if batch.linear[k] else "branching"
                handle.write(f"{k + 1}\t{shape}\t{'yes' if batch.conflict_free[k] else 'no'}\n")
    return 0


def _check_sizes(args, **lowest) -> None:
    """Each integer option named in ``lowest`` (``number=1`` for ``--number``) from its lowest
    value to :data:`MAX_SIZE` (:data:`MAX_NUMBER` for numbers of matrices)."""
    from phylovi.errors import ConfigError

    for name, low in lowest.items():
        high = MAX_NUMBER if name.endswith("number") else MAX_SIZE
        value = getattr(args, name)
        if not low <= value <= high:
            raise ConfigError(f"--{name.replace('_', '-')} must be from {low} to {high}, "
                              f"got {value}")


def _bytes_needed(args) -> int:
    """A lower bound on the simulation's memory: per matrix, the coalescent's 2 cells x
    cells booleans (cells under each node) and the true and observed matrices."""
    return args.number * (2 * args.cells * args.cells + 2 * args.cells * args.mutations)


def _too_large(args):
    from phylovi.errors import ConfigError

    return ConfigError(f"not enough memory for --number {args.number} matrices of --cells "
                       f"{args.cells} x --mutations {args.mutations}")


def _add_train(commands) -> None:
    from phylovi.genotype.settings import TrainSettings

    defaults = TrainSettings()
    parser = commands.add_parser(
        "train", help="train a network on matrices simulated on the fly",
        description=("Train phylovi's permutation-invariant network for a task on simulated "
                     "matrices whose size and noise rates are drawn from the given ranges at "
                     "every step. Labels are exact. Writes MODEL, MODEL.checkpoint (rerun the "
                     "same command to resume, or with more --steps to extend), and the "
                     "validation curve as MODEL.csv and MODEL.png."),
        formatter_class=HelpFormatter)
    parser.add_argument("--task", choices=("branching", "noise", "eliminate"), required=True,
                        help="branching: is the true phylogeny branching (not linear)? noise: "
                        "does the observed matrix break the perfect-phylogeny condition? "
                        "eliminate: the true value of every entry")
    for name, kind in (("cells", int), ("mutations", int), ("alpha", float), ("beta", float),
                       ("missing", float)):
        low, high = getattr(defaults, name)
        parser.add_argument(f"--{name}", type=_range(kind), default=f"{low}..{high}",
                            metavar="LOW..HIGH", help=f"range of {name} (one value fixes it)")
    _add_prior(parser)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimisation steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="matrices per step")
    parser.add_argument("--width", type=int, default=defaults.width, help="hidden width")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    add_common(parser, seed=True, compute=False, output="the model file")
    parser.set_defaults(run=run_train)


def _range(kind):
    def parse(text: str):
        low, dots, high = str(text).partition("..")
        try:
            if dots and not high:  # "5.." would silently mean 5..5
                raise ValueError
            return (kind(low), kind(high or low))
        except ValueError:
            import argparse

            raise argparse.ArgumentTypeError(f"expected LOW..HIGH or one value, got {text!r}")

    return parse


def run_train(args) -> int:
    from phylovi.errors import ConfigError
    from phylovi.genotype.train import TrainSettings, train, training_device

    check_seed(args.seed)
    for name in ("cells", "mutations"):
        if getattr(args, name)[1] > MAX_SIZE:
            raise ConfigError(f"--{name} must be at most {MAX_SIZE}, got "
                              f"{'..'.join(map(str, getattr(args, name)))}")
    try:
        training_device(args.device)
    except ConfigError as error:
        raise ConfigError(f"--device: {error}") from None
    settings = TrainSettings(task=args.task, cells=args.cells, mutations=args.mutations,
                             alpha=args.alpha, beta=args.beta, missing=args.missing,
                             prior=args.prior, steps=args.steps, batch_size=args.batch_size,
                             width=args.width, seed=args.seed)
    metrics = train(settings, args.output, device=args.device, progress=not args.quiet)
    if not args.quiet:
        print(f"validation accuracy {metrics['accuracy']:.4f}, AUC {metrics['auc']:.4f}, "
              f"calibration error {metrics['calibration_error']:.4f}", file=sys.stderr)
    return 0


TASKS_HELP = ("branching: the probability that the true phylogeny branches (is not linear); "
              "noise: the probability that the matrix breaks the perfect-phylogeny condition; "
              "eliminate: the corrected, conflict-free matrix")


def _add_predict(commands) -> None:
    parser = commands.add_parser(
        "predict", help="apply a network to matrices",
        description=("Apply the model phylovi ships for a task (or --model) to each matrix. "
                     "branching and noise print one probability per matrix. eliminate writes "
                     "PREFIX_corrected.tsv (missing entries filled) and PREFIX_tree.nwk (its "
                     "perfect phylogeny, mutations on edges) per matrix, with PREFIX from -o "
                     "(and the input file's name when there are several, so those names must "
                     "differ), and prints what it changed. A network output that still "
                     "conflicts is decoded onto a tree and reported as repaired. A matrix too "
                     "small to branch (under 2 cells or 2 mutations) or to "
                     "conflict (under 3 cells or 2 mutations) gets the exact probability 0."),
        formatter_class=HelpFormatter)
    parser.add_argument("matrices", nargs="+", metavar="MATRIX", help=MATRIX_HELP)
    parser.add_argument("--mutations-as-rows", action="store_true",
                        help="the files are mutations x cells (SCITE's layout); outputs keep it")
    parser.add_argument("--task", choices=("branching", "noise", "eliminate"), required=True,
                        help=TASKS_HELP)
    parser.add_argument("--model", default=None, help="a model file from `phylovi genotype train`")
    parser.add_argument("-o", "--output", default=None, metavar="PREFIX",
                        help="output prefix for --task eliminate (required there)")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="false-positive rate of the data, for --task eliminate")
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA,
                        help="false-negative (dropout) rate of the data, for --task eliminate")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run_predict)


def _check_rates(args, names) -> None:
    from phylovi.errors import ConfigError

    for name in names:
        if not 0 <= getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be in [0, 1), got {getattr(args, name)}")


def _load_for(task: str, path: str | None):
    from phylovi.errors import ConfigError
    from phylovi.genotype.nets import load_model

    model = load_model(path or task)
    if model.task != task:
        raise ConfigError(f"{path}: the model was trained for task {model.task!r}, not {task!r}")
    return model


def run_predict(args) -> int:
    from phylovi.errors import ConfigError
    from phylovi.genotype import GenotypeMatrix

    if args.task == "eliminate" and args.output is None:
        raise ConfigError("--task eliminate writes matrices: give an output prefix with -o")
    _check_rates(args, ("alpha", "beta"))
    prefixes = _output_prefixes(args.output, args.matrices) if args.task == "eliminate" else None
    model = _load_for(args.task, args.model)
    matrices = [GenotypeMatrix.read(path, mutations_as_rows=args.mutations_as_rows)
                for path in args.matrices]
    if args.task == "eliminate":
        return _write_eliminated(args, model, matrices, prefixes)
    probabilities = model.predict([m.values for m in matrices])
    for path, m in zip(args.matrices, matrices):
        if model.too_small(m.values.shape):
            print(f"phylovi: note: {path} ({m.n_cells} x {m.n_mutations}) is too small to "
                  f"{'branch' if args.task == 'branching' else 'conflict'}; its probability "
                  "is exactly 0", file=sys.stderr)
    rows = [{"matrix": path, "cells": m.n_cells, "mutations": m.n_mutations,
             "probability": round(float(p), 6)}
            for path, m, p in zip(args.matrices, matrices, probabilities)]
    if args.json:
        print(to_json({"task": args.task, "predictions": rows}))
        return 0
    column = "p_branching" if args.task == "branching" else "p_conflict"
    print(f"matrix\tcells\tmutations\t{column}")
    for row in rows:
        print(f"{row['matrix']}\t{row['cells']}\t{row['mutations']}\t{row['probability']:.6f}")
    return 0


def _output_prefixes(output: str, inputs: list[str]) -> list[str]:
    """The output prefix of each input of --task eliminate: ``-o`` for one input, else ``-o``
    and the input's file stem, which must then differ between inputs (or their outputs would
    overwrite each other)."""
    from pathlib import Path

    from phylovi.errors import ConfigError

    if len(inputs) == 1:
        return [output]
    first: dict[str, str] = {}
    for path in inputs:
        stem = Path(path).stem
        if stem in first:
            raise ConfigError(f"{first[stem]} and {path} would both write "
                              f"{output}_{stem}_corrected.tsv and _tree.nwk; give the inputs "
                              "distinct file names, or run them separately")
        first[stem] = path
    return [f"{output}_{Path(path).stem}" for path in inputs]


def _write_eliminated(args, model, matrices, prefixes) -> int:
    from phylovi.genotype import (MISSING, GenotypeMatrix, conflicting_pairs, is_linear,
                                  perfect_phylogeny_tree)
    from phylovi.io.atomic import staged

    rows = []
    outputs = [f"{prefix}_{name}" for prefix in prefixes for name in ("corrected.tsv", "tree.nwk")]
    # All files or none; a path that cannot be written fails before the network runs.
    with staged(outputs) as temporary:
        results = model.eliminate([m.values for m in matrices], args.alpha, args.beta)
        for prefix, path, matrix, result in zip(prefixes, args.matrices, matrices, results):
            corrected = GenotypeMatrix(result.matrix, matrix.cells, matrix.mutations)
            corrected.write(temporary[f"{prefix}_corrected.tsv"],
                            mutations_as_rows=args.mutations_as_rows)
            with open(temporary[f"{prefix}_tree.nwk"], "w", encoding="utf-8") as handle:
                handle.write(perfect_phylogeny_tree(result.matrix, matrix.mutations,
                                                    matrix.cells) + "\n")
            observed = matrix.values
            known = observed != MISSING
            rows.append({"matrix": path, "cells": matrix.n_cells, "mutations": matrix.n_mutations,
                         "conflicting_pairs_before": len(conflicting_pairs(matrix.filled(0))),
                         "ones_added": int(((result.matrix == 1) & (observed == 0)).sum()),
                         "ones_removed": int(((result.matrix == 0) & (observed == 1)).sum()),
                         "missing_filled": int((~known).sum()), "repaired": result.repaired,
                         "shape": "linear" if is_linear(result.matrix) else "branching",
                         "corrected": f"{prefix}_corrected.tsv", "tree": f"{prefix}_tree.nwk"})
    if args.json:
        print(to_json({"task": "eliminate", "predictions": rows}))
        return 0
    print("\t".join(rows[0]))
    for row in rows:
        print("\t".join(("yes" if v else "no") if isinstance(v, bool) else str(v)
                        for v in row.values()))
    return 0


def _add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate", help="score a network on fresh simulated matrices, beside the classical baseline",
        description=("Simulate N fresh matrices of one size and noise level (labels exact; "
                     "classes as in training, balanced where the prior allows: positive_fraction "
                     "says how) and report the model's accuracy, AUC, "
                     "calibration error and time per matrix; for eliminate, the per-entry "
                     "error, the fraction already conflict-free before repair and the fraction "
                     "recovered exactly. Beside it, the classical baseline on the first "
                     "--baseline-number matrices, under the true rates: for branching, a "
                     "likelihood-ratio test of the most likely conflict-free against the most "
                     "likely linear matrix (exact integer programs, branching above 5 nats); "
                     "for eliminate, the most likely conflict-free matrix; for noise, the "
                     "exact three-gametes test."),
        formatter_class=HelpFormatter)
    parser.add_argument("--task", choices=("branching", "noise", "eliminate"), required=True,
                        help=TASKS_HELP)
    parser.add_argument("--model", default=None, help="a model file (default: the shipped one)")
    _add_size_and_noise(parser)
    parser.add_argument("-n", "--number", type=int, default=10000, help="matrices")
    parser.add_argument("--baseline-number", type=int, default=100,
                        help="matrices given to the classical baseline (it is slow)")
    parser.add_argument("--time-limit", type=float, default=10.0,
                        help="seconds per matrix for the baseline's integer program; when it "
                        "is hit, the best matrix found (or a greedy one, if none) makes the call "
                        "and the matrix counts in baseline_time_limited")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_common(parser, seed=True, compute=False)
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from phylovi.errors import ConfigError
    from phylovi.genotype.evaluate import evaluate_model

    _check_sizes(args, number=2, cells=2, mutations=1, baseline_number=1)
    check_seed(args.seed)
    _check_rates(args, ("alpha", "beta", "missing"))
    if not args.time_limit >= 0:  # also refuses NaN
        raise ConfigError(f"--time-limit must be a non-negative number of seconds, "
                          f"got {args.time_limit}")
    model = _load_for(args.task, args.model)
    try:
        record = evaluate_model(model, args.cells, args.mutations, args.alpha, args.beta,
                                args.missing, args.number, args.seed, args.baseline_number,
                                args.time_limit, args.prior)
    except MemoryError:
        raise _too_large(args) from None
    if args.json:
        print(to_json(record))
    else:
        for key, value in record.items():
            print(f"{key}\t{value:.4g}" if isinstance(value, float) else f"{key}\t{value}")
    return 0
