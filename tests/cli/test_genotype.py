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
    # SCITE's files have no header: its first row of data must not be read as names
    ("1 0 1\n0 1 1\n1 1 0\n", ":1: the first line holds only entries"),
])
def test_bad_matrices_fail_with_one_line(tmp_path, capsys, content, fragment):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    code = main(["genotype", "check", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1


def test_check_names_the_first_conflicting_pairs_and_counts_them_all(tmp_path, capsys):
    # 12 mutations, each pair of the first 6 conflicting (15 pairs): the text names 10
    names = [f"m{j}" for j in range(12)]
    rows = []
    for i in range(6):
        for k in range(i + 1, 6):  # cells showing 11, 10 and 01 at every pair (i, k)
            rows += [[int(j in (i, k)) for j in range(12)], [int(j == i) for j in range(12)],
                     [int(j == k) for j in range(12)]]
    path = tmp_path / "conflicts.tsv"
    path.write_text("cell\t" + "\t".join(names) + "\n" + "".join(
        f"c{n}\t" + "\t".join(map(str, row)) + "\n" for n, row in enumerate(rows)))
    assert main(["genotype", "check", str(path)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("conflicting_pairs")][0]
    fields = line.split("\t")
    assert fields[1] == "15 of 66" and fields[2:4] == ["m0/m1", "m0/m2"] and fields[-1] == "..."
    assert len(fields) == 2 + 10 + 1
    assert main(["genotype", "check", str(path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["conflicting_pairs"]) == 15


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


def _fails(capsys, argv, *fragments) -> str:
    """Run ``phylovi argv``; assert exit code 2 and one error line holding ``fragments``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("phylovi: error: ") and err.count("\n") == 1, err
    assert all(fragment in err for fragment in fragments), err
    return err


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


TRAIN = ["genotype", "train", "--task", "branching", "--steps", "2", "--batch-size", "2",
         "--width", "4", "--cells", "3", "--mutations", "3", "-q"]
MATRIX = "cell\tm1\tm2\nc1\t1\t0\nc2\t0\t1\nc3\t1\t1\n"


def test_eliminate_refuses_two_inputs_with_one_file_stem(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "out").mkdir()
    for path in (tmp_path / "ok.tsv", tmp_path / "sub" / "ok.tsv"):
        path.write_text(MATRIX)
    first, second = str(tmp_path / "ok.tsv"), str(tmp_path / "sub" / "ok.tsv")
    _fails(capsys, ["genotype", "predict", "--task", "eliminate", "-o", str(tmp_path / "out" / "r"),
                    first, second], first, second)
    assert _names(tmp_path / "out") == []


@pytest.mark.parametrize("blocked", ["p_observed_2.tsv", "p_labels.tsv"])
def test_simulate_writes_all_files_or_none(tmp_path, capsys, blocked):
    (tmp_path / blocked).mkdir()
    _fails(capsys, ["genotype", "simulate", "--cells", "4", "--mutations", "3", "-n", "2", "-o",
                    str(tmp_path / "p")], blocked, "is a folder")
    assert _names(tmp_path) == [blocked]


def test_simulate_into_a_missing_folder_fails_with_one_line(tmp_path, capsys):
    _fails(capsys, ["genotype", "simulate", "-o", str(tmp_path / "absent" / "p")],
           "absent/p_true_1.tsv", "No such file or directory")


def test_simulate_out_of_memory_fails_with_one_line(tmp_path, capsys, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("phylovi.genotype.simulate.simulate", out_of_memory)
    _fails(capsys, ["genotype", "simulate", "--cells", "90000", "-o", str(tmp_path / "p")],
           "not enough memory", "--cells 90000")
    assert _names(tmp_path) == []


def test_simulate_refuses_more_than_the_free_memory_before_starting(tmp_path, capsys,
                                                                    monkeypatch):
    # The kernel kills a process that outgrows memory (no MemoryError): check up front.
    def never(*args, **kwargs):
        raise AssertionError("the simulation should not start")

    monkeypatch.setattr("phylovi.genotype.simulate.simulate", never)
    monkeypatch.setattr("phylovi.cli._common.available_memory", lambda: 20_000)
    # 2 x 100 x 100 + 2 x 100 x 10 = 22,000 bytes at least
    _fails(capsys, ["genotype", "simulate", "--cells", "100", "-o", str(tmp_path / "p")],
           "not enough memory", "--cells 100")
    assert _names(tmp_path) == []


@pytest.mark.parametrize("blocked,fragment", [("p_tree.nwk", "is a folder"),
                                              ("absent", "cannot write here")])
def test_eliminate_writes_the_matrix_and_its_tree_or_neither(tmp_path, capsys, blocked, fragment):
    matrix = tmp_path / "m.tsv"
    matrix.write_text(MATRIX)
    prefix = tmp_path / "p" if blocked == "p_tree.nwk" else tmp_path / "absent" / "p"
    (tmp_path / "p_tree.nwk").mkdir()
    _fails(capsys, ["genotype", "predict", "--task", "eliminate", "-o", str(prefix), str(matrix)],
           fragment)
    assert _names(tmp_path) == ["m.tsv", "p_tree.nwk"]


@pytest.mark.parametrize("output,fragment", [("folder", "is a folder"),
                                             ("absent/m.pt", "cannot write here")])
def test_train_checks_its_output_before_training(tmp_path, capsys, monkeypatch, output, fragment):
    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr("phylovi.genotype.train._optimise", no_training)
    (tmp_path / "folder").mkdir()
    _fails(capsys, [*TRAIN, "-o", str(tmp_path / output)], output, fragment)
    assert _names(tmp_path) == ["folder"] and _names(tmp_path / "folder") == []


@pytest.mark.parametrize("device,fragment", [("gpu", "unknown device 'gpu'"),
                                             ("cuda:99", "torch sees")])
def test_train_refuses_a_bad_device(tmp_path, capsys, device, fragment):
    _fails(capsys, [*TRAIN, "--device", device, "-o", str(tmp_path / "m.pt")], "--device", fragment)
    assert _names(tmp_path) == []


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
@pytest.mark.parametrize("command", [
    TRAIN + ["--device", "cpu", "-o", "{tmp}/m.pt"],
    ["genotype", "evaluate", "--task", "branching", "-n", "4", "--cells", "5", "--mutations", "5"],
    ["genotype", "simulate", "-o", "{tmp}/s"],
])
def test_a_seed_out_of_range_is_refused(tmp_path, capsys, command, seed):
    argv = [part.replace("{tmp}", str(tmp_path)) for part in command]
    _fails(capsys, [*argv, "--seed", seed], "--seed", seed)
    assert _names(tmp_path) == []


@pytest.mark.parametrize("command", [
    ["genotype", "simulate", "-o", "{tmp}/s"],
    ["genotype", "evaluate", "--task", "branching", "-n", "4"],
])
@pytest.mark.parametrize("option", ["--cells", "--mutations", "--number"])
def test_huge_sizes_are_refused_up_front(tmp_path, capsys, command, option):
    argv = [part.replace("{tmp}", str(tmp_path)) for part in command]
    _fails(capsys, [*argv, option, "99999999999999999999"], option, "99999999999999999999")
    assert _names(tmp_path) == []


@pytest.mark.parametrize("task", ["branching", "eliminate"])
def test_evaluate_counts_a_time_limit_hit_before_any_solution(capsys, task):
    assert main(["genotype", "evaluate", "--task", task, "-n", "2", "--baseline-number", "1",
                 "--cells", "30", "--mutations", "20", "--time-limit", "0", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["baseline_matrices"] == 1 and record["baseline_time_limited"] == 1


@pytest.mark.parametrize("limit", ["-1", "nan"])
def test_evaluate_refuses_a_negative_or_nan_time_limit(capsys, limit):
    _fails(capsys, ["genotype", "evaluate", "--task", "branching", "-n", "4", "--time-limit",
                    limit], "--time-limit", limit)


def test_a_model_file_holding_a_bare_tensor_fails_with_one_line(tmp_path, capsys):
    import torch

    matrix, model = tmp_path / "m.tsv", tmp_path / "tensor.pt"
    matrix.write_text(MATRIX)
    torch.save(torch.zeros(3), model)
    _fails(capsys, ["genotype", "predict", str(matrix), "--task", "branching", "--model",
                    str(model)], str(model), "not a phylovi genotype model")


def test_train_on_a_damaged_checkpoint_fails_with_one_line(tmp_path, capsys):
    checkpoint = tmp_path / "m.pt.checkpoint"
    checkpoint.write_bytes(b"\x9c not a checkpoint")
    _fails(capsys, [*TRAIN, "--device", "cpu", "-o", str(tmp_path / "m.pt")], str(checkpoint),
           "delete it")
    assert _names(tmp_path) == ["m.pt.checkpoint"]


@pytest.mark.parametrize("task", ["branching", "noise"])
def test_matrices_too_small_to_branch_or_conflict_get_exactly_zero(tmp_path, capsys, task):
    paths = []
    for name, text in (("one.tsv", "cell\tm1\nc1\t1\n"),
                       ("onemut.tsv", "cell\tm1\na\t1\nb\t0\nc\t1\n"),
                       ("onecell.tsv", "cell\tm1\tm2\nc1\t1\t1\n")):
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    assert main(["genotype", "predict", "--task", task, "--json", *paths]) == 0
    captured = capsys.readouterr()
    assert [row["probability"] for row in json.loads(captured.out)["predictions"]] == [0, 0, 0]
    assert captured.err.count("phylovi: note: ") == 3 and "exactly 0" in captured.err
    # the note gives the matrix's size
    assert "onemut.tsv (3 x 1)" in captured.err


def test_train_refuses_a_huge_size_range(tmp_path, capsys):
    _fails(capsys, [*TRAIN, "--cells", "3..99999999999999999999", "-o", str(tmp_path / "m.pt")],
           "--cells", "99999999999999999999")
    assert _names(tmp_path) == []
