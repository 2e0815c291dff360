"""The default networks' symmetries: any size, cell and mutation order, padding, missing entries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phylovi.errors import ConfigError
from phylovi.genotype.nets import (
    EntrySetNet,
    GenotypeClassifier,
    GenotypeModel,
    PairSetNet,
    pad,
    pair_features,
)
from phylovi.genotype.simulate import simulate


def _model():
    torch.manual_seed(0)
    return PairSetNet(width=16).double()


def test_gamete_counts_equal_direct_counting():
    matrices = simulate(20, 7, 5, alpha=0.05, beta=0.2, missing=0.2, seed=1).observed
    features, _ = pair_features(torch.as_tensor(matrices))
    counts = torch.expm1(features[..., 4:8]).round().numpy()
    for b in range(len(matrices)):
        x = matrices[b]
        for p in range(5):
            for q in range(5):
                both = (x[:, p] != 3) & (x[:, q] != 3)
                expected = [np.sum(both & (x[:, p] == i) & (x[:, q] == j))
                            for i, j in ((1, 1), (1, 0), (0, 1), (0, 0))]
                assert counts[b, p, q].tolist() == expected


def test_invariant_to_cell_and_mutation_order():
    model = _model()
    x = torch.as_tensor(simulate(8, 9, 6, alpha=0.01, beta=0.1, missing=0.1, seed=2).observed)
    rows, columns = torch.randperm(9), torch.randperm(6)
    with torch.no_grad():
        assert torch.allclose(model(x), model(x[:, rows][:, :, columns]), atol=1e-10)


def test_padding_does_not_change_the_answer():
    model = _model()
    small = simulate(3, 5, 4, beta=0.1, seed=3).observed
    large = simulate(3, 12, 9, beta=0.1, seed=4).observed
    batch, mask = pad(list(small) + list(large))
    with torch.no_grad():
        together = model(batch, mask)
        alone = torch.cat([model(torch.as_tensor(small)), model(torch.as_tensor(large))])
    assert torch.allclose(together, alone, atol=1e-10)


def test_entry_network_permutes_with_cells_and_mutations():
    torch.manual_seed(0)
    model = EntrySetNet(width=16).double()
    x = torch.as_tensor(simulate(8, 9, 6, alpha=0.01, beta=0.1, missing=0.1, seed=2).observed)
    rows, columns = torch.randperm(9), torch.randperm(6)
    with torch.no_grad():
        rates = torch.tensor([[0.01, 0.1]]).expand(8, 2)
        permuted_after = model(x, None, rates)[:, rows][:, :, columns]
        permuted_before = model(x[:, rows][:, :, columns], None, rates)
    assert permuted_before.shape == (8, 9, 6)
    assert torch.allclose(permuted_after, permuted_before, atol=1e-10)


def test_entry_network_ignores_padding():
    torch.manual_seed(0)
    model = EntrySetNet(width=16).double()
    small = simulate(2, 5, 4, beta=0.1, missing=0.1, seed=3).observed
    large = simulate(2, 12, 9, beta=0.1, seed=4).observed
    batch, mask = pad(list(small) + list(large))
    rates = torch.tensor([[0.01, 0.1], [0.02, 0.2], [0.0, 0.3], [0.001, 0.05]])
    with torch.no_grad():
        together = model(batch, mask, rates)
        assert torch.allclose(together[:2, :5, :4], model(torch.as_tensor(small), None, rates[:2]),
                              atol=1e-10)
        assert torch.allclose(together[2:], model(torch.as_tensor(large), None, rates[2:]),
                              atol=1e-10)


def test_entry_logits_start_from_the_observation_likelihood_ratio():
    # With the learnt part silenced, an entry's logit is log P(A'|1) - log P(A'|0) under the rates.
    model = EntrySetNet(width=8).double()
    torch.nn.init.zeros_(model.head[-1].weight)
    torch.nn.init.zeros_(model.head[-1].bias)
    x = torch.tensor([[[1, 0, 3], [0, 1, 1]]], dtype=torch.int8)
    alpha, beta = 0.01, 0.2
    with torch.no_grad():
        logits = model(x, None, torch.tensor([[alpha, beta]]))[0]
    one, zero = np.log((1 - alpha) / alpha), np.log(beta / (1 - beta))
    expected = torch.tensor([[one, zero, 0.0], [zero, one, one]], dtype=torch.float64)
    assert torch.allclose(logits, expected, atol=1e-12)


def test_a_matrix_too_small_to_branch_or_conflict_gets_exactly_zero():
    torch.manual_seed(0)
    shapes = [(1, 1), (1, 2), (2, 1), (3, 1), (2, 5), (2, 2), (3, 2), (6, 5)]
    matrices = [np.ones(shape, dtype=np.int8) for shape in shapes]
    matrices[-1][0] = 0
    branching = GenotypeClassifier(PairSetNet(width=8), "branching").predict(matrices)
    noise = GenotypeClassifier(PairSetNet(width=8), "noise").predict(matrices)
    # Branching needs 2 cells and 2 mutations; a conflict 3 cells and 2 mutations.
    assert branching[:4].tolist() == [0, 0, 0, 0] and np.all(branching[5:] > 0)
    assert noise[:6].tolist() == [0] * 6 and np.all(noise[6:] > 0)


def test_only_the_whole_shape_makes_a_branching_call_exactly_zero():
    # The label is the true tree's: a 5 x 5 matrix with one observed 1 may branch under
    # dropout, so the network answers; padding with rows and columns without a 1 leaves
    # that answer unchanged. Only a matrix of one cell or one mutation gets exactly 0.
    torch.manual_seed(0)
    single = np.zeros((5, 5), dtype=np.int8)
    single[0, 0] = 1
    padded = np.zeros((7, 6), dtype=np.int8)
    padded[3, 2] = 1
    model = GenotypeClassifier(PairSetNet(width=8), "branching")
    p = model.predict([single, padded, np.zeros((5, 5), dtype=np.int8),
                       np.full((2, 2), 3, dtype=np.int8), np.ones((1, 5), dtype=np.int8)])
    assert np.all(p[:4] > 0) and p[0] == pytest.approx(p[1], abs=1e-6) and p[4] == 0


def test_a_file_holding_a_bare_tensor_is_not_a_model(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ConfigError, match="tensor.pt: not a phylovi genotype model"):
        GenotypeModel.load(path)
