"""``phylovi sbn fit/query/kl`` in-process: outputs, JSON, and bad input."""

from __future__ import annotations

import json
import math

import pytest

from phylovi import TreePosterior
from phylovi.cli import main

TREES = ["((a,b),c,(d,e));", "((a,b),c,(d,e));", "((a,c),b,(d,e));", "((a,b),(c,d),e);",
         "((a,b),c,(d,e));"]
TRPROBS = """#NEXUS
begin trees;
   translate
      1 a,
      2 b,
      3 c,
      4 d,
      5 e;
   tree tree_1 [p = 0.6] = [&W 0.6] ((1,2),3,(4,5));
   tree tree_2 [p = 0.4] = [&W 0.4] ((1,3),2,(4,5));
end;
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "run.nwk").write_text("\n".join(TREES) + "\n")
    (tmp_path / "run.trprobs").write_text(TRPROBS)
    return tmp_path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_then_query_a_tree(files, capsys):
    model = files / "model.json"
    code, out, _ = run(["sbn", "fit", files / "run.nwk", "--method", "srf", "-o", model], capsys)
    assert code == 0 and "5 trees, 3 topologies" in out
    code, out, _ = run(["sbn", "query", model, "--tree", "(e,d,(c,(b,a)));"], capsys)
    header, row = out.strip().splitlines()
    assert header.split("\t") == ["tree", "probability", "log_probability", "newick"]
    assert float(row.split("\t")[1]) == pytest.approx(0.6)
    # a file's trees are rows named by their place, with the topology written out
    trees = files / "query.nwk"
    trees.write_text("(e,d,(c,(b,a)));\n((a,c),b,(d,e));\n")
    code, out, _ = run(["sbn", "query", model, "--tree", trees, "--json"], capsys)
    rows = json.loads(out)
    assert [r["tree"] for r in rows] == ["1", "2"]
    posterior = TreePosterior.load(model)
    for row, expected in zip(rows, (0.6, posterior.probability("((a,c),b,(d,e));"))):
        assert posterior.probability(row["newick"]) == pytest.approx(expected)
        assert row["probability"] == pytest.approx(expected)


@pytest.mark.parametrize("method", ["ccd", "sa", "em", "em-alpha"])
def test_fit_json_summary_and_top_k(method, files, capsys):
    model = files / "model.json"
    code, out, _ = run(["sbn", "fit", files / "run.nwk", "--method", method, "-o", model,
                        "--json"], capsys)
    record = json.loads(out)
    assert code == 0 and record["n_topologies"] == 3 and record["n_taxa"] == 5
    assert (record["iterations"] >= 50) == method.startswith("em")
    code, out, _ = run(["sbn", "query", model, "--top", 2, "--json"], capsys)
    rows = json.loads(out)
    posterior = TreePosterior.load(model)
    assert [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["probability"] == pytest.approx(posterior.probability(rows[0]["newick"]))
    assert rows[0]["probability"] >= rows[1]["probability"]


def test_query_credible_splits_and_sample(files, capsys):
    model = files / "model.json"
    run(["sbn", "fit", files / "run.trprobs", "--method", "srf", "-o", model], capsys)
    code, out, _ = run(["sbn", "query", model, "--credible", 0.5], capsys)
    assert code == 0 and len(out.strip().splitlines()) == 2  # header + the 0.6 tree
    code, out, _ = run(["sbn", "query", model, "--splits", "--json"], capsys)
    support = {row["taxa"]: row["support"] for row in json.loads(out)}
    assert support == {"d,e": pytest.approx(1.0), "a,b": pytest.approx(0.6),
                       "a,c": pytest.approx(0.4)}
    _, first, _ = run(["sbn", "query", model, "--sample", 30, "--seed", 5], capsys)
    _, again, _ = run(["sbn", "query", model, "--sample", 30, "--seed", 5], capsys)
    assert first == again and len(first.splitlines()) == 30


def test_kl_against_a_reference_file(files, capsys):
    model = files / "model.json"
    run(["sbn", "fit", files / "run.nwk", "--method", "srf", "-o", model], capsys)
    code, out, _ = run(["sbn", "kl", model, "--reference", files / "run.trprobs", "--json"], capsys)
    # Reference 0.6 / 0.4 over two topologies; the model has 0.6 and 0.2 for them.
    expected = 0.6 * math.log(0.6 / 0.6) + 0.4 * math.log(0.4 / 0.2)
    assert code == 0 and json.loads(out)["kl"] == pytest.approx(expected, rel=1e-12)


def test_kl_of_a_rooted_model_uses_a_rooted_reference(files, capsys):
    # Three rooted trees, two rootings of one unrooted topology: the rooted SRF of the
    # first two files' trees is 2/3 and 1/3; the reference has them at 1/2 and 1/2.
    (files / "rooted.nwk").write_text("[&R] ((a,b),(c,(d,e)));\n[&R] ((a,b),(c,(d,e)));\n"
                                      "[&R] (((a,b),c),(d,e));\n")
    (files / "reference.nwk").write_text("[&R] ((a,b),(c,(d,e)));\n[&R] (((a,b),c),(d,e));\n")
    model = files / "rooted.json"
    run(["sbn", "fit", files / "rooted.nwk", "--rooted", "--method", "srf", "-o", model], capsys)
    code, out, err = run(["sbn", "kl", model, "--reference", files / "reference.nwk", "--json"],
                         capsys)
    expected = 0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))
    assert code == 0, err
    assert json.loads(out)["kl"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("content,fragment", [
    ("((a,b),c,(d,x));\n", "'x'"),
    ("((a,b,c),(d,e));\n", "binary"),
    (TRPROBS.replace("[&W 0.4]", "[&W zero]"), "weight"),
])
def test_fit_bad_trees_fail_cleanly(content, fragment, files, capsys):
    reference = files / "run.nwk"
    bad = files / "bad.trees"
    bad.write_text(content)
    output = files / "model.json"
    code, _, err = run(["sbn", "fit", reference, bad, "-o", output], capsys)
    assert code == 2
    assert err.count("\n") == 1 and fragment in err and "bad.trees" in err
    assert not output.exists()


@pytest.mark.parametrize("argv,fragment", [
    (["--burnin", "1.0"], "burn-in"),
    (["--burnin", "-0.1"], "burn-in"),
    (["--method", "em", "--alpha", "0.5"], "alpha"),
])
def test_fit_bad_settings_fail_cleanly(argv, fragment, files, capsys):
    output = files / "model.json"
    code, _, err = run(["sbn", "fit", files / "run.nwk", "-o", output, *argv], capsys)
    assert code == 2 and err.count("\n") == 1 and fragment in err
    assert not output.exists()


def test_query_with_other_taxa_or_a_bad_model_fails_cleanly(files, capsys):
    model = files / "model.json"
    run(["sbn", "fit", files / "run.nwk", "-o", model], capsys)
    code, _, err = run(["sbn", "query", model, "--tree", "((a,b),c,(d,z));"], capsys)
    assert code == 2 and "'z'" in err and err.count("\n") == 1
    code, _, err = run(["sbn", "query", files / "run.nwk", "--top", 1], capsys)
    assert code == 2 and "run.nwk" in err and err.count("\n") == 1


def test_rooted_fit_and_clade_support(tmp_path, capsys):
    trees = tmp_path / "time.trees"
    trees.write_text("((a,b),(c,(d,e)));\n(((a,b),c),(d,e));\n((a,b),(c,(d,e)));\n")
    model = tmp_path / "rooted.json"
    code, out, _ = run(["sbn", "fit", trees, "--rooted", "--method", "sa", "-o", model], capsys)
    assert code == 0 and "2 rooted topologies" in out
    code, out, _ = run(["sbn", "query", model, "--clades", "--json"], capsys)
    support = {row["taxa"]: row["support"] for row in json.loads(out)}
    assert support["c,d,e"] == pytest.approx(2 / 3) and support["a,b,c"] == pytest.approx(1 / 3)
    unrooted = tmp_path / "unrooted.json"
    run(["sbn", "fit", trees, "-o", unrooted], capsys)
    code, _, err = run(["sbn", "query", unrooted, "--clades"], capsys)
    assert code == 2 and "rooted" in err and err.count("\n") == 1
