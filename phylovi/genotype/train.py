"""Training the genotype networks on matrices simulated on the fly.

Every step draws a matrix size, noise rates and a batch from the simulator
(:mod:`phylovi.genotype.simulate`), so one model learns over the whole range
it will be used on. Labels are exact:

- ``branching``: 1 when the true matrix A is branching, 0 when linear; half of
  each batch is linear, with the same column sizes as the branching half.
- ``noise``: 1 when the observed A' (missing read as 0) has a three-gametes
  conflict. Each batch holds as many conflicting as conflict-free noisy
  matrices, so the network must find conflicts, not merely noise (the
  paper's pairs were clean versus noisy; see ../shared/references/genotype.md).
- ``eliminate``: every entry of the true matrix A, learnt per entry from A'
  (half of each batch linear, as for ``branching``). Validation scores
  entries: accuracy, AUC and calibration are per entry for this task.

Checkpoints (``MODEL.checkpoint``) keep the model, the optimiser, the step,
the validation curve and every random state, so a resumed run continues
exactly where it stopped, and a finished one can be extended to more steps.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from phylovi.devices import resolve_device
from phylovi.genotype.nets import ARCHITECTURES
from phylovi.genotype.settings import TrainSettings
from phylovi.genotype.simulate import simulate


def training_device(name: str | None) -> torch.device:
    """The torch device called ``name`` (default: cuda if torch sees one, else cpu).

    Raises:
        ConfigError: see :func:`phylovi.devices.resolve_device`.
    """
    return resolve_device(name, default="auto")


def labelled_batch(task: str, size: int, n_cells: int, n_mutations: int, alpha: float, beta: float,
                   missing: float, rng: np.random.Generator,
                   prior: str = "coalescent") -> tuple[np.ndarray, np.ndarray]:
    """``size`` observed matrices ``[size, n, m]`` and their 0/1 labels for ``task``:
    ``[size]``, or ``[size, n, m]`` (the true matrices) for ``eliminate``; ``prior`` is the
    tree prior of :func:`~phylovi.genotype.simulate.simulate`."""
    if task in ("branching", "eliminate"):
        batch = simulate(size, n_cells, n_mutations, alpha, beta, missing, 0.5, rng, prior)
        if task == "eliminate":
            return batch.observed, batch.true.astype(np.float32)
        return batch.observed, (~batch.linear).astype(np.float32)
    # noise: balance conflicting and conflict-free noisy matrices as far as the rates allow.
    pools = {True: [], False: []}
    for _ in range(20):
        batch = simulate(size, n_cells, n_mutations, alpha, beta, missing, 0.5, rng, prior)
        for label in (True, False):
            pools[label].append(batch.observed[~batch.conflict_free == label])
        if all(sum(map(len, pools[label])) >= size // 2 for label in (True, False)):
            break
    conflicting = np.concatenate(pools[True])[: size // 2]
    clean = np.concatenate(pools[False])[: size - len(conflicting)]
    observed = np.concatenate([conflicting, clean])
    labels = np.concatenate([np.ones(len(conflicting)), np.zeros(len(clean))]).astype(np.float32)
    order = rng.permutation(len(observed))
    return observed[order], labels[order]


def validation_set(settings: TrainSettings) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A fixed validation set (its own seed) spread over the training ranges, in batches of one
    size: ``(observed, labels, rates [2])`` each."""
    rng = np.random.default_rng([settings.seed, 1])
    batches = []
    per_batch = 250
    for _ in range(max(1, settings.n_validation // per_batch)):
        n, m, alpha, beta, missing = _draw(settings, rng)
        observed, labels = labelled_batch(settings.task, per_batch, n, m, alpha, beta, missing, rng,
                                          settings.prior)
        batches.append((observed, labels, np.array([alpha, beta])))
    return batches


def _rates(rates, size: int, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(rates), dtype=torch.float32, device=device).expand(size, 2)


def _draw(settings: TrainSettings, rng: np.random.Generator):
    n = int(rng.integers(settings.cells[0], settings.cells[1] + 1))
    m = int(rng.integers(settings.mutations[0], settings.mutations[1] + 1))
    rates = [float(rng.uniform(*getattr(settings, name))) for name in ("alpha", "beta", "missing")]
    return (n, m, *rates)


def evaluate(model: torch.nn.Module, batches, device) -> dict:
    """Loss, accuracy, AUC and expected calibration error of ``model`` on labelled batches
    (per entry when the labels are matrices)."""
    model.eval()
    probabilities, labels = [], []
    with torch.no_grad():
        for observed, y, rates in batches:
            logits = model(torch.as_tensor(observed, device=device), None,
                           _rates(rates, len(observed), device))
            probabilities.append(torch.sigmoid(logits).cpu().numpy().ravel())
            labels.append(np.ravel(y))
    model.train()
    p, y = np.concatenate(probabilities), np.concatenate(labels)
    eps = 1e-7
    return {"loss": float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))),
            "accuracy": float(np.mean((p > 0.5) == (y > 0.5))),
            "auc": auc(p, y), "calibration_error": calibration_error(p, y)}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a positive outscores a negative (ties half)."""
    from scipy.stats import rankdata

    positive = labels > 0.5
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: the size-weighted mean |frequency - mean probability| over
    ``n_bins`` equal-width probability bins."""
    bins = np.minimum((probabilities * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in range(n_bins):
        chosen = bins == b
        if chosen.any():
            error += chosen.mean() * abs(labels[chosen].mean() - probabilities[chosen].mean())
    return float(error)


def train(settings: TrainSettings, output: str | os.PathLike, device: str | None = None,
          resume: bool = True, progress: bool = True) -> dict:
    """Train a model for ``settings.task`` and save it to ``output``.

    Writes ``output`` (the model), ``output + ".checkpoint"`` (kept, to resume
    or extend), and ``output + ".csv"`` / ``.png`` with the validation curve.
    Returns the final validation metrics.

    Raises:
        ConfigError: bad settings or device, or a checkpoint that is damaged or was made with
            other settings.
        OutputError: an output that cannot be written, found before training (the model and
            its curve appear together or not at all).
    """
    from phylovi.errors import OutputError
    from phylovi.io.atomic import staged

    settings.check()
    device = training_device(device)
    output = os.fspath(output)
    checkpoint_path = output + ".checkpoint"
    if os.path.isdir(checkpoint_path):
        raise OutputError("is a folder, not a checkpoint file to write", checkpoint_path)
    with staged([output, output + ".csv", output + ".png"]) as temporary:
        model, curve = _optimise(settings, checkpoint_path, device, resume, progress)
        with open(temporary[output], "wb") as handle:
            torch.save({"task": settings.task, "width": settings.width,
                        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                        "settings": asdict(settings), "curve": curve}, handle)
        _write_curve(curve, temporary[output + ".csv"], temporary[output + ".png"])
    return curve[-1]


def _optimise(settings: TrainSettings, checkpoint_path: str, device: torch.device, resume: bool,
              progress: bool) -> tuple[torch.nn.Module, list[dict]]:
    """The trained model and its validation curve, checkpointed to ``checkpoint_path``."""
    from phylovi.io.atomic import write as atomic_write

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = ARCHITECTURES[settings.task](settings.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), settings.learning_rate)
    curve, step, elapsed = [], 0, 0.0
    if resume and os.path.exists(checkpoint_path):
        step, curve, elapsed = _resume(checkpoint_path, settings, model, optimizer, rng, device)
    validation = validation_set(settings)
    started = time.perf_counter() - elapsed
    bar = _progress(settings.steps, step, progress)
    while step < settings.steps:
        n, m, alpha, beta, missing = _draw(settings, rng)
        observed, labels = labelled_batch(settings.task, settings.batch_size, n, m, alpha, beta,
                                          missing, rng, settings.prior)
        logits = model(torch.as_tensor(observed, device=device), None,
                       _rates([alpha, beta], len(observed), device))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.as_tensor(labels, device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        bar.update(1)
        if step % settings.validate_every == 0 or step == settings.steps:
            metrics = evaluate(model, validation, device)
            curve.append({"step": step, "train_loss": float(loss.detach()), **metrics,
                          "seconds": time.perf_counter() - started})
            bar.set_postfix(accuracy=f"{metrics['accuracy']:.3f}")
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "step": step, "curve": curve, "seconds": time.perf_counter() - started,
                     "settings": asdict(settings), "numpy_rng": rng.bit_generator.state,
                     "torch_rng": torch.get_rng_state()}
            with atomic_write(checkpoint_path, "wb") as handle:
                torch.save(state, handle)
    bar.close()
    return model, curve


CHECKPOINT_KEYS = ("model", "optimizer", "step", "curve", "seconds", "settings", "numpy_rng",
                   "torch_rng")


def _resume(path: str, settings: TrainSettings, model, optimizer, rng, device):
    """Load the checkpoint at ``path`` into the model, optimiser and random states; return its
    ``(step, curve, seconds)``."""
    from phylovi.errors import ConfigError

    def damaged(problem: str) -> ConfigError:
        return ConfigError(f"not a usable `phylovi genotype train` checkpoint ({problem}); "
                           "delete it to start afresh", path)

    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise damaged(type(error).__name__) from None
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        raise damaged("entries are missing")
    if not isinstance(state["settings"], dict) or (
            {**state["settings"], "steps": settings.steps} != asdict(settings)):
        raise ConfigError("the checkpoint was made with other settings; delete it, or resume "
                          "with the same settings (only --steps may grow)", path)
    if isinstance(state["step"], int) and state["step"] > settings.steps:
        raise ConfigError(f"the checkpoint has already trained {state['step']} steps, more "
                          f"than --steps {settings.steps}; delete it to train afresh", path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"]), list(state["curve"]), float(state["seconds"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise damaged(type(error).__name__) from None


def fit(model: torch.nn.Module, observed: np.ndarray, labels: np.ndarray, epochs: int,
        batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0,
        device: str | None = None) -> torch.nn.Module:
    """Fit ``model`` to a fixed labelled set by binary cross-entropy and Adam, in shuffled
    mini-batches, as the paper trained its fixed-size networks (Keras' default batch of 32)."""
    device = training_device(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)   # dropout masks
        model.to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), learning_rate)
        x = torch.as_tensor(observed, device=device)
        y = torch.as_tensor(labels, dtype=torch.float32, device=device)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator).to(device)
            for start in range(0, len(x), batch_size):
                chosen = order[start: start + batch_size]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[chosen]), y[chosen])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


def _write_curve(curve: list[dict], csv_path: str, png_path: str) -> None:
    with open(csv_path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    steps = [row["step"] for row in curve]
    left.plot(steps, [row["train_loss"] for row in curve], label="training batch")
    left.plot(steps, [row["loss"] for row in curve], label="validation")
    left.set(xlabel="step", ylabel="cross-entropy", yscale="log")
    left.legend()
    right.plot(steps, [row["accuracy"] for row in curve], label="accuracy")
    right.plot(steps, [row["auc"] for row in curve], label="AUC")
    right.set(xlabel="step", ylim=(max(0.0, min(r["accuracy"] for r in curve) - 0.05), 1.0))
    right.legend()
    figure.tight_layout()
    with open(png_path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)


def _progress(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="step", leave=False)
