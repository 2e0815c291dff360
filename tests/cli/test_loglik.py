"""``phylovi loglik`` and ``phylovi simulate`` in-process: values, JSON, and bad input."""

from __future__ import annotations

import json

import pytest

from phylovi.cli import main

GTRG4 = "GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}"
TREE = "((a:0.1,b:0.2):0.05,c:0.3,(d:0.1,e:0.15):0.1);"
ALIGNMENT = ">a\nACGTACGTAA\n>b\nACGTACGTTA\n>c\nACGAACGTAA\n>d\nACGTRCGTA-\n>e\nACTTACNTAA\n"


@pytest.fixture
def small(tmp_path):
    (tmp_path / "aln.fasta").write_text(ALIGNMENT)
    (tmp_path / "tree.nwk").write_text(TREE)
    return tmp_path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_loglik_prints_the_reference_value(shared, capsys):
    code, out, _ = run(["loglik", shared("sim/sim27.fasta"), shared("sim/sim27.nwk"),
                        "--model", GTRG4], capsys)
    assert code == 0
    assert float(out.splitlines()[0]) == pytest.approx(-21424.994545, abs=2e-6)


def test_loglik_json_record_with_estimated_parameters(small, capsys):
    code, out, _ = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-m", "HKY+G4",
                        "--json"], capsys)
    assert code == 0
    record = json.loads(out)
    assert set(record["estimated"]) == {"kappa", "shape"}
    assert record["n_taxa"] == 5 and record["n_sites"] == 10
    fixed_code, fixed_out, _ = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-m",
                                    "HKY+G4", "--json", "--no-optimize"], capsys)
    # The ML estimate can only improve on the starting values.
    assert record["log_likelihood"] >= json.loads(fixed_out)["log_likelihood"] - 1e-9


def test_a_command_leaves_the_garbage_collector_as_it_found_it(small, capsys):
    # the run freezes what is loaded out of the cyclic collector; a caller that runs
    # several commands in one process must get every object collectable afterwards
    import gc

    assert gc.get_freeze_count() == 0
    code, _, _ = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-m", "JC"], capsys)
    assert code == 0 and gc.get_freeze_count() == 0
    code, _, _ = run(["loglik", small / "aln.fasta", small / "missing.nwk"], capsys)
    assert code == 2 and gc.get_freeze_count() == 0


def test_loglik_in_float32_keeps_a_large_total_to_a_tenth_of_a_nat(tmp_path, capsys):
    # 600,000 random sites: lnL near -3.3e6, where float32 numbers are 0.25 apart; the
    # sites' float32 values are summed in float64.
    import numpy as np

    rng = np.random.default_rng(2)
    rows = ["".join(rng.choice(list("ACGT"), 600_000)) for _ in range(4)]
    (tmp_path / "aln.fasta").write_text("".join(f">{n}\n{r}\n" for n, r in zip("abcd", rows)))
    (tmp_path / "tree.nwk").write_text("((a:0.5,b:0.6):0.4,c:0.7,d:0.8);")
    values = {}
    for dtype in ("float64", "float32"):
        code, out, _ = run(["loglik", tmp_path / "aln.fasta", tmp_path / "tree.nwk", "-m", "JC",
                            "--dtype", dtype, "--json"], capsys)
        assert code == 0
        values[dtype] = json.loads(out)["log_likelihood"]
    assert abs(float(np.float32(values["float64"])) - values["float64"]) > 0.1  # float32's rounding
    assert abs(values["float32"] - values["float64"]) < 0.02


@pytest.mark.parametrize("model", ["JC", "GTR{1,2,3,4,5}+F{0.1,0.2,0.3,0.4}+G4{0.5}"])
def test_loglik_is_minus_infinity_where_zero_branches_join_different_sequences(tmp_path, capsys,
                                                                              model):
    # a and b differ at one site and are joined by branches of length 0: probability 0 exactly
    (tmp_path / "aln.fasta").write_text(">a\nACGT\n>b\nCCGT\n>c\nACGA\n>d\nACGT\n")
    (tmp_path / "tree.nwk").write_text("((a:0,b:0):0.1,c:0.1,d:0.1);")
    code, out, err = run(["loglik", tmp_path / "aln.fasta", tmp_path / "tree.nwk", "-m", model,
                          "--json"], capsys)
    assert code == 0
    assert json.loads(out)["log_likelihood"] is None  # strict JSON has no -Infinity
    assert "impossible" in err and len(err.splitlines()) == 1
    (tmp_path / "tree.nwk").write_text("((a:0,b:1e-6):0.1,c:0.1,d:0.1);")
    code, out, _ = run(["loglik", tmp_path / "aln.fasta", tmp_path / "tree.nwk", "-m", model],
                       capsys)
    assert code == 0 and -40 < float(out.splitlines()[0]) < -20


@pytest.mark.parametrize("change,fragment", [
    ({"model": "GTR+Q"}, "+Q"),
    ({"model": "HKY{1,2}"}, "HKY"),
    ({"alignment": None}, "aln.fasta"),
    ({"alignment": ">a\nACGT\n>b\nACG\n"}, "3 sites"),
    ({"alignment": ">a\nACGT\n>a\nACGT\n"}, "'a'"),
    ({"alignment": ">a\nACGT\n>b\nACJT\n>c\nACGT\n"}, "J"),
    ({"tree": "((a:0.1,b:0.2):0.05,c:0.3,(d:0.1,x:0.15):0.1);"}, "'x'"),
    ({"tree": "((a:0.1,b:0.2):0.05,c:-0.3,(d:0.1,e:0.15):0.1);"}, "-0.3"),
    ({"tree": "(a:0.1,b:0.2,c:0.3,(d:0.1,e:0.15):0.1);"}, "binary"),
    ({"tree": "((a:0.1,b:0.2):0.05,c:0.3,(d:0.1,e:0.15):0.1"}, "tree.nwk"),
    ({"tree": "((a,b),c,(d,e));"}, "branch length"),
])
def test_loglik_bad_input_is_one_line_and_exit_2(small, capsys, change, fragment):
    if "alignment" in change:
        if change["alignment"] is None:
            (small / "aln.fasta").unlink()
        else:
            (small / "aln.fasta").write_text(change["alignment"])
    if "tree" in change:
        (small / "tree.nwk").write_text(change["tree"])
    code, out, err = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-m",
                          change.get("model", "JC")], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("phylovi: error: ") and err.count("\n") == 1
    assert fragment in err


def test_model_test_ranks_every_candidate_and_writes_the_best_tree(small, capsys):
    code, out, err = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-m", "TEST",
                          "-o", small / "best.nwk"], capsys)
    assert code == 0
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header == ["model", "log_likelihood", "df", "AIC", "AICc", "BIC"]
    assert len(rows) == 28 and rows[0][0] in err  # the best by BIC comes first, and is named
    bics = [float(row[5]) for row in rows]
    assert bics == sorted(bics)
    # 7 branches for 5 taxa, plus the model's own: JC none, GTR+F+I+G4 5 + 3 + 2
    df = {row[0]: int(row[2]) for row in rows}
    assert df["JC"] == 7 and df["GTR+F+I+G4"] == 17
    code, json_out, _ = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-m", "test",
                             "--json", "-q"], capsys)
    record = json.loads(json_out)
    best = record["models"][0]
    assert record["best"]["bic"] == best["name"] == rows[0][0]
    # the best model's fit, read back with its values, gives its log-likelihood on its tree
    (small / "fitted.nwk").write_text(best["tree_newick"] + "\n")
    assert (small / "best.nwk").read_text().strip() == best["tree_newick"]
    code, value, _ = run(["loglik", small / "aln.fasta", small / "fitted.nwk", "-m",
                          best["model"], "-q"], capsys)
    assert float(value) == pytest.approx(best["log_likelihood"], abs=1e-4)


@pytest.mark.parametrize("extra,fragment", [
    (["--tests"], "-m TEST chooses a model; it does not take --tests"),
    (["--shared-model"], "--shared-model"),
    (["--no-optimize"], "--no-optimize"),
])
def test_model_test_refuses_what_it_does_not_do(small, capsys, extra, fragment):
    code, out, err = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-m", "TEST",
                          *extra], capsys)
    assert code == 2 and out == "" and fragment in err and err.count("\n") == 1


def test_model_test_takes_one_tree(small, capsys):
    (small / "two.nwk").write_text(TREE + "\n" + TREE + "\n")
    code, out, err = run(["loglik", small / "aln.fasta", small / "two.nwk", "-m", "TEST"],
                         capsys)
    assert code == 2 and out == "" and "one tree" in err and "gives 2" in err


def test_simulate_is_reproducible_and_readable(small, capsys):
    args = ["simulate", small / "tree.nwk", "-m", "HKY{2}+G4{0.5}", "--sites", "200",
            "--seed", "3", "-o"]
    assert run(args + [small / "one.fasta"], capsys)[0] == 0
    assert run(args + [small / "two.fasta"], capsys)[0] == 0
    text = (small / "one.fasta").read_text()
    assert text == (small / "two.fasta").read_text()
    assert text.count(">") == 5
    code, out, _ = run(["loglik", small / "one.fasta", small / "tree.nwk", "-m", "HKY{2}+G4{0.5}"],
                       capsys)
    assert code == 0 and float(out.splitlines()[0]) < 0


def test_simulate_bad_arguments_leave_no_file(small, capsys):
    code, _, err = run(["simulate", small / "tree.nwk", "--sites", "0", "-o", small / "x.fasta"],
                       capsys)
    assert code == 2 and "--sites" in err
    assert not (small / "x.fasta").exists()
    assert [p.name for p in small.iterdir() if p.name.startswith(".phylovi")] == []


def test_simulate_refuses_more_than_the_free_memory_before_starting(small, capsys, monkeypatch):
    monkeypatch.setattr("phylovi.cli._common.available_memory", lambda: 1e6)
    code, _, err = run(["simulate", small / "tree.nwk", "-n", "100000", "-o", small / "big.fasta"],
                       capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "not enough memory" in err
    assert "--sites 100000 for 5 taxa" in err and not (small / "big.fasta").exists()


def test_simulate_refuses_a_taxon_name_that_fasta_cannot_hold(small, capsys):
    """A FASTA reader cuts a header at its first space, so the alignment would not
    read back against its own tree."""
    tree = small / "spaced.nwk"
    tree.write_text("(('taxon A':0.1,b:0.2):0.05,c:0.3,d:0.1);\n")
    code, _, err = run(["simulate", tree, "-n", "5", "-o", small / "spaced.fasta"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "'taxon A' has a space" in err
    assert not (small / "spaced.fasta").exists()


def test_simulate_into_a_missing_folder_is_one_line_and_exit_2(small, capsys):
    code, _, err = run(["simulate", small / "tree.nwk", "-n", "5", "-o",
                        small / "missing" / "out.fasta"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err


@pytest.mark.parametrize("argv,fragment", [
    (["simulate", "TREE", "-n", "5", "--seed", str(2**64), "-o", "OUT"], "--seed"),
    (["simulate", "TREE", "-n", "5", "--seed", "-1", "-o", "OUT"], "--seed"),
    (["simulate", "TREE", "-n", str(10**20), "-o", "OUT"], "--sites"),
    (["loglik", "ALN", "TREE", "--threads", str(10**20)], "--threads"),
    (["loglik", "ALN", "TREE", "--device", "meta"], "--device"),
])
def test_shared_options_out_of_range_are_one_line_and_exit_2(small, capsys, argv, fragment):
    paths = {"TREE": small / "tree.nwk", "ALN": small / "aln.fasta", "OUT": small / "out.fasta"}
    code, _, err = run([paths.get(a, a) for a in argv], capsys)
    assert code == 2 and fragment in err and len(err.splitlines()) == 1
    assert not (small / "out.fasta").exists()


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_temporary_file(tmp_path):
    # a scheduler cancelling a job sends SIGTERM; Python's default would die on the spot,
    # leaving the half-written temporary file beside the output
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    tree = Path(__file__).resolve().parents[2] / "data" / "example.nwk"
    process = subprocess.Popen(
        [sys.executable, "-m", "phylovi", "simulate", str(tree), "-n", "3000000", "-q",
         "-o", str(tmp_path / "big.fasta")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".phylovi-*")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "phylovi: terminated" in err
    assert list(tmp_path.iterdir()) == []


def test_optimize_lengths_reaches_iqtree_and_writes_the_tree(tmp_path, capsys):
    # IQ-TREE 2.0.7 on the bundled example, `iqtree2 -s example.fasta -te example.nwk -m M`
    # (branch lengths and free parameters estimated): JC -12612.4096, HKY+G4 -11381.533.
    # Starting from no lengths at all for JC, from the file's for HKY+G4.
    import re
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "data"
    bare = re.sub(r":[0-9.eE+-]+", "", (data / "example.nwk").read_text())
    (tmp_path / "bare.nwk").write_text(bare)
    for model, tree, iqtree in (("JC", tmp_path / "bare.nwk", -12612.4096),
                                ("HKY+G4", data / "example.nwk", -11381.533)):
        out_tree = tmp_path / f"{model}.nwk"
        code, out, _ = run(["loglik", data / "example.fasta", tree, "-m", model,
                            "--optimize-lengths", "-o", out_tree, "--json"], capsys)
        assert code == 0
        record = json.loads(out)
        assert iqtree - 1e-3 <= record["log_likelihood"] <= iqtree + 0.05
        assert "branch_lengths" in record["estimated"]
        # the written tree, evaluated as given with the estimated model, gives the same value
        code, again, _ = run(["loglik", data / "example.fasta", out_tree, "-m", record["model"]],
                             capsys)
        assert float(again.splitlines()[0]) == pytest.approx(record["log_likelihood"], abs=1e-5)


def test_output_without_optimize_lengths_is_refused(small, capsys):
    code, _, err = run(["loglik", small / "aln.fasta", small / "tree.nwk", "-o",
                        small / "out.nwk"], capsys)
    assert code == 2 and "add --optimize-lengths" in err
    assert not (small / "out.nwk").exists()


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="no /dev/full here")
def test_a_full_disk_under_standard_output_is_one_line_and_exit_2(small):
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        process = subprocess.run(
            [sys.executable, "-m", "phylovi", "loglik", str(small / "aln.fasta"),
             str(small / "tree.nwk"), "--json"], stdout=full, stderr=subprocess.PIPE, text=True)
    assert process.returncode == 2
    assert process.stderr == "phylovi: error: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("extra", [[], ["--optimize-lengths"]])
def test_estimated_frequencies_of_bases_the_alignment_lacks(tmp_path, capsys, extra):
    # +FO starts from the empirical frequencies, 0 for G and T here: their log made every
    # step of L-BFGS-B NaN ("cannot decompose the rate matrix ... nan")
    (tmp_path / "aln.fasta").write_text(">a\nACAAACAAAA\n>b\nACAACCAAAA\n>c\nACAAACAACA\n"
                                        ">d\nAAAAACAAAA\n>e\nACACACAAAA\n")
    tree = "((a:0.1,b:0.1):0.1,c:0.1,(d:0.1,e:0.1):0.1);"
    code, out, err = run(["loglik", tmp_path / "aln.fasta", tree, "-m", "HKY+FO", "--json",
                          *extra], capsys)
    assert code == 0, err
    record = json.loads(out)
    fixed_code, fixed, _ = run(["loglik", tmp_path / "aln.fasta", tree, "-m", "HKY+F", "--json",
                                "--no-optimize"], capsys)
    # estimating can only improve on the empirical frequencies
    assert record["log_likelihood"] >= json.loads(fixed)["log_likelihood"] - 1e-9
    frequencies = [float(v) for v in record["model"].split("+F{")[1].split("}")[0].split(",")]
    assert frequencies[2] < 1e-9 and frequencies[3] < 1e-9


def test_loglik_on_a_file_of_trees_gives_each_tree_its_single_tree_value(small, capsys):
    # Three trees, two shapes: with a fixed model they are evaluated in one batched call,
    # with free parameters each on its own; either way a row equals the one-tree run.
    trees = [TREE, "(a:0.2,(b:0.1,c:0.3):0.05,(d:0.1,e:0.15):0.1);",
             "((a:0.1,d:0.2):0.05,(b:0.3,c:0.2):0.04,e:0.15);"]
    (small / "trees.nwk").write_text("\n".join(trees) + "\n")
    fixed = None
    for model in (GTRG4, "HKY+G4"):
        single = []
        for number, newick in enumerate(trees):
            (small / f"one{number}.nwk").write_text(newick)
            code, out, _ = run(["loglik", small / "aln.fasta", small / f"one{number}.nwk",
                                "-m", model, "--json"], capsys)
            assert code == 0
            single.append(json.loads(out))
        code, out, err = run(["loglik", small / "aln.fasta", small / "trees.nwk", "-m", model,
                              "--json"], capsys)
        assert code == 0
        record = json.loads(out)
        assert [row["number"] for row in record["trees"]] == [1, 2, 3]
        assert [row["log_likelihood"] for row in record["trees"]] == pytest.approx(
            [one["log_likelihood"] for one in single], abs=1e-9)
        if model == "HKY+G4":  # each tree its own estimates
            assert [row["model"] for row in record["trees"]] == [one["model"] for one in single]
            assert len({row["model"] for row in record["trees"]}) == 3
        else:
            fixed = single
    # the table: a header, then one row per tree after burn-in, numbered by file position
    code, out, err = run(["loglik", small / "aln.fasta", small / "trees.nwk", "-m", GTRG4,
                          "--burnin", "0.5"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "tree\tlog_likelihood" and len(lines) == 3
    assert [line.split("\t")[0] for line in lines[1:]] == ["2", "3"]
    assert float(lines[1].split("\t")[1]) == pytest.approx(fixed[1]["log_likelihood"], abs=1e-6)
    assert "2 trees" in err


def test_loglik_names_the_tree_of_a_file_that_lacks_lengths(small, capsys):
    (small / "trees.nwk").write_text(TREE + "\n((a,b),c,(d,e));\n")
    code, out, err = run(["loglik", small / "aln.fasta", small / "trees.nwk"], capsys)
    assert code == 2 and out == ""
    assert "tree 2: 7 of 7 edges have no branch length" in err and len(err.splitlines()) == 1


def test_loglik_optimize_lengths_writes_every_tree(small, capsys):
    (small / "trees.nwk").write_text(TREE + "\n((a,d),(b,c),e);\n")
    code, out, _ = run(["loglik", small / "aln.fasta", small / "trees.nwk", "-m", "JC",
                        "--optimize-lengths", "-o", small / "ml.nwk", "--json"], capsys)
    assert code == 0
    rows = json.loads(out)["trees"]
    written = (small / "ml.nwk").read_text().splitlines()
    assert len(written) == 2 and [row["tree_newick"] for row in rows] == written
    # the second tree's maximum, evaluated again from the written lengths
    (small / "second.nwk").write_text(written[1])
    code, out, _ = run(["loglik", small / "aln.fasta", small / "second.nwk", "-m", "JC"], capsys)
    assert float(out.splitlines()[0]) == pytest.approx(rows[1]["log_likelihood"], abs=1e-5)


def test_loglik_site_lnl_writes_iqtrees_layout_summing_to_each_total(small, capsys):
    (small / "trees.nwk").write_text(TREE + "\n((a:0.1,d:0.2):0.05,(b:0.3,c:0.2):0.04,e:0.15);\n")
    for trees, names in (("tree.nwk", ["Site_Lh"]), ("trees.nwk", ["Tree1", "Tree2"])):
        for model in (GTRG4, "HKY+G4"):  # batched, and fitted tree by tree
            code, out, _ = run(["loglik", small / "aln.fasta", small / trees, "-m", model,
                                "--site-lnl", small / "out.sitelh", "--json"], capsys)
            assert code == 0
            record = json.loads(out)
            totals = ([record["log_likelihood"]] if "log_likelihood" in record
                      else [row["log_likelihood"] for row in record["trees"]])
            lines = (small / "out.sitelh").read_text().splitlines()
            assert lines[0] == f"{len(names)} 10"  # trees, sites (not patterns)
            assert [line[:10].strip() for line in lines[1:]] == names
            rows = [[float(value) for value in line[10:].split()] for line in lines[1:]]
            assert all(len(row) == 10 for row in rows)
            assert [sum(row) for row in rows] == pytest.approx(totals, abs=1e-6)
            assert rows[0][1] == pytest.approx(rows[0][5], abs=1e-12)  # both columns CCCCC


def test_loglik_tests_add_the_topology_tests_and_follow_the_seed(small, capsys):
    trees = [TREE, "(a:0.2,(b:0.1,c:0.3):0.05,(d:0.1,e:0.15):0.1);",
             "((a:0.1,d:0.2):0.05,(b:0.3,c:0.2):0.04,e:0.15);"]
    (small / "trees.nwk").write_text("\n".join(trees) + "\n")
    argv = ["loglik", small / "aln.fasta", small / "trees.nwk", "-m", GTRG4, "--tests", "500"]
    code, out, err = run(argv + ["--seed", "7"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split("\t") == ["tree", "log_likelihood", "delta", "bp_rell", "p_kh", "p_sh",
                                    "c_elw", "p_au"]
    columns = list(zip(*(line.split("\t") for line in lines[1:])))
    assert sum(float(v) for v in columns[3]) == pytest.approx(1, abs=1e-3)  # bp-RELL
    assert "500 RELL replicates" in err
    code, again, _ = run(argv + ["--seed", "7", "--json"], capsys)
    record = json.loads(again)
    assert record["tests"] == {"replicates": 500, "seed": 7}
    assert [f"{row['p_au']:.4f}" for row in record["trees"]] == list(columns[7])


def test_loglik_tests_need_two_trees(small, capsys):
    code, out, err = run(["loglik", small / "aln.fasta", small / "tree.nwk", "--tests"], capsys)
    assert code == 2 and out == ""
    assert "--tests compares two or more trees" in err and len(err.splitlines()) == 1


def test_loglik_shared_model_fits_the_first_tree_and_holds_it_for_all(small, capsys):
    trees = [TREE, "(a:0.2,(b:0.1,c:0.3):0.05,(d:0.1,e:0.15):0.1);",
             "((a:0.1,d:0.2):0.05,(b:0.3,c:0.2):0.04,e:0.15);"]
    (small / "trees.nwk").write_text("\n".join(trees) + "\n")
    argv = ["loglik", small / "aln.fasta", small / "trees.nwk", "-m", "HKY+G4", "--json"]
    _, own, _ = run(argv, capsys)
    code, shared, _ = run(argv + ["--shared-model"], capsys)
    assert code == 0
    own, shared = json.loads(own), json.loads(shared)
    assert shared["shared_model"] and shared["model"] == own["trees"][0]["model"]
    assert "model" not in shared["trees"][1]  # one model for all: no per-tree column
    first, *others = zip(shared["trees"], own["trees"])
    assert first[0]["log_likelihood"] == pytest.approx(first[1]["log_likelihood"], abs=1e-9)
    for with_shared, with_own in others:  # a tree's own maximum can only be higher
        assert with_shared["log_likelihood"] <= with_own["log_likelihood"] + 1e-6
    assert any(a["log_likelihood"] < b["log_likelihood"] - 1e-4 for a, b in others)


def test_float32_estimated_lengths_are_written_in_their_shortest_decimals(tmp_path, capsys):
    # a and b are identical: their branches end on the lower bound, 1e-6, which float32
    # holds as 9.99999997e-07; the file says 1e-06
    (tmp_path / "aln.fasta").write_text(">a\nACGTACGTAC\n>b\nACGTACGTAC\n>c\nACGAACGTTC\n"
                                        ">d\nTCGTACGAAC\n")
    code, _, _ = run(["loglik", tmp_path / "aln.fasta", "((a,b),c,d);", "--optimize-lengths",
                      "--dtype", "float32", "-o", tmp_path / "ml.nwk"], capsys)
    written = (tmp_path / "ml.nwk").read_text()
    assert code == 0 and "a:1e-06" in written and "9.99999" not in written


def test_loglik_numbers_trees_by_file_position_after_burnin_everywhere(small, capsys):
    trees = [TREE, "(a:0.2,(b:0.1,c:0.3):0.05,(d:0.1,e:0.15):0.1);",
             "((a:0.1,d:0.2):0.05,(b:0.3,c:0.2):0.04,e:0.15);"]
    (small / "trees.nwk").write_text("\n".join(trees) + "\n")
    base = ["loglik", small / "aln.fasta", small / "trees.nwk", "-m", GTRG4]
    # a burn-in that leaves one tree still gives the table, which says which tree it is
    code, out, _ = run(base + ["--burnin", "0.9"], capsys)
    assert code == 0 and out.splitlines()[1].startswith("3\t")
    code, _, err = run(base + ["--burnin", "0.9", "--tests"], capsys)
    assert code == 2 and "the burn-in leaves one" in err
    code, _, _ = run(base + ["--burnin", "0.5", "--site-lnl", small / "s.sitelh"], capsys)
    names = [line.split()[0] for line in (small / "s.sitelh").read_text().splitlines()[1:]]
    assert code == 0 and names == ["Tree2", "Tree3"]


def test_loglik_shared_model_refuses_an_impossible_first_tree(tmp_path, capsys):
    (tmp_path / "aln.fasta").write_text(">a\nACGT\n>b\nCCGT\n>c\nACGA\n>d\nACGT\n")
    (tmp_path / "trees.nwk").write_text("((a:0,b:0):0.1,c:0.1,d:0.1);\n"
                                        "((a:0.1,b:0.1):0.1,c:0.1,d:0.1);\n")
    code, out, err = run(["loglik", tmp_path / "aln.fasta", tmp_path / "trees.nwk", "-m",
                          "HKY+G4", "--shared-model"], capsys)
    assert code == 2 and out == ""
    assert "tree 1 is impossible" in err and len(err.splitlines()) == 1


def test_loglik_writes_both_outputs_or_neither(small, capsys, monkeypatch):
    from phylovi.errors import OutputError
    from phylovi.io import records

    def fail(path, *args):  # what atomic.write raises on a full disk
        raise OutputError("cannot write: No space left on device", path)

    monkeypatch.setattr(records, "write_site_log_likelihoods", fail)
    code, _, err = run(["loglik", small / "aln.fasta", small / "tree.nwk", "--optimize-lengths",
                        "-o", small / "ml.nwk", "--site-lnl", small / "ml.sitelh"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (small / "ml.nwk").exists() and not (small / "ml.sitelh").exists()
    code, _, err = run(["loglik", small / "aln.fasta", small / "tree.nwk", "--optimize-lengths",
                        "-o", small / "x", "--site-lnl", small / "x"], capsys)
    assert code == 2 and "name the same file" in err
