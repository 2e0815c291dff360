"""Site-pattern compression, empirical frequencies, constant sites and tip partials."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phylovi.errors import AlignmentError
from phylovi.io.alignment import DNA_CHARACTERS, Alignment, parse_alignment, read_alignment
from phylovi.likelihood.patterns import (
    STATE_CODES,
    compress_patterns,
    constant_pattern_states,
    empirical_frequencies,
)
from phylovi.likelihood.tips import code_table, tip_partials
from phylovi.trees.taxa import TaxonOrder

# A character's IUPAC meaning, written out independently of the code under test.
IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T", "U": "T",
    "R": "AG", "Y": "CT", "K": "GT", "M": "AC", "S": "CG", "W": "AT",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG",
    "N": "ACGT", "X": "ACGT", "?": "ACGT", "-": "ACGT",
}


def alignment_of(*sequences: str) -> Alignment:
    text = "".join(f">t{i}\n{sequence}\n" for i, sequence in enumerate(sequences))
    return parse_alignment(text, "fasta")


def random_alignment(seed: int, n_taxa: int = 6, n_sites: int = 300) -> Alignment:
    # Few distinct characters so that columns repeat often.
    rng = np.random.default_rng(seed)
    characters = np.array(list("ACGTRN-"))[rng.integers(0, 7, size=(n_taxa, n_sites))]
    return alignment_of(*("".join(row) for row in characters))


def bases(code: int) -> str:
    return "".join(base for bit, base in enumerate("ACGT") if code >> bit & 1)


def test_state_codes_cover_exactly_the_alignment_alphabet():
    assert set(STATE_CODES) == set(DNA_CHARACTERS)


@pytest.mark.parametrize("character", sorted(IUPAC))
def test_state_codes_character_allows_its_iupac_bases(character):
    assert bases(STATE_CODES[character]) == IUPAC[character]


@pytest.mark.parametrize("character", sorted(IUPAC))
def test_compress_patterns_character_becomes_its_iupac_bases(character):
    patterns = compress_patterns(alignment_of("A" + character, "AA"))
    assert bases(patterns.codes[0, patterns.site_pattern[1]]) == IUPAC[character]


def test_compress_patterns_lowercase_equals_uppercase():
    upper = compress_patterns(alignment_of("ACGTRYKMSWBDHVNX?-", "ACGTACGTACGTACGTAC"))
    lower = compress_patterns(alignment_of("acgtrykmswbdhvnx?-", "acgtacgtacgtacgtac"))
    np.testing.assert_array_equal(lower.codes, upper.codes)
    np.testing.assert_array_equal(lower.site_pattern, upper.site_pattern)


def test_compress_patterns_repeated_columns_collapse_in_first_appearance_order():
    patterns = compress_patterns(alignment_of("GAGGTA", "CACCTA", "TAUTTA"))
    expected = np.array([[4, 1, 8], [2, 1, 8], [8, 1, 8]], dtype=np.uint8)  # GCT, AAA, TTT
    np.testing.assert_array_equal(patterns.codes, expected)
    np.testing.assert_array_equal(patterns.weights, [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(patterns.site_pattern, [0, 1, 0, 0, 2, 1])
    assert (patterns.n_taxa, patterns.n_patterns, patterns.n_sites) == (3, 3, 6)


@pytest.mark.parametrize("seed", range(5))
def test_compress_patterns_expanding_reproduces_alignment_columns(seed):
    alignment = random_alignment(seed)
    patterns = compress_patterns(alignment)
    expected = np.array([[STATE_CODES[c] for c in sequence] for sequence in alignment.sequences])
    np.testing.assert_array_equal(patterns.codes[:, patterns.site_pattern], expected)
    assert patterns.weights.sum() == alignment.n_sites
    np.testing.assert_array_equal(np.bincount(patterns.site_pattern), patterns.weights)
    assert len({column.tobytes() for column in patterns.codes.T}) == patterns.n_patterns
    # first appearance order: pattern p first occurs before pattern p + 1
    first = [np.flatnonzero(patterns.site_pattern == p)[0] for p in range(patterns.n_patterns)]
    assert first == sorted(first)


def test_compress_patterns_arrays_have_documented_dtypes():
    patterns = compress_patterns(random_alignment(0))
    assert patterns.codes.dtype == np.uint8
    assert patterns.weights.dtype == np.float64
    assert patterns.site_pattern.dtype == np.int64


@pytest.mark.parametrize("sequence", ["ACZT", "ACäT"])
def test_compress_patterns_hand_built_bad_character_raises(sequence):
    alignment = Alignment(TaxonOrder(["a", "b"]), ("ACGT", sequence))
    with pytest.raises(AlignmentError, match="'b'.*site 3"):
        compress_patterns(alignment)


@pytest.mark.parametrize("name, n_taxa, n_sites, n_patterns", [
    ("sim/sim27.fasta", 27, 1949, 1094),
    ("sim/sim100.fasta", 100, 10_000, 7459),
    ("ds/DS1.fasta", 27, 1949, 934),
    ("marginal/DS1.nex", 27, 1949, 934),
])
def test_compress_patterns_shared_data_has_known_counts(shared, name, n_taxa, n_sites,
                                                        n_patterns):
    patterns = compress_patterns(read_alignment(shared(name)))
    assert (patterns.n_taxa, patterns.n_sites, patterns.n_patterns) == (n_taxa, n_sites,
                                                                        n_patterns)
    assert patterns.weights.sum() == n_sites


def test_empirical_frequencies_unambiguous_are_proportions():
    frequencies = empirical_frequencies(compress_patterns(alignment_of("AACG", "AATT")))
    np.testing.assert_allclose(frequencies, [4 / 8, 1 / 8, 1 / 8, 2 / 8], rtol=1e-15)


def test_empirical_frequencies_fully_ambiguous_only_is_uniform():
    frequencies = empirical_frequencies(compress_patterns(alignment_of("N-?X", "NNNN")))
    np.testing.assert_allclose(frequencies, [0.25] * 4, rtol=1e-15)


def test_empirical_frequencies_ambiguous_follow_iqtree_rounds():
    # "AR" from uniform: round 1 splits R evenly, so f = (3/4, 0, 1/4, 0). Then R gives
    # G its share f_G / (f_A + f_G) = f_G out of a total of 2: f_G halves in each of
    # the 7 remaining rounds, leaving 1/512 (the converged answer would be 0).
    frequencies = empirical_frequencies(compress_patterns(alignment_of("AR")))
    np.testing.assert_allclose(frequencies, [1 - 1 / 512, 0, 1 / 512, 0], rtol=1e-15)


def test_empirical_frequencies_pattern_weights_count():
    frequencies = empirical_frequencies(compress_patterns(alignment_of("AAAAC")))
    np.testing.assert_allclose(frequencies, [0.8, 0.2, 0.0, 0.0], rtol=1e-15)


@pytest.mark.parametrize("name", ["sim/sim27.fasta", "ds/DS1.fasta"])
def test_empirical_frequencies_shared_data_match_base_counts(shared, name):
    alignment = read_alignment(shared(name))
    text = "".join(alignment.sequences)
    counts = np.array([text.count(base) for base in "ACGT"], dtype=np.float64)
    # DS1's gaps pull towards the current estimate only, so 8 rounds leave ~1e-8.
    np.testing.assert_allclose(empirical_frequencies(compress_patterns(alignment)),
                               counts / counts.sum(), rtol=0, atol=1e-7)


def test_constant_pattern_states_allows_states_shared_by_every_taxon():
    patterns = compress_patterns(alignment_of("AARRN", "ARYKN", "AAYGN"))
    expected = [[True, False, False, False],   # A A A
                [True, False, False, False],   # A R A
                [False, False, False, False],  # R Y Y
                [False, False, True, False],   # R K G
                [True, True, True, True]]      # N N N
    np.testing.assert_array_equal(constant_pattern_states(patterns), expected)


def test_code_table_rows_are_bit_sets():
    table = code_table(torch.float32)
    assert table.shape == (16, 4) and table.dtype == torch.float32
    for code in range(16):
        assert table[code].tolist() == [float(code >> bit & 1) for bit in range(4)]


def test_tip_partials_follow_iupac_bases():
    alignment = alignment_of("ACGTRYKMSWBDHVNX?-U", "AAAAAAAAAAAAAAAAAAA")
    patterns = compress_patterns(alignment)
    partials = tip_partials(patterns)
    assert partials.shape == (2, patterns.n_patterns, 4)
    assert partials.dtype == torch.float64
    for site, character in enumerate(alignment.sequences[0]):
        expected = [float(base in IUPAC[character]) for base in "ACGT"]
        assert partials[0, patterns.site_pattern[site]].tolist() == expected


def test_tip_partials_take_dtype_and_device():
    partials = tip_partials(compress_patterns(alignment_of("ACGT")), dtype=torch.float32,
                            device="cpu")
    assert partials.dtype == torch.float32 and partials.device.type == "cpu"
