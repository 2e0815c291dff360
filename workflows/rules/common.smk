# The config's checks (the schema's, then what it cannot check: files exist, phylovi
# accepts the model, prior and settings) and helpers shared by the rules.
#
# The rules write what a command prints under NAME.part and rename it when the command
# succeeds: Snakemake does not notice every interrupted job (not one it finds only after
# a checkpoint has run), and a half-written file must never carry the final name.

import os

from snakemake.utils import validate


def _validate():
    """The schema's check, its reason and place in one line instead of the schema's dump."""
    try:
        validate(config, "../schemas/config.schema.yaml")
    except WorkflowError as error:
        lines = str(error).splitlines()
        reason = next((line for line in lines if line.startswith("ValidationError: ")), None)
        if reason is None:
            raise
        place = next((line for line in lines if line.startswith("On instance")), "")
        place = place.removeprefix("On instance").rstrip(":")  # e.g. ['sbn']['credible']
        raise WorkflowError(f"config{place}: {reason.removeprefix('ValidationError: ')}") from None


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


def _check_settings():
    """Stop at once, naming the config key, on a model, prior or estimator setting that
    phylovi would refuse only when the rule that uses it runs."""
    from phylovi.distributions.priors import parse_prior
    from phylovi.errors import PhyloviError
    from phylovi.likelihood.model_string import parse_model
    from phylovi.marginal import check_settings, parse_settings

    # the settings as the marginal rule passes them, --set NAME=VALUE (YAML reads 1e4 as text)
    pairs = ["=".join(map(str, item)) for item in config["marginal"].get("settings", {}).items()]
    checks = [
        ("model", lambda: parse_model(config["model"])),
        ("prior", lambda: parse_prior(config["prior"], 3, [False] * 3)),  # its syntax
        ("marginal", lambda: check_settings(config["marginal"]["methods"], parse_settings(pairs))),
    ]
    for key, check in checks:
        try:
            value = check()
        except PhyloviError as error:
            raise WorkflowError(f"config key {key}: {error}")
        if key == "model" and value.free:
            raise WorkflowError(f"config key model: {config['model']!r} leaves "
                                f"{', '.join(value.free)} free; the marginal likelihood needs "
                                "every value (e.g. 'HKY{2}+G4{0.5}')")


_validate()
_check_inputs()
_check_settings()

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
