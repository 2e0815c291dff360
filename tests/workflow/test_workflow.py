"""The Snakemake workflow (workflows/): lint, dry runs, bad configs, and one real run."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phylovi.cli import main
from phylovi.genotype import GenotypeMatrix
from phylovi.io.trees import read_tree

pytest.importorskip("snakemake", reason="the workflow tests need snakemake "
                    "(pip install 'phylovi[workflow]')")
yaml = pytest.importorskip("yaml")

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows"
BIN = Path(sys.executable).parent


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run snakemake in ``cwd`` with this environment's ``phylovi`` first on the PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_lint_is_clean():
    result = snakemake("--lint", cwd=WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.parametrize("profile", [None, "profiles/local", "profiles/slurm"])
def test_default_config_dry_runs(profile):
    """The default config (the bundled example), also through each profile: the SLURM one
    cannot submit here, but it must parse."""
    args = ["--dry-run"] + (["--profile", profile] if profile else ["--cores", "1"])
    result = snakemake(*args, cwd=WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in ("sbn_fit", "credible_set", "split_support", "genotype_calls", "report"):
        assert rule in result.stdout


def _config(tmp_path: Path, **changes) -> Path:
    config = yaml.safe_load((WORKFLOW / "config" / "config.yaml").read_text())
    for entry in config["alignments"].values():
        entry["alignment"] = str((WORKFLOW / entry["alignment"]).resolve())
        entry["trees"] = [str((WORKFLOW / path).resolve()) for path in entry["trees"]]
    for name, path in config["genotype"]["matrices"].items():
        config["genotype"]["matrices"][name] = str((WORKFLOW / path).resolve())
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            config[section][name] = value
        else:
            config[section] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("changes,message", [
    ({"marginal.methods": ["gss", "bogus"]}, "marginal"),
    ({"sbn.max_topologies": -1}, "max_topologies"),
    ({"alignments": {"mine": {"alignment": "missing.fasta", "trees": ["t.nwk"]}}},
     "config key alignments.mine.alignment: no such file: missing.fasta"),
    ({"genotype": {"matrices": {"cells": "nowhere.tsv"}}},
     "config key genotype.matrices.cells: no such file"),
    # phylovi's own checks, before any rule runs rather than inside the first that calls it
    ({"model": "HKY+G4"}, "config key model: 'HKY+G4' leaves kappa, shape free"),
    ({"model": "BOGUS"}, "config key model: unknown substitution model"),
    ({"prior": "exp(-1)"}, "config key prior"),
    ({"marginal.settings": {"bogus_setting": 3}}, "config key marginal: setting 'bogus_setting'"),
    ({"marginal.settings": {"n_samples": "lots"}}, "config key marginal: --set n_samples: 'lots'"),
    ({"seed": -1}, "config['seed']: -1 is less than the minimum of 0"),  # phylovi's --seed range
])
def test_bad_config_stops_with_a_message_naming_the_key(tmp_path, changes, message):
    config = _config(tmp_path, **changes)
    result = snakemake("--dry-run", "--cores", "1", "-s", str(WORKFLOW / "Snakefile"),
                       "--configfile", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    if '"bogus"' in json.dumps(changes):
        assert "'bogus' is not one of" in result.stdout + result.stderr


def test_a_users_config_replaces_the_bundled_example(tmp_path):
    """Run from workflows/ (as the docs show) with a config of one's own: only its data
    sets run, not the example's too (Snakemake merges a --configfile into the Snakefile's)."""
    config = yaml.safe_load(_config(tmp_path).read_text())
    config["alignments"] = {"mine": config["alignments"].pop("example")}
    config["genotype"] = {"matrices": {}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("--dry-run", "--cores", "1", "--configfile", str(path), cwd=WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "name=mine" in result.stdout and "name=example" not in result.stdout
    assert "genotype_calls" not in result.stdout


def test_config_values_on_the_command_line_change_the_bundled_example(tmp_path):
    # --config KEY=VALUE overrides one value (it once replaced the whole example config);
    # a setting YAML reads as text, such as 1e4, passes as phylovi's --set would take it
    result = snakemake("--dry-run", "--cores", "1", "--config", "seed=2", cwd=WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    config = _config(tmp_path, **{"marginal.methods": ["laplus-gamma", "vbis", "gss"],
                                  "marginal.settings": {"n_samples": "1e4"}})
    result = snakemake("--dry-run", "--cores", "1", "-s", str(WORKFLOW / "Snakefile"),
                       "--configfile", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _read(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


TOPOLOGIES = ["((A,B),C,(D,E));", "((A,C),B,(D,E));", "((A,B),D,(C,E));"]


def test_end_to_end_on_a_simulated_data_set(tmp_path):
    """Simulate a 5-taxon alignment and a tree sample of known frequencies (6, 3, 1 of 10),
    run the whole workflow on 2 cores, and check the tables' numbers."""
    (tmp_path / "true.nwk").write_text("((A:0.1,B:0.2):0.05,C:0.1,(D:0.15,E:0.1):0.07);\n")
    assert main(["simulate", str(tmp_path / "true.nwk"), "--model", "JC", "--sites", "200",
                 "--seed", "3", "-o", str(tmp_path / "aln.fasta")]) == 0
    sample = [TOPOLOGIES[0]] * 6 + [TOPOLOGIES[1]] * 3 + [TOPOLOGIES[2]]
    (tmp_path / "trees.nwk").write_text("\n".join(sample) + "\n")
    # A clean linear matrix (nested columns) and a noisy branching one.
    linear = np.tril(np.ones((8, 6), dtype=np.int8), -1)[:, :6]
    GenotypeMatrix(linear).write(tmp_path / "linear.tsv")
    branching = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1], [1, 0, 1, 0],
                          [1, 1, 1, 0], [0, 0, 0, 0]], dtype=np.int8)
    GenotypeMatrix(branching).write(tmp_path / "branching.tsv")
    config = {
        "alignments": {"sim": {"alignment": str(tmp_path / "aln.fasta"),
                               "trees": [str(tmp_path / "trees.nwk")]}},
        "sbn": {"method": "srf", "credible": 0.95, "max_topologies": 2},
        # values in braces, which Snakemake must not read as wildcards
        "model": "JC+G4{0.5}", "prior": "exp(10)",
        "vi": {"family": "gamma", "steps": 400},
        "marginal": {"methods": ["laplus-gamma", "laplus-lognormal"]},
        "genotype": {"matrices": {"linear": str(tmp_path / "linear.tsv"),
                                  "branching": str(tmp_path / "branching.tsv")}},
        "seed": 1, "threads": 1,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("--cores", "2", "-s", str(WORKFLOW / "Snakefile"),
                       "--configfile", str(tmp_path / "config.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    rows = _read(tmp_path / "results" / "sim" / "topology_posteriors.tsv")
    # The credible set holds all three (0.6 + 0.3 < 0.95); the cap keeps two.
    assert [row["rank"] for row in rows] == ["1", "2"]
    taxa = read_tree(TOPOLOGIES[0]).topology.taxa
    for row, expected in zip(rows, TOPOLOGIES):
        assert read_tree(row["newick"], taxa=taxa).topology == read_tree(expected, taxa=taxa).topology
    assert [float(row["sbn_probability"]) for row in rows] == pytest.approx([0.6, 0.3])
    assert [float(row["sbn_renormalised"]) for row in rows] == pytest.approx([2 / 3, 1 / 3])
    for column in ("posterior_vi", "posterior_laplus-gamma", "posterior_laplus-lognormal"):
        assert sum(float(row[column]) for row in rows) == pytest.approx(1, abs=1e-5)
    # The table carries exactly what `phylovi marginal` gives for the same topology
    # (the Laplace estimators are deterministic), and VI agrees with it.
    (tmp_path / "first.nwk").write_text(rows[0]["newick"] + "\n")
    direct = subprocess.run([str(BIN / "phylovi"), "marginal", str(tmp_path / "aln.fasta"),
                             str(tmp_path / "first.nwk"), "--method", "laplus-gamma",
                             "--model", "JC+G4{0.5}", "--json", "-q"],
                            capture_output=True, text=True, check=True)
    expected = json.loads(direct.stdout)["estimates"][0]["log_marginal_likelihood"]
    assert float(rows[0]["laplus-gamma_log_ml"]) == pytest.approx(expected, abs=1e-5)
    for row in rows:
        assert abs(float(row["vi_log_ml"]) - float(row["laplus-gamma_log_ml"])) < 1.0
        assert float(row["vi_elbo"]) < float(row["vi_log_ml"]) + 0.05  # ELBO is a lower bound

    # The likelihood tests: the kept topologies at their ML lengths, as phylovi loglik
    # gives them, with p-values
    tests = _read(tmp_path / "results" / "sim" / "topology_tests.tsv")
    assert [row["tree"] for row in tests] == ["1", "2"]
    assert sum(float(row["bp_rell"]) for row in tests) == pytest.approx(1, abs=1e-3)
    assert all(0 <= float(row["p_au"]) <= 1 for row in tests)
    direct = subprocess.run([str(BIN / "phylovi"), "loglik", str(tmp_path / "aln.fasta"),
                             str(tmp_path / "first.nwk"), "--model", "JC+G4{0.5}",
                             "--optimize-lengths", "--json", "-q"],
                            capture_output=True, text=True, check=True)
    assert float(tests[0]["log_likelihood"]) == pytest.approx(
        json.loads(direct.stdout)["log_likelihood"], abs=1e-5)

    splits = {row["taxa"]: float(row["support"])
              for row in _read(tmp_path / "results" / "sim" / "splits.tsv")}
    assert splits["D,E"] == pytest.approx(0.9) and splits["A,B"] == pytest.approx(0.7)

    calls = {row["matrix"]: row for row in _read(tmp_path / "results" / "genotype" / "calls.tsv")}
    assert calls["linear"]["perfect_phylogeny"] == "yes"
    assert calls["linear"]["observed_shape"] == "linear"
    assert calls["branching"]["perfect_phylogeny"] == "no"
    assert int(calls["branching"]["conflicting_pairs"]) == 1  # mutations 2 and 3 only
    assert float(calls["linear"]["p_branching"]) < 0.5

    report = (tmp_path / "results" / "report.md").read_text()
    assert "## sim" in report and "## Genotype matrices" in report
    assert "### Likelihood tests" in report and "| rank 2 |" in report
    for figure in ("sim_splits.png", "sim_elbo.png", "sim_estimators.png"):
        assert (tmp_path / "results" / "report" / figure).stat().st_size > 1000
        assert f"report/{figure}" in report
    # Every rule declares a benchmark file.
    assert (tmp_path / "benchmarks" / "sim" / "sbn_fit.tsv").exists()
    assert len(list((tmp_path / "benchmarks" / "sim" / "vi").glob("t*.tsv"))) == 2
    assert not math.isnan(float(rows[1]["vi_log_ml"]))
