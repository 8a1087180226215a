"""Device, precision, memory format and distribution behind one small object that takes strings.

A :class:`Runtime` is resolved once per process (``Runtime.resolve(device="auto", …)``) and handed
to everything that runs a model; the training loop asks it for the device, an autocast context,
a grad scaler and the DDP wrapper, and never branches on backends itself (the Lightning Fabric
habit). :meth:`Runtime.numerics` is what enters the hash of a step whose numbers depend on where
it ran.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["Runtime", "resolve_device", "seed_everything", "isolated_rng", "PRECISIONS", "available_devices"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; anything else is passed to :class:`torch.device`.

    Under torchrun, ``auto`` and ``cuda`` pick the process's ``LOCAL_RANK`` GPU.
    """
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local)
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
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local)
    return dev


def available_devices(device_type: str) -> int:
    """How many processes of ``device_type`` one node can run: CUDA devices, else CPU cores."""
    if device_type == "cuda":
        return torch.cuda.device_count()
    if device_type == "mps":
        return 1
    return os.cpu_count() or 1


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (for entry points only: library calls take generators).

    ``deterministic``: also ``torch.use_deterministic_algorithms(True)`` (an operation without a
    deterministic implementation then raises, naming itself), cuDNN without benchmarking, and the
    cuBLAS workspace setting deterministic CUDA matmuls need (``CUBLAS_WORKSPACE_CONFIG``).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def isolated_rng(deterministic: bool = False):
    """Run a block with its own RNG states and determinism settings, then restore the caller's:
    Python's, NumPy's and torch's (CPU and CUDA) generators, ``use_deterministic_algorithms`` and
    cuDNN benchmarking. `medapt run` seeds inside it, so a notebook's own streams are untouched."""
    py, npy = random.getstate(), np.random.get_state()
    det, bench = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.use_deterministic_algorithms(det)
        torch.backends.cudnn.benchmark = bench


@dataclass
class Runtime:
    """Where and how models run: ``Runtime("auto", "bf16")``.

    Args:
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``.
        precision: ``fp32`` | ``bf16`` | ``fp16`` (autocast; fp16 with a grad scaler, not on CPU).
        channels_last: memory format for 4-D tensors; ``None`` = on CUDA only.
        nproc: processes per node a training step runs on (torchrun + DDP); 1 = this process.

    Attributes resolved on creation: ``torch_device``; ``rank``/``world_size`` read the
    initialised process group (0/1 outside one).
    """

    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool | None = None
    nproc: int = 1
    torch_device: torch.device = field(init=False)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} not in {sorted(PRECISIONS)}")
        self.torch_device = resolve_device(self.device)
        if self.precision == "fp16" and self.torch_device.type == "cpu":
            raise ConfigError("precision fp16 is not supported on CPU; use bf16 or fp32 there")
        if self.channels_last is None:
            self.channels_last = self.torch_device.type == "cuda"
        if self.nproc < 1:
            raise ConfigError(f"nproc_per_node must be >= 1, got {self.nproc}")
        found = available_devices(self.torch_device.type)
        if self.nproc > found:
            what = f"{found} CUDA device(s)" if self.torch_device.type == "cuda" else (
                "one MPS device" if self.torch_device.type == "mps" else f"{found} CPU core(s)")
            raise ConfigError(f"--nproc-per-node {self.nproc} asks for more processes than this node has devices: "
                              f"found {what} for device {self.device!r}. Use at most {found}.")
        self.scaler = torch.amp.GradScaler(self.torch_device.type) if self.precision == "fp16" else None

    @property
    def device_type(self) -> str:
        return self.torch_device.type

    @property
    def accelerator(self) -> bool:
        """True on a GPU (CUDA or MPS): steps that run models ask the executor for one."""
        return self.device_type in ("cuda", "mps")

    @property
    def distributed(self) -> bool:
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    @property
    def rank(self) -> int:
        return torch.distributed.get_rank() if self.distributed else 0

    @property
    def world_size(self) -> int:
        return torch.distributed.get_world_size() if self.distributed else 1

    @property
    def is_main(self) -> bool:
        """Rank 0 (or no process group): the process that writes files."""
        return self.rank == 0

    def numerics(self, training: bool = False) -> dict:
        """What of the runtime changes a step's numbers — the part that enters step hashes.

        The device *type* (CPU, CUDA and MPS kernels round differently) and the precision;
        for training also the number of processes (DDP all-reduces gradients in another order).
        Not the device index, the rank, or ``auto`` as written.
        """
        out = {"device": self.device_type, "precision": self.precision}
        if training:
            out["nproc"] = self.nproc
        return out

    def autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model.to(self.torch_device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.torch_device, non_blocking=True)
        if x.dim() == 4 and self.channels_last:
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

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def all_sum(self, value: float) -> float:
        """Sum of a number over the ranks (the number itself outside a process group)."""
        if not self.distributed:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        if torch.distributed.get_backend() == "nccl":
            t = t.to(self.torch_device)
        torch.distributed.all_reduce(t)
        return float(t.item())
