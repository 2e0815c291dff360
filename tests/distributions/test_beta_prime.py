"""BetaPrime and Gamma: densities against scipy, rsample gradients against inverse-CDF differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
from torch.distributions import Gamma, Independent

from phylovi.distributions import BetaPrime

GRID = [0.3, 1.0, 2.5, 8.0]


@pytest.mark.parametrize("a,b", list(itertools.product(GRID, GRID)))
def test_log_prob_moments_and_entropy_match_scipy(a, b):
    d = BetaPrime(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
    x = np.array([1e-3, 0.2, 1.0, 3.7, 40.0])
    reference = scipy.stats.betaprime(a, b)
    np.testing.assert_allclose(d.log_prob(torch.tensor(x)).numpy(), reference.logpdf(x), rtol=1e-12)
    # X = B / (1 - B) for B ~ Beta(a, b): H(X) = H(B) - 2 E[log(1 - B)] (scipy's
    # Beta entropy is closed-form; its Beta-prime entropy integrates numerically).
    expected = scipy.stats.beta(a, b).entropy() - 2 * (scipy.special.digamma(b)
                                                      - scipy.special.digamma(a + b))
    np.testing.assert_allclose(float(d.entropy()), expected, rtol=1e-10, atol=1e-12)
    if b > 1:
        assert float(d.mean) == pytest.approx(reference.mean(), rel=1e-12)
    else:
        assert float(d.mean) == np.inf
    if b > 2:
        assert float(d.variance) == pytest.approx(reference.var(), rel=1e-12)


def test_samples_follow_the_distribution():
    torch.manual_seed(0)
    d = BetaPrime(torch.tensor(2.5, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64))
    draws = d.rsample((20000,)).numpy()
    assert scipy.stats.kstest(draws, scipy.stats.betaprime(2.5, 3.0).cdf).pvalue > 1e-3


def test_validation_and_expand():
    with pytest.raises(ValueError):
        BetaPrime(torch.tensor(-1.0), torch.tensor(1.0), validate_args=True)
    d = BetaPrime(torch.tensor([1.0, 2.0]), torch.tensor(3.0), validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([-0.5, 1.0]))
    expanded = d.expand((4, 2))
    assert expanded.rsample().shape == (4, 2) and expanded.log_prob(torch.ones(4, 2)).shape == (4, 2)


def _gamma_inverse_cdf_gradient(x: np.ndarray, shape: float) -> np.ndarray:
    """d x / d shape at fixed u = F(x; shape), for Gamma(shape, 1): -(dF/dshape) / f(x).

    dF/dshape is a central difference of scipy's regularised incomplete gamma.
    """
    h = 1e-6 * max(1.0, shape)
    d_cdf = (scipy.special.gammainc(shape + h, x) - scipy.special.gammainc(shape - h, x)) / (2 * h)
    return -d_cdf / scipy.stats.gamma.pdf(x, shape)


def _check_relative_error(actual: np.ndarray, expected: np.ndarray) -> None:
    # torch computes the implicit Gamma gradient with series, asymptotic and
    # rational approximations; against the exact derivative the typical draw
    # is within 1e-4, but single draws reach 6e-4 where x is near the shape.
    error = np.abs(actual - expected) / np.abs(expected)
    assert np.median(error) < 2e-4
    assert error.max() < 1e-3


@pytest.mark.parametrize("shape,rate", list(itertools.product(GRID, [0.5, 4.0])))
def test_gamma_rsample_gradient_is_the_inverse_cdf_derivative(shape, rate):
    torch.manual_seed(1)
    alpha = torch.full((300,), shape, dtype=torch.float64, requires_grad=True)
    beta = torch.full((300,), rate, dtype=torch.float64, requires_grad=True)
    x = Gamma(alpha, beta).rsample()
    d_alpha, d_beta = torch.autograd.grad(x.sum(), (alpha, beta))
    standard = x.detach().numpy() * rate
    keep = standard > 1e-250
    expected = _gamma_inverse_cdf_gradient(standard[keep], shape) / rate
    _check_relative_error(d_alpha.numpy()[keep], expected)
    np.testing.assert_allclose(d_beta.numpy(), -x.detach().numpy() / rate, rtol=1e-12)


@pytest.mark.parametrize("a,b", list(itertools.product(GRID, GRID)))
def test_beta_prime_rsample_gradient_is_the_inverse_cdf_derivative(a, b):
    # X = G1 / G0 with G1 ~ Gamma(a), G0 ~ Gamma(b) at fixed uniforms u1, u0:
    # dX/da = (dG1/da) / G0 and dX/db = -G1 (dG0/db) / G0^2.
    torch.manual_seed(2)
    ca = torch.full((300,), a, dtype=torch.float64, requires_grad=True)
    cb = torch.full((300,), b, dtype=torch.float64, requires_grad=True)
    state = torch.get_rng_state()
    x = BetaPrime(ca, cb).rsample()
    torch.set_rng_state(state)  # the same two Gamma draws, to read off G1 and G0
    ones = torch.ones(300, dtype=torch.float64)
    g1 = Gamma(ca.detach(), ones).sample().numpy()
    g0 = Gamma(cb.detach(), ones).sample().numpy()
    np.testing.assert_allclose(x.detach().numpy(), g1 / g0, rtol=1e-12)
    d_a, d_b = (g.numpy() for g in torch.autograd.grad(x.sum(), (ca, cb)))
    keep = (g1 > 1e-250) & (g0 > 1e-250)
    g1, g0 = g1[keep], g0[keep]
    _check_relative_error(d_a[keep], _gamma_inverse_cdf_gradient(g1, a) / g0)
    _check_relative_error(d_b[keep], -g1 * _gamma_inverse_cdf_gradient(g0, b) / g0**2)


N_BRANCHES, N_PARTICLES, N_ESTIMATES = 20, 4, 2000


def _gradient_estimates(make, values, pathwise: bool) -> np.ndarray:
    """Estimates of d/dθ_1 E_q[sum_i (b_i - 1)^2] for mean-field q over 20 branches.

    Each estimate uses 4 draws, as a VI step does: pathwise averages the
    rsample gradients; the score function uses the leave-one-out baseline.
    Rows are estimates, columns the first branch's two parameters.
    """
    parameters = tuple(torch.full((N_BRANCHES,), v, dtype=torch.float64, requires_grad=True)
                       for v in values)
    rows = []
    for _ in range(N_ESTIMATES):
        q = Independent(make(*parameters), 1)
        if pathwise:
            objective = ((q.rsample((N_PARTICLES,)) - 1) ** 2).sum(-1).mean()
        else:
            draws = q.sample((N_PARTICLES,))
            f = ((draws - 1) ** 2).sum(-1)
            baseline = (f.sum() - f) / (N_PARTICLES - 1)
            objective = ((f - baseline) * q.log_prob(draws)).mean()
        gradients = torch.autograd.grad(objective, parameters)
        rows.append([g[0].item() for g in gradients])
    return np.array(rows)


@pytest.mark.parametrize("make,values", [
    (lambda a, b: Gamma(a, b), (3.0, 2.0)),
    (lambda a, b: BetaPrime(a, b), (3.0, 10.0)),
], ids=["gamma", "betaprime"])
def test_pathwise_gradients_have_far_lower_variance_than_score_function(make, values):
    torch.manual_seed(3)
    pathwise = _gradient_estimates(make, values, pathwise=True)
    score = _gradient_estimates(make, values, pathwise=False)
    # Both are unbiased: their means agree within a few standard errors.
    se = np.sqrt(pathwise.var(0) / N_ESTIMATES + score.var(0) / N_ESTIMATES)
    assert (np.abs(pathwise.mean(0) - score.mean(0)) < 4 * se).all()
    assert (score.var(0) / pathwise.var(0) >= 10).all()
