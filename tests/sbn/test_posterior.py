"""TreePosterior on trees small enough to enumerate every topology."""

from __future__ import annotations

import math
import random

import dendropy
import numpy as np
import pytest

from phylovi import TreePosterior
from phylovi.errors import ConfigError, PosteriorFileError, TaxonMismatchError, TreeFileError
from phylovi.sbn.em import fit_em
from phylovi.sbn.support import SubsplitSupport
from phylovi.trees.topology import RootedTopology

METHODS = ["srf", "ccd", "sa", "em", "em-alpha"]
NETWORKS = ["ccd", "sa", "em", "em-alpha"]


@pytest.fixture
def sample6(enumerate_topologies):
    """25 of the 105 six-taxon topologies with random weights, and all 105."""
    every = enumerate_topologies(6)
    rng = random.Random(6)
    chosen = rng.sample(every, 25)
    weights = [rng.uniform(0.1, 3.0) for _ in chosen]
    return chosen, weights, every


@pytest.mark.parametrize("method", METHODS)
def test_probabilities_of_all_topologies_sum_to_one(method, sample6):
    chosen, weights, every = sample6
    posterior = TreePosterior.fit(chosen, method=method, weights=weights)
    probs = np.exp(posterior.log_prob(every))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert (probs >= 0).all()


@pytest.mark.parametrize("method", NETWORKS)
def test_networks_generalise_beyond_the_sample(method, sample6):
    chosen, weights, every = sample6
    posterior = TreePosterior.fit(chosen, method=method, weights=weights)
    unseen = [t for t in every if t not in set(chosen)]
    assert np.exp(posterior.log_prob(unseen)).sum() > 0


def test_srf_is_the_normalised_sample_weight(sample6):
    chosen, weights, _ = sample6
    posterior = TreePosterior.fit(chosen + chosen[:1], method="srf", weights=weights + [1.0])
    total = sum(weights) + 1.0
    assert posterior.probability(chosen[0]) == pytest.approx((weights[0] + 1.0) / total, rel=1e-14)
    assert posterior.probability(chosen[1]) == pytest.approx(weights[1] / total, rel=1e-14)


@pytest.mark.parametrize("method", NETWORKS)
def test_a_single_sampled_topology_gets_probability_one(method, random_topologies):
    tree = random_topologies(9, 1, seed=3)[0]
    posterior = TreePosterior.fit([tree], method=method)
    assert posterior.probability(tree) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("method", ["sa", "ccd"])
def test_sa_and_ccd_equal_srf_on_four_taxa(method, enumerate_topologies):
    # With four taxa every rooting is a distinct rooted tree and no PCSP is
    # shared between topologies, so averaging over rootings loses nothing.
    every = enumerate_topologies(4)
    weights = [0.2, 0.5, 0.3]
    posterior = TreePosterior.fit(every, method=method, weights=weights)
    np.testing.assert_allclose(np.exp(posterior.log_prob(every)), weights, rtol=1e-12)


def test_a_topology_outside_the_support_has_probability_zero(sample6):
    chosen, weights, every = sample6
    srf = TreePosterior.fit(chosen, method="srf", weights=weights)
    unseen = next(t for t in every if t not in set(chosen))
    assert srf.probability(unseen) == 0.0
    assert srf.log_prob([unseen])[0] == -math.inf
    # A network on one tree gives zero to every other topology, without raising.
    single = TreePosterior.fit(chosen[:1], method="em")
    assert single.log_prob(every[:10]).max() <= 0.0
    assert np.isneginf(single.log_prob([t for t in every if t != chosen[0]])).all()


@pytest.mark.parametrize("method", ["sa", "em", "ccd"])
def test_sampling_frequencies_converge_to_probabilities(method, enumerate_topologies):
    every = enumerate_topologies(5)
    rng = random.Random(5)
    chosen = rng.sample(every, 8)
    posterior = TreePosterior.fit(chosen, method=method, weights=[rng.random() for _ in chosen])
    n = 20000
    draws = posterior.sample(n, seed=11)
    counts = {t: 0 for t in every}
    for t in draws:
        counts[t] += 1
    probs = np.exp(posterior.log_prob(every))
    freqs = np.array([counts[t] for t in every]) / n
    # Every difference within 5 binomial standard deviations (and a floor).
    tolerance = 5 * np.sqrt(probs * (1 - probs) / n) + 1e-3
    assert (np.abs(freqs - probs) <= tolerance).all()
    assert posterior.sample(50, seed=11) == draws[:50]


@pytest.mark.parametrize("alpha", [0.0, 1e-4, 0.3])
def test_em_objective_never_decreases(alpha, random_topologies):
    topologies = random_topologies(8, 60, seed=1)
    rng = np.random.default_rng(1)
    weights = rng.exponential(size=60)
    support = SubsplitSupport.from_topologies(topologies[0].taxa, topologies)
    _, trace = fit_em(support, support.encode(topologies), weights, alpha=alpha,
                      min_iterations=30, max_iterations=30)
    steps = np.diff(trace.objective)
    assert trace.n_iterations == 30
    assert (steps >= -1e-12).all()
    assert trace.objective[-1] > trace.objective[0]  # SA is not a fixed point here


def test_em_improves_the_training_likelihood_over_sa(random_topologies):
    topologies = random_topologies(7, 40, seed=2)
    weights = np.random.default_rng(2).exponential(size=40)
    sa = TreePosterior.fit(topologies, method="sa", weights=weights)
    em = TreePosterior.fit(topologies, method="em", weights=weights)
    w = weights / weights.sum()
    assert w @ em.log_prob(topologies) > w @ sa.log_prob(topologies)
    assert em.info.objective[0] == pytest.approx(w @ sa.log_prob(topologies), rel=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_split_support_equals_enumeration(method, sample6):
    chosen, weights, every = sample6
    posterior = TreePosterior.fit(chosen, method=method, weights=weights)
    probs = np.exp(posterior.log_prob(every))
    expected: dict[int, float] = {}
    for topology, p in zip(every, probs):
        for split in topology.nontrivial_splits:
            expected[split] = expected.get(split, 0.0) + p
    support = posterior.split_support()
    assert set(support) == {s for s, p in expected.items() if p > 1e-15}
    for split, p in support.items():
        assert p == pytest.approx(expected[split], abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_top_and_credible_set_match_enumeration(method, enumerate_topologies):
    every = enumerate_topologies(5)
    rng = random.Random(7)
    chosen = rng.sample(every, 6)
    posterior = TreePosterior.fit(chosen, method=method, weights=[rng.random() for _ in chosen])
    probs = np.exp(posterior.log_prob(every))
    order = np.argsort(-probs, kind="stable")
    top = posterior.top(3)
    np.testing.assert_allclose([p for _, p in top], probs[order[:3]], rtol=1e-12)
    assert posterior.map_tree() == top[0][0]
    assert posterior.probability(top[0][0]) == pytest.approx(probs.max())
    credible = posterior.credible_set(0.9)
    mass = np.cumsum(probs[order])
    assert len(credible) == int(np.searchsorted(mass, 0.9 * (1 - 1e-12))) + 1
    assert sum(p for _, p in credible) >= 0.9 - 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_save_and_load_round_trip_exactly(method, sample6, tmp_path, enumerate_topologies):
    chosen, weights, every = sample6
    posterior = TreePosterior.fit(chosen, method=method, weights=weights)
    path = tmp_path / "model.json"
    posterior.save(path)
    loaded = TreePosterior.load(path)
    assert loaded.method == method and loaded.taxa == posterior.taxa
    assert np.array_equal(loaded.log_prob(every), posterior.log_prob(every))
    assert loaded.split_support() == posterior.split_support()
    assert loaded.sample(20, seed=4) == posterior.sample(20, seed=4)
    assert loaded.info.objective == posterior.info.objective


def test_queries_accept_newick_dendropy_and_topologies(sample6):
    chosen, weights, _ = sample6
    posterior = TreePosterior.fit(chosen, method="em", weights=weights)
    newick = chosen[0].to_newick()
    dtree = dendropy.Tree.get(data=newick, schema="newick")
    expected = posterior.probability(chosen[0])
    assert posterior.probability(newick) == expected
    assert posterior.probability(dtree) == expected
    # Rerooting and rotating in the Newick string changes nothing.
    assert posterior.probability("(t5,t4,((t2,t3),(t1,t0)));") == posterior.probability(
        "((t0,t1),(t2,t3),(t4,t5));")


def test_kl_is_zero_against_itself_and_positive_otherwise(sample6):
    chosen, weights, _ = sample6
    srf = TreePosterior.fit(chosen, method="srf", weights=weights)
    assert 0.0 <= srf.kl(srf) < 1e-15  # never a rounding error below 0
    sa = TreePosterior.fit(chosen, method="sa", weights=weights)
    expected = sum(p * math.log(p / sa.probability(t))
                   for t, p in zip(srf.training, srf.training_probabilities))
    assert sa.kl(srf) == pytest.approx(expected, rel=1e-12)
    assert sa.kl(srf) > 0


def test_fit_reads_and_pools_tree_files(tmp_path, sample6):
    chosen, _, _ = sample6
    first, second = tmp_path / "a.nwk", tmp_path / "b.nwk"
    first.write_text("\n".join(t.to_newick() for t in chosen[:3]) + "\n")
    second.write_text(chosen[3].to_newick() + "\n")
    posterior = TreePosterior.fit([first, second], method="srf")
    # Each file has equal weight: a third of a half for each tree of the first.
    assert posterior.probability(chosen[3]) == pytest.approx(0.5)
    assert posterior.probability(chosen[0]) == pytest.approx(1 / 6)
    burnt = TreePosterior.fit(first, method="srf", burnin=0.5)
    assert burnt.probability(chosen[0]) == 0.0 and burnt.info.n_trees == 2


@pytest.mark.parametrize("kwargs,error", [
    ({"method": "bayes"}, ConfigError),
    ({"method": "em", "alpha": 0.1}, ConfigError),
    ({"method": "em-alpha", "alpha": -1.0}, ConfigError),
    ({"method": "em", "burnin": 1.0}, ConfigError),
    ({"method": "em", "min_iterations": 5, "max_iterations": 2}, ConfigError),
    # settings of the wrong type are the package's errors too, not TypeError or ValueError
    ({"method": "em", "burnin": "0.1"}, ConfigError),
    ({"method": "em", "burnin": None}, ConfigError),
    ({"method": "em", "burnin": float("nan")}, ConfigError),
    ({"method": "em", "min_iterations": "5"}, ConfigError),
    ({"method": "em-alpha", "alpha": "x"}, ConfigError),
    ({"method": "srf", "weights": ["a"] * 4}, ConfigError),
])
def test_fit_rejects_bad_settings(kwargs, error, sample6):
    chosen, _, _ = sample6
    with pytest.raises(error):
        TreePosterior.fit(chosen[:4], **kwargs)


def test_fit_and_query_use_topologies_whatever_their_lengths(sample6):
    chosen, _, _ = sample6
    posterior = TreePosterior.fit(chosen, method="sa")
    negative = "((t0:-1,t1:0.1):0.2,(t2:0.1,t3:0.1):-0.5,(t4:0.1,t5:nan):0.1);"
    assert posterior.probability(negative) == posterior.probability("((t0,t1),(t2,t3),(t4,t5));")
    assert TreePosterior.fit([negative], method="srf").probability(negative) == 1.0


def test_no_weight_left_after_burn_in_or_rounding_is_an_error(sample6, tmp_path):
    # an empty model would answer every later query with a traceback or a KL of 0
    chosen, _, _ = sample6
    with pytest.raises(ConfigError, match="after the burn-in sum to zero"):
        TreePosterior.fit(chosen[:2], weights=[1, 0], burnin=0.5)
    trprobs = tmp_path / "small.trprobs"
    trprobs.write_text("#NEXUS\nbegin trees;\n" + "".join(
        f"tree tree_{i} = [&W {w}] {t.to_newick()}\n"
        for i, (t, w) in enumerate(zip(chosen, (0.3, 0.3, 0.4)), 1)) + "end;\n")
    assert TreePosterior.fit(trprobs, method="srf", samples_per_file=10).info.n_topologies == 3
    with pytest.raises(ConfigError, match="small.trprobs round to no sample at 1 samples"):
        TreePosterior.fit(trprobs, method="srf", samples_per_file=1)


@pytest.mark.parametrize("query", [
    lambda p: p.credible_set("0.5"), lambda p: p.sample(3, seed=2 ** 70),
    lambda p: p.sample(3, seed="a"), lambda p: p.kl(p, eps=0), lambda p: p.kl(p, eps="x"),
    lambda p: TreePosterior.load(["model.json"]),
])
def test_queries_with_bad_arguments_raise_config_errors(query, sample6):
    chosen, _, _ = sample6
    with pytest.raises(ConfigError):
        query(TreePosterior.fit(chosen, method="sa"))


def test_bad_trees_raise_phylovi_errors(sample6, tmp_path):
    chosen, _, _ = sample6
    posterior = TreePosterior.fit(chosen, method="sa")
    with pytest.raises(TaxonMismatchError, match="'x'"):
        posterior.probability("((t0,t1),(t2,t3),(t4,x));")
    with pytest.raises(TreeFileError, match="binary"):
        posterior.probability("((t0,t1,t2),(t3,t4),t5);")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(PosteriorFileError, match="bad.json"):
        TreePosterior.load(bad)


@pytest.mark.parametrize("method", ["srf", "sa"])
@pytest.mark.parametrize("damage", ["nan", "negative", "short", "method"])
def test_load_rejects_damaged_probabilities_and_methods(sample6, tmp_path, method, damage):
    import json

    chosen, _, _ = sample6
    path = tmp_path / "model.json"
    TreePosterior.fit(chosen, method=method).save(path)
    record = json.loads(path.read_text())
    probabilities = record["training"]["probability"]
    if damage == "nan":
        probabilities[0] = float("nan")
    elif damage == "negative":
        probabilities[0] = -0.5
    elif damage == "short":
        probabilities.pop()
    else:
        record["method"] = "bogus"
    path.write_text(json.dumps(record))
    with pytest.raises(PosteriorFileError, match="corrupt model"):
        TreePosterior.load(path)


@pytest.mark.parametrize("damage,message", [
    ("root index", "rootsplit clade index"), ("child index", "child clade index"),
    ("short table", "differ in length"), ("root sum", "do not sum to 1"),
    ("pcsp sum", "do not sum to 1"), ("order", "increasing key order"),
    ("rooted", "not true or false"),
])
def test_load_rejects_network_tables_that_do_not_fit_together(sample6, tmp_path, damage, message):
    # each of these once loaded, then gave tracebacks or probabilities above 1 in queries
    import json

    chosen, _, _ = sample6
    path = tmp_path / "model.json"
    TreePosterior.fit(chosen, method="sa").save(path)
    record = json.loads(path.read_text())
    network = record["network"]
    if damage == "root index":
        network["rootsplits"]["clade"][0] = 999
    elif damage == "child index":
        network["pcsps"]["child"][0] = 999
    elif damage == "short table":
        network["pcsps"]["probability"].pop()
    elif damage == "root sum":
        network["rootsplits"]["probability"] = [1.0] * len(network["rootsplits"]["probability"])
    elif damage == "pcsp sum":
        network["pcsps"]["probability"][0] *= 0.5
    elif damage == "order":
        network["rootsplits"]["clade"].reverse()
        network["rootsplits"]["probability"].reverse()
    else:
        record["rooted"] = "no"
    path.write_text(json.dumps(record))
    with pytest.raises(PosteriorFileError, match=message):
        TreePosterior.load(path)


@pytest.fixture
def rooted5(enumerate_rooted_topologies):
    every = enumerate_rooted_topologies(5)
    rng = random.Random(55)
    chosen = rng.sample(every, 12)
    return chosen, [rng.uniform(0.1, 2.0) for _ in chosen], every


@pytest.mark.parametrize("method", METHODS)
def test_rooted_probabilities_sum_to_one_and_clade_support_matches(method, rooted5):
    chosen, weights, every = rooted5
    posterior = TreePosterior.fit(chosen, method=method, weights=weights, rooted=True)
    probs = np.exp(posterior.log_prob(every))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    expected: dict[int, float] = {}
    for topology, p in zip(every, probs):
        for clade in topology.clades:
            if clade.bit_count() > 1:
                expected[clade] = expected.get(clade, 0.0) + p
    support = posterior.clade_support()
    assert set(support) == {c for c, p in expected.items() if p > 1e-15}
    for clade, p in support.items():
        assert p == pytest.approx(expected[clade], abs=1e-12)


def test_rooted_sbn_is_the_product_of_empirical_conditionals(rooted5):
    # With the root observed, SA and EM are the maximum-likelihood rooted SBN:
    # a single rooted tree gets probability 1, and SA equals EM.
    chosen, weights, every = rooted5
    single = TreePosterior.fit(chosen[:1], method="sa", rooted=True)
    assert single.probability(chosen[0]) == pytest.approx(1.0)
    assert single.probability(chosen[1]) == 0.0
    sa = TreePosterior.fit(chosen, method="sa", weights=weights, rooted=True)
    em = TreePosterior.fit(chosen, method="em", weights=weights, rooted=True)
    np.testing.assert_allclose(em.log_prob(every), sa.log_prob(every), rtol=1e-12)


def test_rooted_model_round_trips_and_samples_rooted_trees(rooted5, tmp_path):
    chosen, weights, every = rooted5
    posterior = TreePosterior.fit(chosen, method="em-alpha", weights=weights, rooted=True)
    draws = posterior.sample(30, seed=2)
    assert all(isinstance(t, RootedTopology) for t in draws)
    path = tmp_path / "rooted.json"
    posterior.save(path)
    loaded = TreePosterior.load(path)
    assert loaded.rooted and loaded.sample(30, seed=2) == draws
    assert np.array_equal(loaded.log_prob(every), posterior.log_prob(every))
    # The same unrooted shape rooted elsewhere is a different rooted topology.
    tree = chosen[0]
    here = posterior.probability(tree)
    elsewhere = [posterior.probability(tree.unrooted().rooted_at(split))
                 for split in tree.unrooted().edges if split != tree.root_split]
    assert here > 0 and all(p != here for p in elsewhere)


def test_rooted_fit_reads_roots_from_files_and_rejects_unrooted_trees(tmp_path):
    rooted = tmp_path / "rooted.nwk"
    rooted.write_text("((a,b),(c,(d,e)));\n((a,b),(c,(d,e)));\n(((a,b),c),(d,e));\n")
    posterior = TreePosterior.fit(rooted, method="srf", rooted=True)
    assert posterior.probability("((b,a),((e,d),c));") == pytest.approx(2 / 3)
    clades = {",".join(posterior.clade_names(c)): p for c, p in posterior.clade_support().items()}
    assert clades == {"a,b": pytest.approx(1.0), "d,e": pytest.approx(1.0),
                      "c,d,e": pytest.approx(2 / 3), "a,b,c": pytest.approx(1 / 3)}
    unrooted = tmp_path / "unrooted.nwk"
    unrooted.write_text("((a,b),(c,(d,e)));\n((a,b),c,(d,e));\n")
    with pytest.raises(TreeFileError, match="tree 2 is unrooted"):
        TreePosterior.fit(unrooted, method="sa", rooted=True)
    with pytest.raises(ConfigError, match="rooted model"):
        TreePosterior.fit(rooted, method="sa").clade_support()


def test_sa_equals_a_rooted_fit_to_every_rooting_of_the_sample(sample6, enumerate_rooted_topologies):
    # SBN-SA spreads each tree evenly over its rootings; fitting a rooted SBN
    # to a sample holding every rooting of every tree (weight w / (2n - 3))
    # must give the same rooted distribution, and so the same unrooted one.
    chosen, weights, every = sample6
    rootings, rooted_weights = [], []
    for topology, weight in zip(chosen, weights):
        for split in topology.edges:
            rootings.append(topology.rooted_at(split))
            rooted_weights.append(weight / topology.n_edges)
    rooted = TreePosterior.fit(rootings, method="sa", weights=rooted_weights, rooted=True)
    sa = TreePosterior.fit(chosen, method="sa", weights=weights)
    sums = {}
    for tree, log_p in zip(enumerate_rooted_topologies(6),
                           rooted.log_prob(enumerate_rooted_topologies(6))):
        sums[tree.unrooted()] = sums.get(tree.unrooted(), 0.0) + np.exp(log_p)
    np.testing.assert_allclose([sums[t] for t in every], np.exp(sa.log_prob(every)),
                               rtol=1e-10, atol=1e-15)
