"""Validation inside a phase: predictions in eval mode, scores, and the monitor that keeps the best
epoch's weights and drives a plateau schedule and early stopping."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ConfigError
from ..models.model import UnitModel
from ..strategies.catalogue import Phase
from .runtime import Runtime

__all__ = ["MONITOR_METRIC", "Monitor", "predict", "probabilities", "scores", "changing_state"]

#: a phase's ``monitor`` → the name of the validation metric in the curves (``metrics.csv``)
MONITOR_METRIC = {"auroc": "auc", "auprc": "auprc", "loss": "loss"}


def changing_state(model: UnitModel) -> dict[str, torch.Tensor]:
    """What a phase can change: trainable parameters and the buffers of modules in training mode
    (the running statistics of BatchNorms that train).

    Frozen parameters and the buffers of modules in eval mode (frozen BatchNorm statistics never
    move) are left out, so a 1000-epoch head-only phase writes kilobytes per epoch, not the
    whole backbone, and pickles a handful of tensors, not every BN buffer; they are restored
    from the phase's starting weights.
    """
    out: dict[str, torch.Tensor] = {}
    for mname, m in model.named_modules():  # one walk, not a whole state_dict() per checkpoint
        pre = f"{mname}." if mname else ""
        for n, p in m.named_parameters(recurse=False):
            if p.requires_grad:
                out[pre + n] = p.detach().cpu().clone()
        if m.training:
            for n, b in m.named_buffers(recurse=False):
                if n not in m._non_persistent_buffers_set:  # as in state_dict()
                    out[pre + n] = b.detach().cpu().clone()
    return out


class Monitor:
    """The validation side of a phase: score, plateau schedule, early stopping, best weights."""

    def __init__(self, phase: Phase, optimizer: torch.optim.Optimizer):
        self.phase = phase
        self.name = phase.monitor
        self.metric = MONITOR_METRIC.get(self.name or "", "")
        self.maximise = self.name in ("auroc", "auprc")
        self.best_score: float | None = None
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.scheduler = None
        if phase.plateau is not None:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max" if self.maximise else "min", factor=phase.plateau.factor,
                patience=phase.plateau.patience)

    def update(self, epoch: int, score: float, model: UnitModel, optimizer) -> str:
        """Record ``score`` for ``epoch``; return a reason to stop ('' to go on)."""
        if not math.isfinite(score):
            raise ConfigError(f"phase {self.phase.name!r}: validation {self.metric} is {score} at epoch {epoch}; "
                              "the validation split needs both classes (or lower the learning rate)")
        better = self.best_score is None or (score > self.best_score if self.maximise else score < self.best_score)
        if better:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_state = changing_state(model)
        else:
            self.bad_epochs += 1
        if self.scheduler is not None:
            self.scheduler.step(score)
            g = optimizer.param_groups[0]
            base_lr = g["lr"] / g.get("lr_mult", 1.0)
            if base_lr < self.phase.plateau.min_lr:
                return f"learning rate {base_lr:.3g} fell below min_lr {self.phase.plateau.min_lr:g}"
        if self.phase.early_stop is not None and self.bad_epochs >= self.phase.early_stop:
            return f"no improvement of validation {self.metric} for {self.bad_epochs} epochs"
        return ""

    def state(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "bad_epochs": self.bad_epochs,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def load(self, state: dict) -> None:
        self.best_score, self.best_epoch = state["best_score"], int(state["best_epoch"])
        self.best_state, self.bad_epochs = state["best_state"], int(state["bad_epochs"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])


def probabilities(logits: torch.Tensor, task_type: str) -> np.ndarray:
    """(N, C) probabilities in the layout of :mod:`medapt.evaluate.metrics` (binary: [1-p, p])."""
    logits = logits.float()
    if task_type == "multiclass":
        return torch.softmax(logits, dim=1).double().cpu().numpy()
    p = torch.sigmoid(logits).double().cpu().numpy()
    if task_type == "binary":
        p = p.reshape(-1, 1)
        return np.concatenate([1 - p, p], axis=1)
    return p


@torch.no_grad()
def predict(model: UnitModel, x: np.ndarray, rows: np.ndarray, *, task_type: str, runtime: Runtime,
            batch_size: int = 64, start: int = 0, resize: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and probabilities of ``model`` (from cut point ``start``) on ``x[rows]``, in eval mode;
    ``resize``: images resized to ``resize``² first (a phase's ``resolution`` crop size).

    Every module's train/eval flag is restored afterwards, so a phase can score validation
    between its epochs.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    logits = []
    try:
        for s in range(0, len(rows), batch_size):
            xb = runtime.to_device(torch.as_tensor(np.asarray(x[rows[s : s + batch_size]], dtype=np.float32)))
            if resize is not None:
                from .augment import resize_batch

                xb = resize_batch(xb, resize)
            with runtime.autocast():
                logits.append(model.forward_from(xb, start).float().cpu())
    finally:
        for m, t in modes:
            m.training = t
    out = torch.cat(logits) if logits else torch.zeros(0, model.head.n_outputs)
    return out.numpy(), probabilities(out, task_type)


def scores(logits: np.ndarray, probs: np.ndarray, y: np.ndarray, task_type: str, loss_fn) -> dict[str, float]:
    from ..evaluate.metrics import METRICS  # pure scikit-learn functions; the heads use them too

    out = {"loss": float(loss_fn(torch.from_numpy(logits), torch.as_tensor(y)))}
    for name in ("auc", "auprc", "accuracy"):
        out[name] = float(METRICS.get(name)(y, probs, task_type))
    return out


