"""Branch-length priors: the compound Dirichlet against an identity, and prior strings."""

from __future__ import annotations

import pytest
import torch

from phylovi.distributions import CompoundDirichlet, parse_prior
from phylovi.errors import ConfigError


def test_compound_dirichlet_with_flat_proportions_is_iid_exponential():
    # If T ~ Gamma(E, rate) and b / T ~ Dirichlet(1, ..., 1), the E branch
    # lengths are i.i.d. Exponential(rate).
    n_edges, rate = 7, 10.0
    prior = CompoundDirichlet(float(n_edges), rate, torch.ones(n_edges, dtype=torch.float64))
    lengths = torch.rand(5, n_edges, dtype=torch.float64) * 0.3
    expected = parse_prior(f"exp({rate})", n_edges).log_prob(lengths)
    torch.testing.assert_close(prior.log_prob(lengths), expected)


def test_compound_dirichlet_draws_have_the_tree_length_prior():
    torch.manual_seed(0)
    prior = parse_prior("gammadir(2,4,1,3)", 9, torch.arange(9) >= 5)
    draws = prior.rsample((20000,))
    assert draws.shape == (20000, 9) and (draws > 0).all()
    assert float(draws.sum(-1).mean()) == pytest.approx(0.5, rel=0.02)  # Gamma(2, 4) mean
    internal, external = draws[:, 5:].mean(), draws[:, :5].mean()
    assert float(internal / external) == pytest.approx(3.0, rel=0.05)


@pytest.mark.parametrize("text", ["exp(0)", "normal(1,2)", "gamma(1)", "gammadir(1,2,3)", "exp(-1)"])
def test_bad_prior_strings_raise_config_error(text):
    with pytest.raises(ConfigError):
        parse_prior(text, 5)


@pytest.mark.parametrize("text", ["exp(-1)", "gamma(2,-0.5)", "gammadir(1,0.1,-1,1)"])
def test_a_negative_parameter_is_named_as_out_of_range_not_as_an_unknown_prior(text):
    with pytest.raises(ConfigError, match="must be from 1e-06 to 1e\\+06"):
        parse_prior(text, 5)


def test_gammadir_needs_the_internal_branches_unless_c_is_one():
    # c was ignored without them: every branch got a, a silently different prior
    from phylovi.io.trees import read_tree

    topology = read_tree("((a,b),(c,d),(e,f));").topology
    with pytest.raises(ConfigError, match="internal=topology.internal_edges"):
        parse_prior("gammadir(1,0.1,1,0.1)", topology.n_edges)
    prior = parse_prior("gammadir(1,0.1,2,0.1)", topology.n_edges,
                        internal=topology.internal_edges)
    expected = [0.2 if inner else 2.0 for inner in topology.internal_edges]
    assert prior.concentration.tolist() == pytest.approx(expected)
    assert sum(topology.internal_edges) == 3  # the three edges of two-taxon sides
    assert parse_prior("gammadir(1,0.1,2,1)", topology.n_edges).concentration.tolist() == [2.0] * 9
