"""Downstream heads trained on frozen backbone features (Mehmood et al., DESIGN §5).

A head is a small MLP on the GAP features of a backbone: ``model1`` = 64-32-C, ``model2`` =
512-256-256-128-C (ReLU between layers), ``linear`` = C. :func:`train_head` trains one with Adam
(lr 5e-5, 500 epochs, batch 64 by default — Mehmood et al.'s protocol) and records the
metrics of every epoch on every evaluation split.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sklearn
import torch
from torch import nn

from ..errors import ConfigError, LabelError, ShapeMismatchError, UnknownNameError
from ..registry import Registry
from .metrics import METRICS, TASK_TYPES

__all__ = ["HEADS", "HeadResult", "build_head", "train_head", "mlp"]

log = logging.getLogger(__name__)

#: name -> ``f(in_features, n_outputs) -> nn.Module``.
HEADS: Registry[Callable[[int, int], nn.Module]] = Registry("head")


def mlp(in_features: int, hidden: tuple[int, ...], n_outputs: int) -> nn.Sequential:
    """``Linear → ReLU`` for each hidden width, then a final ``Linear`` to ``n_outputs`` logits."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


@HEADS.register("model1")
def _model1(in_features: int, n_outputs: int) -> nn.Module:
    """Mehmood et al.'s Model 1: Dense 64 → Dense 32 → Dense C (ReLU)."""
    return mlp(in_features, (64, 32), n_outputs)


@HEADS.register("model2")
def _model2(in_features: int, n_outputs: int) -> nn.Module:
    """Mehmood et al.'s Model 2: Dense 512 → 256 → 256 → 128 → C (ReLU)."""
    return mlp(in_features, (512, 256, 256, 128), n_outputs)


@HEADS.register("linear")
def _linear(in_features: int, n_outputs: int) -> nn.Module:
    """A linear probe: one Dense layer to C logits."""
    return mlp(in_features, (), n_outputs)


def build_head(name: str, in_features: int, n_outputs: int, generator: torch.Generator | None = None) -> nn.Module:
    """Build the registered head ``name`` for ``in_features`` inputs and ``n_outputs`` logits.

    With ``generator``, every ``nn.Linear`` is re-initialised from it with PyTorch's default
    distribution (Kaiming-uniform weights, uniform bias in ±1/√fan_in), so the head is
    reproducible without touching the global RNG.

    >>> sum(p.numel() for p in build_head("model1", 1280, 3).parameters())  # 1280·64+64 + 64·32+32 + 32·3+3
    84163
    """
    if int(in_features) < 1 or int(n_outputs) < 1:
        raise ConfigError(f"a head needs in_features ≥ 1 and n_outputs ≥ 1; got {in_features} and {n_outputs}.")
    factory = HEADS.get(name)
    if generator is None:
        return factory(int(in_features), int(n_outputs))
    # nn.Linear's constructor draws its default init from the global RNG: build under a forked
    # RNG state so the caller's global stream is left exactly as it was, then draw from ours
    with torch.random.fork_rng(devices=[]):
        head = factory(int(in_features), int(n_outputs))
    if generator is not None:
        for m in head.modules():
            if isinstance(m, nn.Linear):
                # what nn.Linear.reset_parameters does, drawing from our own generator
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return head


@dataclass
class HeadResult:
    """What :func:`train_head` returns.

    Attributes:
        metrics: long table with columns ``epoch`` (1-based), ``seconds`` (cumulative training
            wall time at the end of the epoch, evaluation excluded), ``split``, ``metric``
            (``auc``, ``auprc``, ``accuracy``) and ``value`` — one row per epoch × split × metric.
        predictions: split → final-epoch probabilities, float32 (N, C) (softmax) or (N, L) (sigmoid).
        state_dict: final head weights (CPU tensors).
        feature_mean, feature_std: float32 (D,) standardisation fitted on the training features
            (zeros and ones without ``standardize``); apply ``(x - mean) / std`` before the head.
        train_loss: mean training loss of each epoch.
    """

    metrics: pd.DataFrame
    predictions: dict[str, np.ndarray]
    state_dict: dict
    feature_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    feature_std: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    train_loss: list[float] = field(default_factory=list)

    def metrics_table(self, *, strategy: str, seed: int, head: str, task: str) -> pd.DataFrame:
        """These metrics as rows of ``metrics.csv`` (columns in docs/run-directory.md order)."""
        df = self.metrics.copy()
        for col, val in (("strategy", strategy), ("seed", int(seed)), ("head", head), ("task", task)):
            df[col] = val
        return df[["strategy", "seed", "head", "task", "split", "epoch", "seconds", "metric", "value"]]

    def predictions_table(self, labels: Mapping[str, np.ndarray], *, strategy: str, seed: int, head: str,
                          task: str, indices: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
        """Final-epoch probabilities as rows of ``predictions.csv``.

        Args:
            labels: split → the labels passed to :func:`train_head` for that split.
            indices: split → row of each image in the prepared dataset (default 0..N−1).

        Columns ``strategy, seed, head, task, split, index, label, score_0 … score_{C-1}``; for a
        multi-label task ``label`` is empty and ``label_0 … label_{L-1}`` hold the 0/1/NaN targets.
        """
        frames = []
        for split, p in self.predictions.items():
            if split not in labels:
                raise ConfigError(f"no labels given for split {split!r}; pass labels for {sorted(self.predictions)}.")
            y = np.asarray(labels[split])
            if len(y) != len(p):
                raise ShapeMismatchError(f"split {split!r}: {len(p)} predictions but {len(y)} labels.")
            idx = np.arange(len(p)) if indices is None or split not in indices else np.asarray(indices[split])
            df = pd.DataFrame({"strategy": strategy, "seed": int(seed), "head": head, "task": task,
                               "split": split, "index": idx})
            if y.ndim == 2:
                df["label"] = np.nan
                for j in range(y.shape[1]):
                    df[f"label_{j}"] = y[:, j]
            else:
                df["label"] = y.astype(np.int64)
            for k in range(p.shape[1]):
                df[f"score_{k}"] = p[:, k]
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _prepare_xy(x, y, task_type: str, n_classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ShapeMismatchError(f"{what} features must be 2-D (N, D); got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ShapeMismatchError(f"{what} features contain NaN or inf; re-extract the features.")
    y = np.asarray(y)
    if len(y) != len(x):
        raise ShapeMismatchError(f"{what}: {len(x)} feature rows but {len(y)} labels.")
    if task_type == "multilabel":
        y = y.astype(np.float32)
        if y.ndim != 2 or y.shape[1] != n_classes:
            raise ShapeMismatchError(f"{what}: multi-label targets must be (N, {n_classes}); got {y.shape}.")
        bad = ~(np.isnan(y) | (y == 0) | (y == 1))
        if bad.any():
            raise LabelError(f"{what}: multi-label targets must be 0, 1 or NaN; found {np.unique(y[bad])[:5].tolist()}.")
    else:
        if y.ndim != 1:
            raise ShapeMismatchError(f"{what}: {task_type} labels must be 1-D (N,); got {y.shape}.")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            raise LabelError(f"{what}: {task_type} labels must be integers.")
        y = y.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise LabelError(
                f"{what}: labels must lie in [0, {n_classes}) for n_classes={n_classes}; found {y.min()}..{y.max()}."
            )
    return x, y


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    evals: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    head: str = "model1",
    task_type: str,
    n_classes: int,
    epochs: int = 500,
    lr: float = 5e-5,
    batch_size: int | None = 64,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    num_threads: int | None = 1,
    standardize: bool = False,
) -> HeadResult:
    """Train a downstream head on frozen features and evaluate it after every epoch.

    Args:
        x_train: float32 (N, D) training features (GAP of the backbone's last kept unit).
        y_train: int64 (N,) class indices for ``binary``/``multiclass``; float32 (N, L) 0/1/NaN
            for ``multilabel`` (NaN entries are ignored by the loss and the metrics).
        evals: split name → ``(x, y)`` in the same format, e.g. ``{"test": …, "external": …}``;
            only ever evaluated, never used for training or standardisation.
        head: a name in :data:`HEADS` (default ``model1``).
        task_type: ``binary``, ``multiclass`` or ``multilabel``.
        n_classes: C (2 for binary: two softmax outputs, as in Mehmood et al.) or L labels.
        epochs: training epochs (default 500, Mehmood et al.).
        lr: Adam learning rate (default 5e-5, Mehmood et al.).
        batch_size: mini-batch size (default 64); ``None`` = full batch.
        seed: seeds the head's initialisation and the data order through a private
            ``torch.Generator`` (global RNGs are left alone). Same seed → same result on one device.
        device: torch device string for training.
        progress: show a tqdm bar over epochs.
        standardize: z-score the features with the training split's statistics (default off: the
            raw GAP outputs, as Mehmood et al. feed them).
        num_threads: torch CPU threads while training (restored afterwards; ``None`` keeps the
            current setting). Default 1: a head's matrices are too small to gain from more, and
            on a busy machine extra threads spin and slow each step by ~30×.

    Features go to the head as they are (the raw GAP outputs, Mehmood et al.'s protocol) unless
    ``standardize``: then they are z-scored with the training split's mean and standard deviation
    (a zero standard deviation counts as 1; the evaluation splits use the training statistics). Loss: softmax + cross-entropy (binary/multiclass) or sigmoid +
    binary cross-entropy over non-NaN labels (multi-label).

    Returns:
        :class:`HeadResult` with the per-epoch metric table (``auc``, ``auprc``, ``accuracy`` for
        every split in ``evals``), the final-epoch probabilities and the final weights.

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(40, 8)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int64")
    >>> r = train_head(x, y, {"test": (x, y)}, task_type="binary", n_classes=2, epochs=3)
    >>> sorted(r.metrics.metric.unique())
    ['accuracy', 'auc', 'auprc']
    """
    if task_type not in TASK_TYPES:
        raise UnknownNameError("task type", str(task_type), TASK_TYPES)
    if task_type == "binary" and n_classes != 2:
        raise ConfigError(f"a binary task uses two softmax outputs: n_classes must be 2, got {n_classes}.")
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be ≥ 1; got {epochs}.")
    if not lr > 0:
        raise ConfigError(f"lr must be > 0; got {lr}.")
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"batch_size must be ≥ 1 or None (full batch); got {batch_size}.")
    x_train, y_train = _prepare_xy(x_train, y_train, task_type, n_classes, "training")
    if len(x_train) == 0:
        raise ConfigError("the training split is empty; a head needs at least one training image.")
    evals = {name: _prepare_xy(x, y, task_type, n_classes, f"split {name!r}") for name, (x, y) in evals.items()}
    for name, (x, _) in evals.items():
        if x.shape[1] != x_train.shape[1]:
            raise ShapeMismatchError(
                f"split {name!r} has {x.shape[1]} features but the training split has {x_train.shape[1]}; "
                "extract both with the same backbone."
            )

    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _train(x_train, y_train, evals, head=head, task_type=task_type, n_classes=n_classes,
                      epochs=int(epochs), lr=lr, batch_size=batch_size, seed=seed, device=device, progress=progress,
                      standardize=standardize)
    finally:
        torch.set_num_threads(previous_threads)


def _train(x_train, y_train, evals, *, head, task_type, n_classes, epochs, lr, batch_size, seed, device, progress,
           standardize):
    """The training loop of :func:`train_head` on validated inputs."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))  # CPU generator: init and shuffling
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
    else:  # the raw features (identity transform)
        mean = np.zeros(x_train.shape[1], np.float32)
        std = np.ones(x_train.shape[1], np.float32)

    def standardise(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((a - mean) / std).to(dev)

    xt, yt = standardise(x_train), torch.from_numpy(y_train).to(dev)
    ev = {name: (standardise(x), y) for name, (x, y) in evals.items()}

    model = build_head(head, x_train.shape[1], n_classes, generator=gen).to(dev)
    # foreach: the multi-tensor update, bitwise equal to the default per-tensor loop on the CPU
    # (tested) and ~25% cheaper for a head's few small tensors
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    multilabel = task_type == "multilabel"

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not multilabel:
            return nn.functional.cross_entropy(logits, target)
        mask = ~torch.isnan(target)
        per = nn.functional.binary_cross_entropy_with_logits(logits, torch.nan_to_num(target), reduction="none")
        return (per * mask).sum() / mask.sum().clamp_min(1)

    def predict(x: torch.Tensor) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            logits = model(x)
            p = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
        model.train()
        return p.double().cpu().numpy()

    n = len(xt)
    bs = n if batch_size is None else min(int(batch_size), n)
    rows: list[tuple[int, float, str, str, float]] = []
    losses: list[float] = []
    preds: dict[str, np.ndarray] = {}
    elapsed = 0.0
    epoch_iter = range(1, int(epochs) + 1)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc=f"head {head}", unit="ep")
    model.train()
    for epoch in epoch_iter:
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(dev)
        total = 0.0
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elapsed += time.perf_counter() - t0  # training time only; evaluation below is not counted
        losses.append(total / n)
        # the metrics validate their inputs themselves (metrics._check): scikit-learn's own
        # argument and finiteness checks, repeated for every epoch × split × metric, only add time
        with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
            for name, (x, y) in ev.items():
                p = predict(x)
                preds[name] = p
                for metric in METRICS.names():
                    rows.append((epoch, elapsed, name, metric, METRICS.get(metric)(y, p, task_type)))
    log.info("head %s: %d epochs in %.2f s, final loss %.4f", head, epochs, elapsed, losses[-1])

    metrics = pd.DataFrame(rows, columns=["epoch", "seconds", "split", "metric", "value"])
    return HeadResult(
        metrics=metrics,
        predictions={k: v.astype(np.float32) for k, v in preds.items()},
        state_dict={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        feature_mean=mean.astype(np.float32),
        feature_std=std,
        train_loss=losses,
    )
