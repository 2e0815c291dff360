"""Branch-length VI: bounds, agreement across families on DS1, resume, model parameters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from phylovi.cli import main
from phylovi.distributions import parse_prior
from phylovi.io.alignment import read_alignment
from phylovi.io.trees import read_tree
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.tree_likelihood import TreeLikelihood
from phylovi.vi import FAMILIES
from phylovi.vi.bounds import bound_loss, importance_sampling, pareto_k, pareto_k_threshold
from phylovi.vi.branch_lengths import BranchLengthVI, VISettings

EXAMPLE = Path(__file__).resolve().parents[2] / "data"


def ds1_problem(shared):
    alignment = read_alignment(shared("marginal/DS1.nex"))
    patterns = compress_patterns(alignment)
    with open(shared("marginal/JC_no_gamma_credible_set_ds1")) as handle:
        newick = handle.readline().split("\t")[1].strip()
    topology = read_tree(newick, taxa=alignment.taxa).topology
    likelihood = TreeLikelihood(patterns, parse_model("JC", patterns))
    return likelihood, topology, parse_prior("exp(10)", topology.n_edges)


@pytest.fixture(scope="module")
def ds1_fits(request):
    shared = request.getfixturevalue("shared")
    likelihood, topology, prior = ds1_problem(shared)
    fits = {}
    for family in FAMILIES:
        torch.manual_seed(1)
        vi = BranchLengthVI(likelihood, topology, prior, VISettings(family=family, n_particles=4))
        fits[family] = (vi, vi.fit())
    return fits


def test_importance_sampling_estimates_agree_across_families_on_ds1(ds1_fits):
    estimates = {family: result.value for family, (_, result) in ds1_fits.items()}
    assert all(result.converged for _, result in ds1_fits.values())
    assert max(estimates.values()) - min(estimates.values()) < 0.5
    for _, result in ds1_fits.values():
        assert result.elbo < result.value  # the ELBO bounds log p(y) from below
        assert result.std_error < 0.2


def test_k_sample_bound_rises_with_k_and_stays_below_the_estimate(ds1_fits):
    vi, result = ds1_fits["gamma"]
    q = vi.q.distribution()
    torch.manual_seed(2)
    means = []
    with torch.no_grad():
        for k in (1, 4, 16, 64):
            values = [bound_loss(q, vi.log_joint, k, "iwae")[1] for _ in range(40)]
            means.append(sum(values) / len(values))
    assert means == sorted(means) and means[-1] - means[0] > 0.5
    assert means[-1] < result.value + 3 * result.std_error


def test_importance_sampling_is_exact_when_q_is_the_posterior():
    # Prior Exp(1) and a "likelihood" that is constant: the posterior is the
    # prior, so with q = prior every weight is p(y) = exp(c) exactly.
    q = parse_prior("exp(1)", 3)
    value, std_error, tail = importance_sampling(q, lambda b: q.log_prob(b) + 2.5, 5000)
    assert value == pytest.approx(2.5, abs=1e-12) and std_error == pytest.approx(0.0, abs=1e-12)
    assert tail == -math.inf  # equal weights: no tail at all


@pytest.mark.parametrize("shape", [0.3, 0.7, 1.2])
def test_pareto_k_recovers_the_shape_of_pareto_weights(shape):
    # w = U^-k for U uniform on (0, 1) has P(w > t) = t^(-1/k): a Pareto tail of shape k
    generator = torch.Generator().manual_seed(3)
    estimates = [pareto_k(-shape * torch.rand(10000, dtype=torch.float64,
                                              generator=generator).log()) for _ in range(4)]
    assert abs(sum(estimates) / 4 - shape) < 0.1, estimates


def test_pareto_k_tells_a_too_narrow_proposal_from_a_wide_one():
    # Target N(0, 1) from N(0, sigma^2): for sigma < 1 the weights' tail has k = 1 - sigma^2
    # (0.75 at sigma = 0.5, approached slowly, through a log factor); for sigma > 1 the
    # weights are bounded.
    generator = torch.Generator().manual_seed(4)
    for sigma, low, high in ((0.5, 0.55, 1.0), (1.5, -math.inf, 0.0)):
        x = sigma * torch.randn(20000, dtype=torch.float64, generator=generator)
        assert low < pareto_k(x**2 / (2 * sigma**2) - x**2 / 2) < high
    assert pareto_k_threshold(10000) == pytest.approx(0.7)
    assert pareto_k_threshold(1000) == pytest.approx(2 / 3)


@pytest.mark.parametrize("estimator", ["pathwise", "score"])
def test_joint_model_parameter_estimate_recovers_kappa(tmp_path, estimator):
    """Both gradient estimators fit the free parameters (score once left kappa at its start)."""
    torch.manual_seed(0)
    alignment = tmp_path / "k2p.fasta"
    assert main(["simulate", str(EXAMPLE / "example.nwk"), "-m", "K2P{4}", "--sites", "3000",
                 "--seed", "5", "-o", str(alignment)]) == 0
    patterns = compress_patterns(read_alignment(alignment))
    topology = read_tree(str(EXAMPLE / "example.nwk"), taxa=patterns.taxa).topology
    likelihood = TreeLikelihood(patterns, parse_model("K2P", patterns))
    vi = BranchLengthVI(likelihood, topology, parse_prior("exp(10)", topology.n_edges),
                        VISettings(n_particles=2 if estimator == "pathwise" else 8,
                                   max_steps=1500, estimator=estimator,
                                   family="gamma" if estimator == "pathwise" else "lognormal"))
    result = vi.fit()
    assert result.model_parameters["kappa"][0] == pytest.approx(4.0, rel=0.15)


def run_vi(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_killed_run_resumes_to_the_same_summary(tmp_path, capsys, monkeypatch):
    import phylovi.vi.branch_lengths as module

    common = ["vi", EXAMPLE / "example.fasta", EXAMPLE / "example.nwk", "--steps", 600,
              "--window", 100, "--checkpoint-every", 100, "--is-samples", 2000, "--seed", 4,
              "--threads", 1]
    assert run_vi([*common, "-o", tmp_path / "whole"], capsys)[0] == 0
    real_loss, calls = module.bound_loss, {"n": 0}

    def dying_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 351:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(module, "bound_loss", dying_loss)
    code, _, _ = run_vi([*common, "-o", tmp_path / "killed"], capsys)
    assert code == 130 and not (tmp_path / "killed" / "summary.json").exists()
    monkeypatch.setattr(module, "bound_loss", real_loss)
    assert run_vi([*common, "-o", tmp_path / "killed", "--resume"], capsys)[0] == 0
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert resumed["steps"] == whole["steps"]
    se = math.hypot(whole["log_marginal_likelihood_se"], resumed["log_marginal_likelihood_se"])
    assert abs(resumed["log_marginal_likelihood"] - whole["log_marginal_likelihood"]) < 4 * se + 1e-9
    for a, b in zip(whole["branches"], resumed["branches"]):
        assert b["mean"] == pytest.approx(a["mean"], rel=0.05)
    # a checkpoint belongs to its inputs: another prior may not resume from it
    code, _, err = run_vi([*common, "-o", tmp_path / "killed", "--resume", "--prior", "exp(5)"],
                          capsys)
    assert code == 2 and "another alignment, model or prior" in err


def test_outputs_are_written(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_vi(["vi", EXAMPLE / "example.fasta", EXAMPLE / "example.nwk",
                              "--family", "lognormal", "--steps", 300, "--is-samples", 500,
                              "-o", out], capsys)
    assert code == 0 and "log p(y)" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["branches"]) == 37 and summary["method"] == "vi-lognormal-elbo-pathwise"
    assert summary["bound"] == "elbo" and summary["elbo"] < summary["log_marginal_likelihood"]
    for branch in summary["branches"]:
        assert branch["lower_95"] < branch["median"] < branch["upper_95"]
    # each branch names the smaller side of its split: a pendant branch, its one taxon
    sides = sorted(len(branch["taxa"]) for branch in summary["branches"])
    assert sides[:20] == [1] * 20 and sides[-1] <= 10
    assert sorted(b["taxa"][0] for b in summary["branches"][:20] if len(b["taxa"]) == 1) == \
        sorted(read_tree(str(EXAMPLE / "example.nwk")).taxa)
    assert summary["median_for_mean"] == []  # log-normal means are finite
    tree = read_tree(str(out / "posterior_mean.nwk"))
    assert tree.branch_lengths.sum() == pytest.approx(summary["tree_length_mean"], rel=1e-6)
    lines = (out / "elbo.csv").read_text().splitlines()
    assert lines[0] == "step,bound,seconds" and len(lines) == summary["steps"] + 1
    assert (out / "elbo.png").read_bytes()[:4] == b"\x89PNG"


def test_an_iwae_run_reports_its_bound_under_its_own_name(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_vi(["vi", EXAMPLE / "example.fasta", EXAMPLE / "example.nwk",
                              "--bound", "iwae", "-k", 8, "--steps", 300, "--is-samples", 2000,
                              "--seed", 2, "-o", out], capsys)
    assert code == 0 and "IWAE" in stdout and "ELBO" not in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bound"] == "iwae" and "elbo" not in summary
    # a lower bound on log p(y), within its noise of the importance-sampling estimate
    assert summary["iwae"] < summary["log_marginal_likelihood"] + 4 * summary[
        "log_marginal_likelihood_se"]
    assert summary["iwae"] > summary["log_marginal_likelihood"] - 5


@pytest.mark.parametrize("argv,fragment", [
    (["--prior", "normal(0,1)"], "prior"),
    (["--gradient", "score", "--bound", "iwae"], "score"),
    (["--samples", "0"], "--samples"),
    (["--model", "XYZ"], "XYZ"),
    (["--threads", "abc"], "--threads"),  # argparse's own check, kept to one line too
    (["--lr", "100", "--steps", "50", "-q"], "lower the learning rate"),  # diverges
])
def test_bad_arguments_fail_cleanly(argv, fragment, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_vi(["vi", EXAMPLE / "example.fasta", EXAMPLE / "example.nwk", "-o", out,
                           *argv], capsys)
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not out.exists()  # not even an empty folder


def test_a_prior_without_a_map_still_starts_on_a_short_alignment(tmp_path, capsys):
    # gammadir(1, 0.1, 1, 1): on 10 sites the joint density grows without bound as every
    # branch shrinks to 0, so the starting-point search must stay in range.
    (tmp_path / "aln.fasta").write_text(">A\nACGTACGTAA\n>B\nACGTACGTTA\n>C\nACGAACGTTA\n"
                                        ">D\nACGAACCTTA\n")
    (tmp_path / "tree.nwk").write_text("((A:0.1,B:0.1):0.05,C:0.1,D:0.1);")
    code, _, err = run_vi(["vi", tmp_path / "aln.fasta", tmp_path / "tree.nwk", "--prior",
                           "gammadir(1,0.1,1,1)", "--steps", 20, "--window", 5, "--is-samples",
                           20, "-q", "-o", tmp_path / "run"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 20
