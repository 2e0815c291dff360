"""Log-likelihoods against IQ-TREE 2.0.7 on an alignment with every kind of ambiguity.

A 7-taxon, 60-site alignment simulated by phylovi, then given IUPAC ambiguity
codes (R, Y, K, M, W, B, D, H, V), N, ? and gaps, on a fixed tree; IQ-TREE's
values are from ``iqtree2 -s aln.nex -te tree.nwk -blfix -keep-ident -m MODEL``
with every parameter fixed (its report confirmed each one), and printed to 4
decimals, hence the tolerance of 6e-5. ``+F`` without values checks the
empirical frequencies, which count an ambiguous character as IQ-TREE does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phylovi.errors import ModelError
from phylovi.io.alignment import parse_alignment
from phylovi.io.trees import read_tree, read_trees
from phylovi.likelihood.model_selection import information_criteria, select_model
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.patterns import compress_patterns
from phylovi.likelihood.topology_tests import topology_tests
from phylovi.likelihood.tree_likelihood import TreeLikelihood

ALIGNMENT = """#NEXUS
BEGIN DATA;
  DIMENSIONS NTAX=7 NCHAR=60;
  FORMAT DATATYPE=DNA MISSING=? GAP=-;
  MATRIX
    t7  GGTTCTGTGACGATACCGCGCTGG?TATYGCCTGTGGCAGTGCCCTGCGAATTCGTGCCA
    t4  AATGCAGGGMTAATACCNCGCACGTTAAGTCGGATGDCGGTGCCCWGTGAATCGTCGCCA
    t6  GGTACCGTGACCAGACGHCTCCGGTBTACYCCTGAGGGTGTGCGCTGGCAATTACTGVCA
    t3  GAKRGGTAGGTTACACGGCCCAGGATGTGGCCTGGGGCTGTGCCCTGTGAATTC-CGGCA
    t1  TGTGCGGCTTGGADACGTCCCAGGGTATCACGTTTGACGGTGHCCTGCGAATTGAGCGCC
    t2  AATGCRGCGGHGAAACGGAGCAGGGTTCCTCGGCTGTCAGTGCGCTGGTAATTGG-CGCT
    t5  TCTGGGTCGTATAAACTTCCCAGGGTATTACCTATGTCGGTGCCCVGCGAATTCTTCGCC
  ;
END;
"""
TREE = ("(t5:0.0006473215738,((((t2:0.3288733952,t4:0.3796918737):0.3245319588,"
        "t3:0.1685519292):0.2384834506,(t7:0.2229649647,t6:0.3149951162):0.3180409313)"
        ":0.3990069669,t1:0.2862473674):0.002752439044);")
FREQUENCIES = "+F{0.273,0.312,0.226,0.189}"
GTR = "GTR{1.855,1.41,4.916,1.625,3.862}"

IQTREE = [
    ("JC", -436.5707),
    ("JC+G4{1.4875}", -420.6183),
    ("JC+I{0.173}", -417.9187),
    ("JC+I{0.173}+G4{1.4875}", -416.4773),
    ("K80{5.037}+I{0.173}+G4{1.4875}", -444.6072),
    ("HKY{5.037}" + FREQUENCIES, -477.1599),
    ("HKY{5.037}" + FREQUENCIES + "+I{0.173}+G4{1.4875}", -451.3869),
    ("HKY{5.037}+F+I{0.173}", -442.0184),
    ("HKY{5.037}+FQ+I{0.173}+G4{1.4875}", -444.6072),
    ("TN{5.861,2.236}" + FREQUENCIES + "+G{1.4875}", -450.9791),
    (GTR + FREQUENCIES, -456.7767),
    (GTR + FREQUENCIES + "+G4{1.4875}+I{0.173}", -432.6787),
    (GTR + "+F+G8{1.4875}", -422.2321),
    ("F81+I{0.173}+G8{1.4875}", -409.9835),
    # exchangeabilities of 0, which IQ-TREE takes as given
    ("GTR{0,1.41,4.916,1.625,3.862}" + FREQUENCIES, -452.1333),
    ("GTR{0,1.41,0,1.625,3.862}" + FREQUENCIES + "+G4{1.4875}", -457.5465),
    ("GTR{1.855,0,4.916,0,3.862}" + FREQUENCIES + "+I{0.173}", -506.1848),
]


@pytest.fixture(scope="module")
def data():
    alignment = parse_alignment(ALIGNMENT)
    return compress_patterns(alignment), read_tree(TREE, taxa=alignment.taxa)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("model,expected", IQTREE)
def test_log_likelihood_matches_iqtree(data, model, expected, dtype):
    patterns, tree = data
    likelihood = TreeLikelihood(patterns, parse_model(model, patterns, dtype=dtype), dtype=dtype)
    lengths = torch.as_tensor(tree.branch_lengths, dtype=dtype)
    value = float(likelihood.log_likelihood(tree.topology, lengths))
    assert value == pytest.approx(expected, abs=6e-5 if dtype == torch.float64 else 2e-3)


# IQ-TREE 2.0.7's per-site values (-wsl, 6 significant digits) for the model below, one per
# site in alignment order: ambiguous columns and columns repeated elsewhere included.
IQTREE_SITES_MODEL = GTR + FREQUENCIES + "+G4{1.4875}"
IQTREE_SITES = [
    -9.2815, -10.2493, -3.85974, -7.61661, -10.1896, -9.13491, -12.2091, -9.8997, -6.79078,
    -9.32412, -9.62013, -13.7082, -2.97401, -10.6076, -2.97401, -2.7038, -12.9325, -7.82527,
    -5.7153, -10.06, -2.7038, -7.19404, -5.5584, -2.69112, -9.91707, -3.78095, -10.4889,
    -9.15353, -10.4693, -10.6844, -2.7038, -8.99392, -7.64673, -10.7765, -10.4824, -2.69112,
    -10.0291, -6.17221, -11.1852, -2.69112, -3.86787, -2.69112, -2.62242, -8.85921, -2.7038,
    -7.77759, -2.69112, -11.035, -8.99568, -2.97401, -2.97401, -3.86787, -6.2486, -10.7744,
    -11.1226, -9.30475, -7.99625, -7.33915, -2.7038, -7.68025]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_site_log_likelihoods_match_iqtree(data, dtype):
    patterns, tree = data
    likelihood = TreeLikelihood(patterns, parse_model(IQTREE_SITES_MODEL, patterns, dtype=dtype),
                                dtype=dtype)
    per_pattern = likelihood.tree_site_log_likelihoods([tree])
    assert per_pattern.shape == (1, patterns.n_patterns)
    sites = per_pattern[0, torch.as_tensor(patterns.site_pattern)].double().numpy()
    np.testing.assert_allclose(sites, IQTREE_SITES, rtol=5e-6 if dtype == torch.float64 else 2e-5)

def test_frequencies_on_an_equal_frequency_model_are_refused(data):
    # IQ-TREE reads K80+F{...} as plain K80 (-450.8157 with +I{0.173}); phylovi refuses it
    # rather than silently drop the frequencies.
    patterns, _ = data
    with pytest.raises(ModelError, match="HKY"):
        parse_model("K80{5.037}" + FREQUENCIES + "+I{0.173}", patterns)


# No sequence has a T: +F gives it a frequency of 0, which the eigendecomposition once
# divided by. IQ-TREE 2.0.7 (-keep-ident, everything fixed) reads these values.
NO_T = ">A\nACGACGACGA\n>B\nACGACGACGC\n>C\nACGACGACGA\n>D\nACGACGACGG\n>E\nACGACGACGA\n"
NO_T_TREE = "((A:0.1,B:0.2):0.05,(C:0.1,D:0.15):0.07,E:0.3);"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("model,expected", [
    ("HKY{2}+F", -24.8276),
    ("F81+F", -24.9711),
    ("HKY{2}+F+I{0.2}", -23.5150),
    ("GTR{1.5,3,0.7,1.2,4}+F+G4{0.5}", -21.5410),
])
def test_a_base_absent_from_the_alignment_matches_iqtree(model, expected, dtype):
    alignment = parse_alignment(NO_T)
    patterns = compress_patterns(alignment)
    substitution = parse_model(model, patterns, dtype=dtype)
    assert float(substitution.parameters["frequencies"][3]) == 0.0
    tree = read_tree(NO_T_TREE, taxa=alignment.taxa)
    likelihood = TreeLikelihood(patterns, substitution, dtype=dtype)
    value = float(likelihood.log_likelihood(tree.topology, torch.as_tensor(tree.branch_lengths,
                                                                           dtype=dtype)))
    assert value == pytest.approx(expected, abs=6e-5 if dtype == torch.float64 else 1e-3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_frequencies_written_for_an_absent_base_read_back(dtype):
    """``+F{...,0}`` is what the model string reports for an absent base; it parses."""
    alignment = parse_alignment(NO_T)
    patterns = compress_patterns(alignment)
    written = parse_model("HKY{2}+F", patterns, dtype=dtype).to_string()
    assert written.endswith(",0}")
    again = parse_model(written, patterns, dtype=dtype)
    tree = read_tree(NO_T_TREE, taxa=alignment.taxa)
    likelihood = TreeLikelihood(patterns, again, dtype=dtype)
    value = float(likelihood.log_likelihood(tree.topology, torch.as_tensor(tree.branch_lengths,
                                                                           dtype=dtype)))
    assert value == pytest.approx(-24.8276, abs=6e-5 if dtype == torch.float64 else 1e-3)


def test_a_base_of_tiny_frequency_keeps_the_exact_f81_value():
    # F81: P_ij(t) = e d_ij + (1 - e) pi_j, e = exp(-mu t), mu = 1 / (1 - sum pi^2); a 3-taxon
    # tree has one internal node. T at 1e-10 is far below the other bases but above 1e-12.
    pi = np.array([0.5, 0.5 - 1e-10, 0.0, 1e-10])
    mu = 1 / (1 - np.sum(pi**2))

    def p(t):
        e = np.exp(-mu * t)
        return e * np.eye(4) + (1 - e) * pi[None, :]

    exact = np.log(np.sum(pi * p(0.1)[:, 0] * p(0.2)[:, 0] * p(0.3)[:, 3]))
    alignment = parse_alignment(">a\nA\n>b\nA\n>c\nT\n")
    patterns = compress_patterns(alignment)
    model = parse_model("F81+F{0.5,0.4999999999,0,1e-10}", patterns)
    tree = read_tree("(a:0.1,b:0.2,c:0.3);", taxa=alignment.taxa)
    value = float(TreeLikelihood(patterns, model).log_likelihood(
        tree.topology, torch.as_tensor(tree.branch_lengths)))
    assert value == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("model, message", [
    # below 1e-12 the decomposition would use 1e-12 (the value once came out 2.3 nats high)
    ("F81+F{0.5,0.5,0,1e-13}", "T a frequency below 1e-12"),
    # a base of frequency 0 that a taxon has: impossible, not the value of 1e-12
    ("F81+F{0.5,0.5,0,0}", "T a frequency of 0 .* taxon 'c' has T"),
])
def test_frequencies_the_data_contradict_or_that_cannot_be_resolved_are_refused(model, message):
    patterns = compress_patterns(parse_alignment(">a\nA\n>b\nA\n>c\nT\n"))
    with pytest.raises(ModelError, match=message):
        parse_model(model, patterns)


@pytest.mark.parametrize("model,message", [
    ("GTR{-1,1,1,1,1}", "must not be negative"),
    ("GTR{1,1,1,1,1,0}", "GT rate must be positive"),
    # A exchanges with nothing; {A, C} never with {G, T}
    ("GTR{0,0,0,1,1}", "never exchange A and CGT"),
    ("SYM{1,0,0,0,0,1}", "never exchange AC and GT"),
])
def test_rates_of_0_that_split_the_bases_are_refused(model, message):
    with pytest.raises(ModelError, match=message):
        parse_model(model)


@pytest.mark.parametrize("model", ["HKY", "GTR+FO", "F81+F{1,0,0,0}"])
def test_frequencies_of_a_single_base_are_a_model_error(model):
    """One base leaves no substitution process (the eigendecomposition once failed on it)."""
    alignment = parse_alignment(">A\nAAAAAAAAAA\n>B\nAAAAAAAAAA\n>C\nAAAAAAAAAA\n")
    patterns = compress_patterns(alignment)
    with pytest.raises(ModelError, match="single base \\(A\\)|at least two above 0"):
        parse_model(model, patterns)
    parse_model(model.split("+")[0] + "+FQ", patterns)  # equal frequencies are a model


# Tree-topology tests: the alignment above on its tree and on three rearrangements of it,
# with the same lengths.
FOUR_TREES = """\
(t5:0.0006473215738,((((t2:0.3288733952,t4:0.3796918737):0.3245319588,t3:0.1685519292):0.2384834506,(t7:0.2229649647,t6:0.3149951162):0.3180409313):0.3990069669,t1:0.2862473674):0.002752439044);
(t5:0.0006473215738,((((t2:0.3288733952,t4:0.3796918737):0.3245319588,t7:0.1685519292):0.2384834506,(t3:0.2229649647,t6:0.3149951162):0.3180409313):0.3990069669,t1:0.2862473674):0.002752439044);
(t5:0.0006473215738,((((t2:0.3288733952,t3:0.3796918737):0.3245319588,t4:0.1685519292):0.2384834506,(t7:0.2229649647,t6:0.3149951162):0.3180409313):0.3990069669,t1:0.2862473674):0.002752439044);
(t5:0.0006473215738,((((t2:0.3288733952,t4:0.3796918737):0.3245319588,t3:0.1685519292):0.2384834506,t1:0.3180409313):0.3990069669,(t7:0.2229649647,t6:0.3149951162):0.2862473674):0.002752439044);
"""
# IQ-TREE 2.0.7: iqtree2 -s aln.nex -te TREE1 -blfix -z FOUR_TREES -m MODEL -keep-ident
# -zb 10000 -au -seed 1 (its RELL draws: Monte Carlo error about 0.005, more for AU)
IQTREE = {
    "log_likelihoods": [-437.9192245, -441.3628037, -444.9776075, -452.8091437],
    "bp_rell": [0.737, 0.217, 0.0439, 0.0019],
    "p_kh": [0.779, 0.221, 0.0669, 0.0059],
    "p_sh": [1.0, 0.479, 0.255, 0.0378],
    "c_elw": [0.714, 0.23, 0.0535, 0.00316],
    "p_au": [0.874, 0.244, 0.0511, 0.00242],
}


def test_tests_match_iqtree(tmp_path):
    alignment = parse_alignment(ALIGNMENT)
    patterns = compress_patterns(alignment)
    (tmp_path / "trees.nwk").write_text(FOUR_TREES)
    trees = read_trees(tmp_path / "trees.nwk", taxa=alignment.taxa).trees
    likelihood = TreeLikelihood(patterns, parse_model(GTR + FREQUENCIES + "+G4{1.4875}",
                                                      patterns))
    site = likelihood.tree_site_log_likelihoods(trees).numpy()
    result = topology_tests(site, patterns.weights, replicates=20000, seed=3)
    np.testing.assert_allclose(result.log_likelihoods, IQTREE["log_likelihoods"], atol=1e-6)
    for name in ("bp_rell", "p_kh", "p_sh", "c_elw"):
        np.testing.assert_allclose(getattr(result, name), IQTREE[name], atol=0.02, err_msg=name)
    np.testing.assert_allclose(result.p_au, IQTREE["p_au"], atol=0.03)


# IQ-TREE 2.0.7's ModelFinder on the same alignment and topology (branch lengths
# estimated): iqtree2 -s aln.nex -te tree.nwk -keep-ident -m TESTONLY
# -mset JC,F81,K2P,HKY,TN,SYM,GTR -mrate E,I,G,I+G; its -lnL (3 decimals) and df
IQTREE_MODELFINDER = [
    ("JC", 424.474, 11), ("JC+I", 409.292, 12), ("JC+G4", 412.024, 12),
    ("JC+I+G4", 409.301, 13), ("F81+F", 419.896, 14), ("F81+F+I", 403.329, 15),
    ("F81+F+G4", 405.613, 15), ("F81+F+I+G4", 403.331, 16), ("K2P", 421.279, 12),
    ("K2P+I", 404.944, 13), ("K2P+G4", 407.540, 13), ("K2P+I+G4", 404.963, 14),
    ("HKY+F", 417.168, 15), ("HKY+F+I", 399.845, 16), ("HKY+F+G4", 402.325, 16),
    ("HKY+F+I+G4", 399.866, 17), ("TN+F", 416.710, 16), ("TN+F+I", 399.630, 17),
    ("TN+F+G4", 402.261, 17), ("TN+F+I+G4", 399.717, 18), ("SYM", 413.586, 16),
    ("SYM+I", 398.475, 17), ("SYM+G4", 400.436, 17), ("SYM+I+G4", 398.358, 18),
    ("GTR+F", 411.199, 19), ("GTR+F+I", 393.900, 20), ("GTR+F+G4", 397.228, 20),
    ("GTR+F+I+G4", 393.883, 21),
]


def test_information_criteria_match_iqtree():
    # IQ-TREE's JC row: -lnL 424.474, df 11, 60 sites -> AIC 870.948, AICc 876.448, BIC 893.986
    assert information_criteria(-424.474, 11, 60) == pytest.approx((870.948, 876.448, 893.986),
                                                                    abs=1e-3)
    assert information_criteria(-10.0, 5, 6)[1] == math.inf  # AICc needs n > df + 1


def test_model_selection_matches_iqtree_modelfinder(data):
    patterns, tree = data
    ranked = select_model(patterns, tree)
    fits = {fit.name: fit for fit in ranked}
    assert set(fits) == {name for name, _, _ in IQTREE_MODELFINDER}
    for name, minus_lnl, df in IQTREE_MODELFINDER:
        fit = fits[name]
        assert fit.df == df, name
        # IQ-TREE's maximum or a little higher (its optimiser stops earlier: by up to
        # 0.09 here), never lower
        assert -minus_lnl - 5e-4 <= fit.log_likelihood <= -minus_lnl + 0.1, name
        assert parse_model(fit.model, patterns).free == ()  # the fitted values read back
    assert ranked[0].name == "K2P+I"  # IQ-TREE's best by BIC, and by AICc
    assert min(ranked, key=lambda fit: fit.aicc).name == "K2P+I"
    assert min(ranked, key=lambda fit: fit.aic).name == "GTR+F+I"  # and by AIC
    assert [fit.bic for fit in ranked] == sorted(fit.bic for fit in ranked)
