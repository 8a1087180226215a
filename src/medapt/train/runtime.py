"""Device, precision and distribution behind one small object that takes strings.

The training loop asks this object for the device, an autocast context and a grad scaler, and
never branches on backends itself (the Lightning Fabric habit).
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["Runtime", "resolve_device", "seed_everything"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; anything else is passed to :class:`torch.device`."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device {device!r} is not valid; use auto, cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available here; use device: auto or cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r} asked for but MPS is not available here; use device: auto or cpu")
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (for entry points only: library calls take generators)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False


@dataclass
class Runtime:
    """``Runtime(device="auto", precision="bf16")`` — what the loop needs to run anywhere."""

    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} not in {sorted(PRECISIONS)}")
        self.torch_device = resolve_device(self.device)
        if self.precision == "fp16" and self.torch_device.type == "cpu":
            raise ConfigError("precision fp16 is not supported on CPU; use bf16 or fp32 there")
        self.scaler = torch.amp.GradScaler(self.torch_device.type) if self.precision == "fp16" else None

    @property
    def distributed(self) -> bool:
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    @property
    def rank(self) -> int:
        return torch.distributed.get_rank() if self.distributed else 0

    @property
    def world_size(self) -> int:
        return torch.distributed.get_world_size() if self.distributed else 1

    def autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model.to(self.torch_device)
        if self.torch_device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        return model

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.torch_device, non_blocking=True)
        if x.dim() == 4 and self.torch_device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def wrap(self, module: nn.Module) -> nn.Module:
        """DistributedDataParallel around the module that trains (rebuilt each phase)."""
        if not self.distributed or not any(p.requires_grad for p in module.parameters()):
            return module
        ids = [self.torch_device.index] if self.torch_device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()
