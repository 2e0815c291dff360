"""Networks on noisy genotype matrices that accept any number of cells and mutations.

Cells are exchangeable and so are mutations, so phylovi's default model sees
a matrix only through what the exact algorithms look at: for every pair of
mutations (p, q), how many observed cells show each of the four gametes
(1,1), (1,0), (0,1), (0,0). Three gametes of a pair decide a conflict, and
disjoint versus nested pairs decide branching versus linear, so these counts
carry the signal, and with noise their sizes say how likely a pattern is an
error. The model is a DeepSets-style network over that pair table:

    pairs [B, m, m, F] --φ--> mean and max over q --ψ--> mean and max over p --head--> logit

It is invariant to the order of cells (the counts sum over them) and of
mutations (symmetric pooling), any ``n x m`` fits, missing entries simply do
not count, and matrices of different sizes share a batch by padding with a mask.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from phylovi.genotype.matrix import MISSING

N_PAIR_FEATURES = 9


def pair_features(matrices: torch.Tensor, mask: torch.Tensor | None = None,
                  dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Gamete counts of every mutation pair, and which mutations are real.

    Args:
        matrices: ``[B, n, m]`` with 0, 1 and 3 (missing); padding rows/columns may hold anything.
        mask: ``[B, n, m]`` bool, True on real entries (default: all).

    Returns:
        ``[B, m, m, 9]`` features (the four gamete fractions among the cells observed
        at both mutations, log1p of the four counts, log of the observed cells) and
        ``[B, m]`` bool, True on real mutations.
    """
    if mask is None:
        mask = torch.ones_like(matrices, dtype=torch.bool)
    observed = mask & (matrices != MISSING)
    one = (observed & (matrices == 1)).to(dtype)
    zero = (observed & (matrices == 0)).to(dtype)
    n11 = one.transpose(1, 2) @ one
    n10 = one.transpose(1, 2) @ zero
    n01 = n10.transpose(1, 2)
    n00 = zero.transpose(1, 2) @ zero
    counts = torch.stack([n11, n10, n01, n00], -1)  # [B, m, m, 4]
    total = counts.sum(-1, keepdim=True)
    fractions = counts / total.clamp(min=1)
    features = torch.cat([fractions, torch.log1p(counts), torch.log1p(total)], -1)
    return features, mask.any(1)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def _masked_mean_max(values: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Concatenated mean and max of ``values`` over ``dim``, ignoring entries where ``mask`` is False."""
    weights = mask.unsqueeze(-1).to(values.dtype)
    mean = (values * weights).sum(dim) / weights.sum(dim).clamp(min=1)
    maximum = values.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim)
    maximum = torch.where(torch.isfinite(maximum), maximum, torch.zeros_like(maximum))
    return torch.cat([mean, maximum], -1)


class PairSetNet(nn.Module):
    """Matrix-level classifier (noise or branching inference) on mutation-pair gamete counts.

    Args:
        width: hidden width of φ and ψ.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.width = width
        self.phi = _mlp([N_PAIR_FEATURES, width, width, width])
        self.psi = _mlp([2 * width, width, width])
        self.head = _mlp([2 * width, width, 1])

    def forward(self, matrices: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B]`` for matrices ``[B, n, m]`` (0, 1, 3 = missing)."""
        features, real = pair_features(matrices, mask, self.head[0].weight.dtype)
        pair_mask = real[:, :, None] & real[:, None, :]
        pair_mask = pair_mask & ~torch.eye(real.shape[1], dtype=torch.bool, device=real.device)
        per_pair = self.phi(features)                                   # [B, m, m, w]
        per_mutation = self.psi(_masked_mean_max(per_pair, pair_mask, 2))  # [B, m, w]
        return self.head(_masked_mean_max(per_mutation, real, 1)).squeeze(-1)


def pad(matrices: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch ``[B, n_max, m_max]`` and its mask from matrices of different sizes."""
    n = max(x.shape[0] for x in matrices)
    m = max(x.shape[1] for x in matrices)
    batch = torch.zeros((len(matrices), n, m), dtype=torch.int8)
    mask = torch.zeros((len(matrices), n, m), dtype=torch.bool)
    for i, x in enumerate(matrices):
        batch[i, : x.shape[0], : x.shape[1]] = torch.from_numpy(np.array(x, dtype=np.int8))
        mask[i, : x.shape[0], : x.shape[1]] = True
    return batch, mask


class GenotypeClassifier:
    """A trained matrix classifier: ``predict`` gives probabilities for a batch of matrices.

    Args:
        model: the network.
        task: ``branching`` (probability that the true phylogeny branches) or
            ``noise`` (probability that the observed matrix has a conflict).
        settings: what it was trained on (a dict of :class:`~phylovi.genotype.train.TrainSettings`).
    """

    def __init__(self, model: PairSetNet, task: str, settings: dict | None = None):
        self.model = model.eval()
        self.task = task
        self.settings = settings or {}

    @classmethod
    def load(cls, path) -> "GenotypeClassifier":
        from phylovi.errors import ConfigError

        try:
            saved = torch.load(path, map_location="cpu", weights_only=False)
            model = PairSetNet(saved["width"])
            model.load_state_dict(saved["state_dict"])
        except (OSError, KeyError, RuntimeError, EOFError) as error:
            raise ConfigError(f"{path}: not a phylovi genotype model ({error})") from None
        return cls(model, saved["task"], saved.get("settings"))

    def predict(self, matrices, batch_size: int = 1024) -> np.ndarray:
        """Probabilities ``[N]`` for ``matrices``: an array ``[N, n, m]`` or a list of 2-D arrays
        of any sizes (0, 1 and 3 for missing)."""
        if isinstance(matrices, np.ndarray) and matrices.ndim == 2:
            matrices = matrices[None]
        same_size = isinstance(matrices, np.ndarray) or len({np.shape(x) for x in matrices}) == 1
        out = []
        with torch.no_grad():
            for start in range(0, len(matrices), batch_size):
                chunk = matrices[start: start + batch_size]
                if same_size:
                    batch, mask = torch.from_numpy(np.array(chunk, dtype=np.int8)), None
                else:
                    batch, mask = pad([np.asarray(x, dtype=np.int8) for x in chunk])
                out.append(torch.sigmoid(self.model(batch, mask)).numpy())
        return np.concatenate(out) if out else np.zeros(0)


def load_model(task_or_path: str) -> GenotypeClassifier:
    """The model phylovi ships for ``task`` (``branching`` or ``noise``), or one saved at a path."""
    from pathlib import Path

    from phylovi.errors import ConfigError

    shipped = Path(__file__).parent / "models" / f"{task_or_path}.pt"
    if shipped.exists():
        return GenotypeClassifier.load(shipped)
    if Path(task_or_path).exists():
        return GenotypeClassifier.load(task_or_path)
    raise ConfigError(f"no shipped model for task {task_or_path!r} and no such file; shipped: "
                      + ", ".join(sorted(p.stem for p in (Path(__file__).parent / "models").glob("*.pt"))))
