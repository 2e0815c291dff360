# Checks the schema cannot make (files exist) and helpers shared by the rules.

import os


def _check_inputs():
    """Stop at once, naming the config key, when an input file is missing."""
    for name, entry in config["alignments"].items():
        paths = [("alignment", entry["alignment"])]
        paths += [(f"trees[{k}]", path) for k, path in enumerate(entry["trees"])]
        for key, path in paths:
            if not os.path.isfile(path):
                raise WorkflowError(f"config key alignments.{name}.{key}: no such file: {path}")
    for name, path in config.get("genotype", {}).get("matrices", {}).items():
        if not os.path.isfile(path):
            raise WorkflowError(f"config key genotype.matrices.{name}: no such file: {path}")


_check_inputs()

ALIGNMENTS = sorted(config["alignments"])
MATRICES = sorted(config.get("genotype", {}).get("matrices", {}))
THREADS = config["threads"]


def alignment_of(wildcards):
    return config["alignments"][wildcards.name]["alignment"]


def method_flags():
    return " ".join(f"--method {method}" for method in config["marginal"]["methods"])


def setting_flags():
    settings = config["marginal"].get("settings", {})
    return " ".join(f"--set {key}={value}" for key, value in settings.items())


def topology_ranks(wildcards):
    """The ranks of the credible set's topologies kept for this alignment (known once the
    credible_set checkpoint has run)."""
    folder = checkpoints.credible_set.get(name=wildcards.name).output.topologies
    ranks = glob_wildcards(os.path.join(folder, "t{rank}.nwk")).rank
    return sorted(ranks, key=int)
