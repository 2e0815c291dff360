"""Substitution models, site rates and model strings."""

from __future__ import annotations

import math

import pytest
import torch

from phylovi.errors import ModelError
from phylovi.likelihood.model_string import parse_model
from phylovi.likelihood.models import compact_spectrum, from_spectrum
from phylovi.likelihood.rates import discrete_gamma_rates


def test_discrete_gamma_mean_rates_match_iqtree_and_mrbayes():
    # ../shared/references/likelihood.md: shape 0.5, 4 categories, category means.
    rates = discrete_gamma_rates(torch.tensor(0.5, dtype=torch.float64), 4)
    torch.testing.assert_close(rates, torch.tensor(
        [0.03338775, 0.25191592, 0.82026848, 2.89442785], dtype=torch.float64), atol=5e-8, rtol=0)


@pytest.mark.parametrize("shape,k", [(0.1, 4), (0.5, 4), (2.0, 6), (20.0, 3)])
def test_discrete_gamma_rates_average_one(shape, k):
    rates = discrete_gamma_rates(torch.tensor(shape, dtype=torch.float64), k)
    assert rates.mean().item() == pytest.approx(1.0, rel=1e-10)
    assert bool((rates.diff() > 0).all())


def test_jc69_transition_probabilities_have_the_closed_form():
    model = parse_model("JC").substitution
    t = torch.tensor([0.01, 0.3, 2.0], dtype=torch.float64)
    p = model.transition_matrices(t)
    same = 0.25 + 0.75 * torch.exp(-4 * t / 3)
    torch.testing.assert_close(p[:, 0, 0], same)
    torch.testing.assert_close(p[:, 0, 1], (1 - same) / 3)


@pytest.mark.parametrize("text", ["JC", "HKY{3}+F{0.1,0.2,0.3,0.4}",
                                  "GTR{1,2,3,4,5}+F{0.1,0.2,0.3,0.4}"])
def test_transition_probabilities_keep_full_precision_on_short_branches(text):
    # P(0) is exactly the identity (so zero-length branches between different
    # sequences give probability 0, not rounding noise), and at t = 1e-12 the
    # off-diagonal entries, about q_ij t, are right to 1e-9 relative: against the
    # first two terms of the series I + Q t + Q^2 t^2 / 2, exact to 1e-24 there.
    model = parse_model(text).substitution
    zero = model.transition_matrices(torch.zeros(1, dtype=torch.float64))[0]
    assert torch.equal(zero, torch.eye(4, dtype=torch.float64))
    t = 1e-12
    q = model.rate_matrix()
    series = torch.eye(4, dtype=torch.float64) + q * t + q @ q * t**2 / 2
    p = model.transition_matrices(torch.tensor([t], dtype=torch.float64))[0]
    off = ~torch.eye(4, dtype=torch.bool)
    torch.testing.assert_close(p[off], series[off], rtol=1e-9, atol=0)


def test_k80_transition_probabilities_have_the_closed_form():
    kappa, t = 3.0, 0.4
    p = parse_model(f"K2P{{{kappa}}}").substitution.transition_matrices(
        torch.tensor(t, dtype=torch.float64))
    beta = 1 / (kappa + 2)  # transversion rate with one substitution per unit time
    transversion = 0.25 - 0.25 * math.exp(-4 * beta * t)
    transition = 0.25 + 0.25 * math.exp(-4 * beta * t) - 0.5 * math.exp(-2 * (kappa + 1) * beta * t)
    assert p[0, 2].item() == pytest.approx(transition, rel=1e-12)  # A -> G
    assert p[0, 1].item() == pytest.approx(transversion, rel=1e-12)  # A -> C


def test_rate_matrix_is_normalised_and_reversible():
    model = parse_model("GTR{0.5,2,1.5,0.7,3}+F{0.35,0.15,0.2,0.3}").substitution
    q = model.rate_matrix()
    pi = model.frequencies
    assert -(pi * q.diagonal()).sum().item() == pytest.approx(1.0, rel=1e-12)
    torch.testing.assert_close(pi[:, None] * q, (pi[:, None] * q).T)
    torch.testing.assert_close(q.sum(-1), torch.zeros(4, dtype=q.dtype), atol=1e-15, rtol=0)


@pytest.mark.parametrize("text,base,n_categories,free", [
    ("JC", "JC", 1, ()),
    ("jc69+G", "JC", 4, ("shape",)),
    ("K80{2}", "K2P", 1, ()),
    ("HKY+I+G8", "HKY", 8, ("kappa", "pinv", "shape")),
    ("TN{2,3}+FQ+G4{0.5}", "TN", 4, ()),
    ("GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}", "GTR", 4, ()),
    ("SYM{1,2,3,4,5,6}+I{0.1}", "SYM", 1, ()),
    ("HKY{2}+FO+G4{0.5}", "HKY", 4, ("frequencies",)),
    ("JC+G1", "JC", 1, ()),  # one category: the shape changes nothing, so it is not estimated
])
def test_parse_model_reads_iqtree_strings(text, base, n_categories, free):
    model = parse_model(text)
    assert model.base == base
    assert model.n_categories == n_categories
    assert model.free == free
    again = parse_model(model.to_string())  # the written form reads back to the same model
    torch.testing.assert_close(again.substitution.rate_matrix(), model.substitution.rate_matrix(),
                               rtol=1e-5, atol=0)
    for name in ("shape", "pinv", "frequencies")[n_categories == 1:]:  # G1 is written as no G
        if name in model.parameters:
            torch.testing.assert_close(again.parameters[name], model.parameters[name],
                                       rtol=1e-5, atol=0)


@pytest.mark.parametrize("text", ["", "XYZ", "GTR+Q", "HKY{1,2}", "GTR{1,2}", "F81+F{0.5,0.5}",
                                  "F81+F{0.2,0.2,0.2,0.2}", "JC+I{1.5}", "JC+G{-1}", "K80{a}",
                                  "JC++G", "HKY{0}", "JC+G0", "F81+FO{0.1,0.2,0.3,0.4}",
                                  # not finite, or more categories than the kernel should take
                                  "HKY{inf}", "HKY{1e400}", "GTR{1,2,3,4,nan}", "JC+G4{inf}",
                                  "F81+F{nan,0.3,0.3,0.4}", "JC+G99999999999999999999{0.5}",
                                  "JC+G65",
                                  # a component twice
                                  "JC+G4{0.5}+G4{2}", "JC+I{0.1}+I{0.4}", "HKY{2}+FQ+F{0.1,0.2,0.3,0.4}"])
def test_parse_model_rejects_bad_strings(text):
    with pytest.raises(ModelError) as error:
        parse_model(text)
    assert "\n" not in str(error.value)


def test_a_value_beyond_float32_is_named_as_such():
    parse_model("HKY{1e-300}", dtype=torch.float64)
    with pytest.raises(ModelError, match="kappa .* beyond the range of float32"):
        parse_model("HKY{1e-300}", dtype=torch.float32)
    assert parse_model("HKY{1e-30}", dtype=torch.float32).parameters["kappa"].dtype == torch.float32


@pytest.mark.parametrize("text", ["JC+F", "JC+F{0.1,0.2,0.3,0.4}", "K80{2}+FO", "SYM+F"])
def test_equal_frequency_models_refuse_frequencies_and_name_their_unequal_form(text):
    # IQ-TREE silently keeps equal frequencies here; a user who wrote +F meant F81, HKY or GTR.
    with pytest.raises(ModelError, match="F81|HKY|GTR"):
        parse_model(text)
    parse_model(text.split("+")[0] + "+FQ")  # equal frequencies said outright are fine


@pytest.mark.parametrize("text", ["JC", "HKY{3}+F{0.7,0.1,0.1,0.1}", "GTR{1,2,0.5,1,3}+F{0.4,0.2,0.1,0.3}"])
def test_transition_matrices_stay_stochastic_on_very_long_branches(text):
    # Q's zero eigenvalue came out as +-1e-17, which t = 1e15..1e20 turned into rows of P
    # summing to 16 or 7e-4 (log-likelihoods above 0); the limit is every row = pi.
    model = parse_model(text)
    substitution = model.substitution
    times = torch.tensor([1e3, 1e15, 1e18, 1e20, 1e200], dtype=torch.float64)
    p = substitution.transition_matrices(times)
    pi = substitution.frequencies.double()
    torch.testing.assert_close(p, pi.expand(5, 4, 4), rtol=0, atol=1e-12)


@pytest.mark.parametrize("model,n_terms", [
    ("JC", 1), ("F81+F{0.1,0.2,0.3,0.4}", 1), ("K2P{2}", 2), ("HKY{2}+F{0.1,0.2,0.3,0.4}", 3),
    ("TN{2,3}+F{0.3,0.2,0.2,0.3}", 3), ("GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}", 3),
])
def test_compact_spectrum_gives_the_same_matrices_with_fewer_terms(model, n_terms):
    # K2P has two distinct non-zero eigenvalues (-2(kappa + 1)/(kappa + 2), -4/(kappa + 2))
    eigenvalues, products = parse_model(model).substitution.eigen_products(torch.float64)
    values, merged = compact_spectrum(eigenvalues, products)
    assert len(values) == len(merged) == n_terms
    times = torch.tensor([0.0, 1e-9, 0.01, 0.3, 2.0, 50.0, 1e4], dtype=torch.float64)
    full = from_spectrum(times[:, None] * eigenvalues, products)
    compact = from_spectrum(times[:, None] * values, merged)
    assert torch.allclose(compact, full, rtol=1e-14, atol=1e-15)
    assert (compact[0] == torch.eye(4, dtype=torch.float64).reshape(16)).all()


@pytest.mark.parametrize("exchangeabilities,frequencies", [
    ([1.0] * 6, [0.25] * 4),                                   # JC: a triple eigenvalue
    ([1.0, 2.0, 1.0, 1.0, 2.0, 1.0], [0.25] * 4),              # K2P: a double one
    ([0.5, 2.0, 1.5, 0.7, 3.0, 1.0], [0.35, 0.15, 0.2, 0.3]),  # GTR: all distinct
])
def test_transition_matrices_gradients_match_finite_differences(exchangeabilities, frequencies):
    # the derivative in Q comes from the eigenbasis (divided differences of exp), which must
    # hold where eigenvalues repeat and the eigenvectors themselves have no derivative
    from phylovi.likelihood.models import gtr

    times = torch.tensor([0.0, 1e-7, 0.03, 0.4, 2.5, 30.0], dtype=torch.float64)
    weights = torch.randn(6, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def f(rates, pi, t):
        return (gtr(rates, pi).transition_matrices(t) * weights).sum()

    inputs = (torch.tensor(exchangeabilities, dtype=torch.float64, requires_grad=True),
              torch.tensor(frequencies, dtype=torch.float64, requires_grad=True),
              times.clone().requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-6)
