"""``phylovi genotype``: check, simulate, train and predict from the command line."""

from __future__ import annotations

import json

import pytest

from phylovi.cli import main


def test_simulated_labels_agree_with_check(tmp_path, capsys):
    prefix = tmp_path / "sim"
    assert main(["genotype", "simulate", "--cells", "7", "--mutations", "6", "-n", "6",
                 "--linear-fraction", "0.5", "--beta", "0.3", "--seed", "2", "-o", str(prefix)]) == 0
    labels = (tmp_path / "sim_labels.tsv").read_text().splitlines()[1:]
    capsys.readouterr()
    for line in labels:
        k, shape, conflict_free = line.split("\t")
        assert main(["genotype", "check", f"{prefix}_true_{k}.tsv", "--json"]) == 0
        true = json.loads(capsys.readouterr().out)
        assert true["perfect_phylogeny"] and true["shape"] == shape
        assert main(["genotype", "check", f"{prefix}_observed_{k}.tsv", "--json"]) == 0
        observed = json.loads(capsys.readouterr().out)
        assert observed["perfect_phylogeny"] == (conflict_free == "yes")


def test_train_then_predict(tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["genotype", "train", "--task", "noise", "--cells", "4..6", "--mutations", "4",
                 "--steps", "4", "--batch-size", "16", "--width", "8", "-q", "-o", str(model)]) == 0
    assert main(["genotype", "simulate", "-n", "1", "-o", str(tmp_path / "s")]) == 0
    matrix = str(tmp_path / "s_observed_1.tsv")
    assert main(["genotype", "predict", matrix, "--task", "noise", "--model", str(model),
                 "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 0 < record["predictions"][0]["probability"] < 1
    code = main(["genotype", "predict", matrix, "--task", "branching", "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and "trained for task 'noise'" in err and err.count("\n") == 1


@pytest.mark.parametrize("content,fragment", [
    ("cell\tm1\tm2\nc1\t0\t2\n", ":2:3: "),
    ("cell\tm1\tm2\nc1\t0\n", ":2"),
])
def test_bad_matrices_fail_with_one_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    code = main(["genotype", "check", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1


def test_evaluate_scores_a_model(tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["genotype", "train", "--task", "branching", "--cells", "6", "--mutations", "6",
                 "--steps", "3", "--batch-size", "16", "--width", "8", "-q", "-o", str(model)]) == 0
    assert main(["genotype", "evaluate", "--task", "branching", "--model", str(model), "-n", "300",
                 "--cells", "6", "--mutations", "6", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["matrices"] == 300 and abs(record["positive_fraction"] - 0.5) < 0.1
    assert 0 <= record["accuracy"] <= 1 and 0 <= record["calibration_error"] <= 1


def test_eliminate_writes_a_conflict_free_matrix_and_its_tree(tmp_path, capsys):
    import dendropy

    model = tmp_path / "e.pt"
    assert main(["genotype", "train", "--task", "eliminate", "--cells", "6", "--mutations", "5",
                 "--steps", "3", "--batch-size", "8", "--width", "8", "-q", "-o", str(model)]) == 0
    assert main(["genotype", "simulate", "-n", "2", "--cells", "8", "--mutations", "6",
                 "--beta", "0.3", "--missing", "0.2", "-o", str(tmp_path / "s")]) == 0
    inputs = [str(tmp_path / f"s_observed_{k}.tsv") for k in (1, 2)]
    code = main(["genotype", "predict", *inputs, "--task", "eliminate", "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and "-o" in err and err.count("\n") == 1
    assert main(["genotype", "predict", *inputs, "--task", "eliminate", "--model", str(model),
                 "-o", str(tmp_path / "out"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert len(rows) == 2
    for row in rows:
        assert main(["genotype", "check", row["corrected"], "--json"]) == 0
        checked = json.loads(capsys.readouterr().out)
        assert checked["perfect_phylogeny"] and checked["missing"] == 0
        assert checked["shape"] == row["shape"]
        tree = dendropy.Tree.get(path=row["tree"], schema="newick")
        assert len(tree.leaf_nodes()) >= 1


def test_evaluate_reports_the_classical_baseline(tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["genotype", "train", "--task", "branching", "--cells", "6", "--mutations", "6",
                 "--steps", "2", "--batch-size", "8", "--width", "8", "-q", "-o", str(model)]) == 0
    assert main(["genotype", "evaluate", "--task", "branching", "--model", str(model), "-n", "40",
                 "--baseline-number", "20", "--cells", "6", "--mutations", "6", "--beta", "0",
                 "--alpha", "0", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    # Without noise the most likely correction is the true matrix, so its shape is always right.
    assert record["baseline_matrices"] == 20 and record["baseline_accuracy"] == 1.0


def test_a_file_that_is_not_a_model_fails_with_one_line(tmp_path, capsys):
    matrix = tmp_path / "m.tsv"
    matrix.write_text("cell\tm1\tm2\nc1\t1\t0\nc2\t0\t1\n")
    code = main(["genotype", "predict", str(matrix), "--task", "branching", "--model", str(matrix)])
    err = capsys.readouterr().err
    assert code == 2 and "not a phylovi genotype model" in err and err.count("\n") == 1
