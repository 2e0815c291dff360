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

Noise elimination needs an answer per entry, so :class:`EntrySetNet` is
equivariant instead: each entry (i, p) hears, for every other mutation q, the
learnt message about the pair (p, q) weighted by what cell i shows at q, then
a few exchangeable layers mix in the means over its row and its column.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from phylovi.genotype.correct import DEFAULT_ALPHA, DEFAULT_BETA
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

    def forward(self, matrices: torch.Tensor, mask: torch.Tensor | None = None,
                rates: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B]`` for matrices ``[B, n, m]`` (0, 1, 3 = missing); ``rates`` is not used
        (the classifiers learn the noise level from the matrix), only accepted like
        :class:`EntrySetNet`'s."""
        features, real = pair_features(matrices, mask, self.head[0].weight.dtype)
        pair_mask = real[:, :, None] & real[:, None, :]
        pair_mask = pair_mask & ~torch.eye(real.shape[1], dtype=torch.bool, device=real.device)
        per_pair = self.phi(features)                                   # [B, m, m, w]
        per_mutation = self.psi(_masked_mean_max(per_pair, pair_mask, 2))  # [B, m, w]
        return self.head(_masked_mean_max(per_mutation, real, 1)).squeeze(-1)


class EntrySetNet(nn.Module):
    """Per-entry logits that the true value is 1 (noise elimination), for any ``n x m``.

    Equivariant to permutations of cells and of mutations; missing entries are an input
    value of their own, and padding (``mask`` False) is ignored. It is told the error
    rates: each entry's log-likelihood ratio log P(A'_ij | 1) / P(A'_ij | 0) under them
    is an input and the base of its logit, to which the network adds what the rest of the
    matrix says (a prior from the context), so the rates weigh what is observed as in Bayes'
    rule, and a matrix with little noise is left nearly as it is.

    Args:
        width: hidden width.
        n_layers: exchangeable row/column mixing layers after the pair messages.
    """

    def __init__(self, width: int = 32, n_layers: int = 2):
        super().__init__()
        self.width = width
        self.phi = _mlp([N_PAIR_FEATURES, width, width])
        self.message = nn.Linear(width, 2 * width)     # one message per value (0, 1) at q
        self.column = _mlp([2 * width, width])
        self.embed = _mlp([6 + 3 * width, width, width])
        self.mix = nn.ModuleList(_mlp([3 * width, width, width]) for _ in range(n_layers))
        self.head = _mlp([width, width, 1])

    def forward(self, matrices: torch.Tensor, mask: torch.Tensor | None = None,
                rates: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, n, m]`` for matrices ``[B, n, m]`` (0, 1, 3 = missing) observed with
        error rates ``rates`` ``[B, 2]`` (false-positive alpha, false-negative beta)."""
        dtype = self.head[0].weight.dtype
        if rates is None:
            raise ValueError("noise elimination needs the error rates [B, 2] (alpha, beta)")
        if mask is None:
            mask = torch.ones_like(matrices, dtype=torch.bool)
        features, real = pair_features(matrices, mask, dtype)
        pair_mask = real[:, :, None] & real[:, None, :]
        pair_mask = pair_mask & ~torch.eye(real.shape[1], dtype=torch.bool, device=real.device)
        per_pair = self.phi(features) * pair_mask.unsqueeze(-1).to(dtype)       # [B, m, m, w]
        column = self.column(_masked_mean_max(per_pair, pair_mask, 2))         # [B, m, w]
        zero_message, one_message = self.message(per_pair).chunk(2, -1)
        observed = mask & (matrices != MISSING)
        is_one = (observed & (matrices == 1)).to(dtype)
        is_zero = (observed & (matrices == 0)).to(dtype)
        n_others = (real.sum(1) - 1).clamp(min=1).to(dtype)[:, None, None, None]
        messages = (torch.einsum("bnq,bpqw->bnpw", is_one, one_message)
                    + torch.einsum("bnq,bpqw->bnpw", is_zero, zero_message)) / n_others
        log_rates = torch.as_tensor(rates, dtype=dtype, device=matrices.device).clamp(1e-6, 0.5).log()
        log_alpha, log_beta = log_rates[:, 0, None, None], log_rates[:, 1, None, None]
        # log P(A' | 1) - log P(A' | 0): an observed 1 speaks for 1, an observed 0 for 0.
        evidence = (is_one * (torch.log1p(-log_alpha.exp()) - log_alpha)
                    + is_zero * (log_beta - torch.log1p(-log_beta.exp())))
        value = torch.stack([is_zero, is_one, (mask & ~observed).to(dtype), evidence / 10,
                             (log_alpha / 10).expand_as(evidence),
                             (log_beta / 10).expand_as(evidence)], -1)
        row = _masked_mean(messages, mask, 2).unsqueeze(2).expand_as(messages)
        hidden = self.embed(torch.cat([value, messages, row,
                                       column.unsqueeze(1).expand_as(messages)], -1))
        for layer in self.mix:
            rows = _masked_mean(hidden, mask, 2).unsqueeze(2).expand_as(hidden)
            columns = _masked_mean(hidden, mask, 1).unsqueeze(1).expand_as(hidden)
            hidden = hidden + layer(torch.cat([hidden, rows, columns], -1))
        return evidence + self.head(hidden).squeeze(-1)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(values.dtype)
    return (values * weights).sum(dim) / weights.sum(dim).clamp(min=1)


class PaperBranchingMLP(nn.Module):
    """Sadeqi Azer et al.'s branching classifier for one fixed ``n x m``: the flattened matrix,
    Dense(100, tanh), Dropout(0.9) (Keras' rate: 90% dropped), then the class logit (their
    two-way softmax is a sigmoid of one logit). Missing entries count as 0."""

    def __init__(self, n_cells: int, n_mutations: int):
        super().__init__()
        self.shape = (n_cells, n_mutations)
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(n_cells * n_mutations, 100), nn.Tanh(),
                                    nn.Dropout(0.9), nn.Linear(100, 1))

    def forward(self, matrices: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.layers((matrices == 1).to(self.layers[1].weight.dtype)).squeeze(-1)


class PaperNoiseMLP(nn.Module):
    """Sadeqi Azer et al.'s three-gametes classifier for one fixed ``n x m``: columns sorted
    as binary numbers (largest first, as their data were), flattened, then
    [Dense(100, sigmoid), Dropout(0.2)] x 2 and the logit. Missing entries count as 0."""

    def __init__(self, n_cells: int, n_mutations: int):
        super().__init__()
        self.shape = (n_cells, n_mutations)
        size = n_cells * n_mutations
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(size, 100), nn.Sigmoid(), nn.Dropout(0.2),
                                    nn.Linear(100, 100), nn.Sigmoid(), nn.Dropout(0.2),
                                    nn.Linear(100, 1))

    def forward(self, matrices: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = (matrices == 1).to(self.layers[1].weight.dtype)
        # Column keys as binary numbers, first cell most significant (exact for n <= 50 in float64).
        weights = 2.0 ** -torch.arange(x.shape[1], dtype=torch.float64, device=x.device)
        keys = (x.to(torch.float64) * weights[:, None]).sum(1)
        order = keys.argsort(dim=1, descending=True, stable=True)
        x = x.gather(2, order[:, None, :].expand_as(x))
        return self.layers(x).squeeze(-1)


ARCHITECTURES = {"branching": PairSetNet, "noise": PairSetNet, "eliminate": EntrySetNet}


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


def _batches(matrices, batch_size: int):
    """``(batch [B, n, m], mask or None, sizes)`` chunks of an array ``[N, n, m]`` or a list of
    2-D matrices of any sizes (padded, with a mask, when the sizes differ)."""
    if isinstance(matrices, np.ndarray) and matrices.ndim == 2:
        matrices = matrices[None]
    same_size = isinstance(matrices, np.ndarray) or len({np.shape(x) for x in matrices}) == 1
    for start in range(0, len(matrices), batch_size):
        chunk = matrices[start: start + batch_size]
        sizes = [np.shape(x) for x in chunk]
        if same_size:
            yield torch.from_numpy(np.array(chunk, dtype=np.int8)), None, sizes
        else:
            yield (*pad([np.asarray(x, dtype=np.int8) for x in chunk]), sizes)


class GenotypeModel:
    """A trained genotype network with what it was trained on.

    Args:
        model: the network.
        task: ``branching``, ``noise`` or ``eliminate``.
        settings: what it was trained on (a dict of :class:`~phylovi.genotype.train.TrainSettings`).
    """

    def __init__(self, model: nn.Module, task: str, settings: dict | None = None):
        self.model = model.eval()
        self.task = task
        self.settings = settings or {}

    @staticmethod
    def load(path) -> "GenotypeModel":
        """The model saved at ``path`` by :func:`phylovi.genotype.train.train`."""
        from phylovi.errors import ConfigError

        try:
            # weights_only: a model file holds tensors and plain settings, never code to run.
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict):   # e.g. a bare tensor saved with torch.save
                raise TypeError(f"the file holds a {type(saved).__name__}, not a model")
            model = ARCHITECTURES[saved["task"]](saved["width"])
            model.load_state_dict(saved["state_dict"])
        except (OSError, KeyError, IndexError, ValueError, RuntimeError, EOFError, TypeError,
                pickle.UnpicklingError) as error:
            raise ConfigError(f"{path}: not a phylovi genotype model from `phylovi genotype "
                              f"train`, or one of another phylovi version ({type(error).__name__})"
                              ) from None
        kind = GenotypeCorrector if saved["task"] == "eliminate" else GenotypeClassifier
        return kind(model, saved["task"], saved.get("settings"))


class GenotypeClassifier(GenotypeModel):
    """A matrix classifier: the probability that the true phylogeny branches (``branching``)
    or that the observed matrix has a conflict (``noise``).

    For ``branching``, cells and mutations without an observed 1 are masked out:
    they fit a linear and a branching tree equally well (an all-zero row or
    column never conflicts), so they carry no evidence about the shape, and
    real data can hold many of them (normal cells) where simulations hold few.

    A matrix too small to branch or to conflict (:meth:`too_small`, on its whole shape)
    gets the exact answer, 0, rather than the network's. For ``branching`` that is the
    shape, not its cells and mutations with an observed 1: the label is the true tree's,
    and a true tree of 2 cells and 2 mutations can branch with every 1 of one of them
    dropped out; the masked network, which sees no evidence there, answers instead.
    """

    def predict(self, matrices, batch_size: int = 1024) -> np.ndarray:
        """Probabilities ``[N]`` for ``matrices``: an array ``[N, n, m]`` or a list of 2-D arrays
        of any sizes (0, 1 and 3 for missing)."""
        out = []
        with torch.no_grad():
            for batch, mask, sizes in _batches(matrices, batch_size):
                if self.task == "branching":
                    mask = _informative(batch, mask)
                p = torch.sigmoid(self.model(batch, mask)).numpy()
                p[np.array([self.too_small(size) for size in sizes])] = 0.0
                out.append(p)
        return np.concatenate(out) if out else np.zeros(0)

    def too_small(self, shape: tuple[int, int]) -> bool:
        """Whether a matrix of ``shape`` (cells, mutations) cannot branch or conflict, whatever
        its entries: branching needs two disjoint non-empty columns (2 cells, 2 mutations), a
        conflict three cells showing 11, 10 and 01 at two mutations (3 cells, 2 mutations)."""
        n_cells, n_mutations = shape
        return n_mutations < 2 or n_cells < (2 if self.task == "branching" else 3)


def _informative(batch: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``mask`` ``[B, n, m]`` narrowed to the rows and columns holding an observed 1 (a matrix
    without any 1 keeps its whole mask): padding a matrix with rows and columns without a 1
    does not change what the network sees."""
    ones = batch == 1
    if mask is not None:
        ones &= mask
    rows, columns = ones.any(2), ones.any(1)
    informative = rows[:, :, None] & columns[:, None, :]
    empty = ~ones.flatten(1).any(1)
    if empty.any():
        informative[empty] = True if mask is None else mask[empty]
    return informative


@dataclass
class EliminatedNoise:
    """One matrix after noise elimination.

    Attributes:
        matrix: ``[n, m]`` int8, conflict-free.
        probabilities: ``[n, m]``, the network's probability that each true entry is 1.
        repaired: True when the rounded probabilities still had conflicts and the matrix
            was decoded onto a tree (:func:`phylovi.genotype.correct.tree_decode`) instead.
    """

    matrix: np.ndarray
    probabilities: np.ndarray
    repaired: bool


class GenotypeCorrector(GenotypeModel):
    """Noise elimination: the true matrix behind a noisy one, always conflict-free."""

    def probabilities(self, matrices, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                      batch_size: int = 256) -> list[np.ndarray]:
        """Per-entry probabilities that the true value is 1, one ``[n, m]`` array per matrix,
        for matrices observed with false-positive rate ``alpha`` and false-negative rate ``beta``."""
        out = []
        with torch.no_grad():
            for batch, mask, sizes in _batches(matrices, batch_size):
                rates = torch.tensor([[alpha, beta]]).expand(len(batch), 2)
                p = torch.sigmoid(self.model(batch, mask, rates)).numpy()
                out.extend(p[k, : n, : m] for k, (n, m) in enumerate(sizes))
        return out

    def eliminate(self, matrices, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                  batch_size: int = 256) -> list[EliminatedNoise]:
        """The corrected matrix of each of ``matrices`` (observed with error rates ``alpha`` and
        ``beta``), with how it was obtained."""
        from phylovi.genotype.correct import tree_decode
        from phylovi.genotype.perfect_phylogeny import is_perfect_phylogeny

        results = []
        for p in self.probabilities(matrices, alpha, beta, batch_size):
            rounded = (p > 0.5).astype(np.int8)
            if is_perfect_phylogeny(rounded):
                results.append(EliminatedNoise(rounded, p, repaired=False))
            else:
                clipped = np.clip(p, 1e-6, 1 - 1e-6)
                decoded = tree_decode(np.log(clipped), np.log1p(-clipped)).matrix
                results.append(EliminatedNoise(decoded, p, repaired=True))
        return results

    def predict(self, matrices, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA,
                batch_size: int = 256):
        """Corrected conflict-free 0/1 matrices: an array ``[N, n, m]`` for an array input,
        else a list. Give the data's error rates where known (e.g. SCITE's estimates)."""
        corrected = [r.matrix for r in self.eliminate(matrices, alpha, beta, batch_size)]
        if isinstance(matrices, np.ndarray):
            return np.stack(corrected) if matrices.ndim == 3 else corrected[0]
        return corrected


def load_model(task_or_path: str) -> GenotypeModel:
    """The model phylovi ships for ``task`` (``branching``, ``noise`` or ``eliminate``), or one
    saved at a path."""
    from pathlib import Path

    from phylovi.errors import ConfigError, require_path

    require_path(task_or_path, "the model (a task's name or a file)")
    shipped = Path(__file__).parent / "models" / f"{task_or_path}.pt"
    if shipped.exists():
        return GenotypeModel.load(shipped)
    if Path(task_or_path).exists():
        return GenotypeModel.load(task_or_path)
    shipped = ", ".join(sorted(p.stem for p in (Path(__file__).parent / "models").glob("*.pt")))
    if Path(task_or_path).suffix or "/" in task_or_path:  # meant as a file
        raise ConfigError(f"{task_or_path}: no such model file (or one of the shipped models: "
                          f"{shipped})")
    raise ConfigError(f"no shipped model for task {task_or_path!r}; shipped: {shipped}")
