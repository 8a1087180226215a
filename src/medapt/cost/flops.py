"""FLOPs, parameters, inference latency and throughput of PyTorch modules.

FLOPs are counted by PyTorch itself with :class:`torch.utils.flop_counter.FlopCounterMode`,
which counts the matrix products and convolutions that actually execute (forward and backward);
element-wise operations (activations, normalisation, pooling, optimizer updates) are not
counted — the usual convention (MACs = FLOPs / 2). Because only executed operations are counted,
a frozen prefix costs its forward pass and no backward pass, and a prefix served from the
frozen-prefix cache costs nothing per epoch.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import CostError

__all__ = [
    "count_flops",
    "count_params",
    "training_flops_per_image",
    "inference_cost",
    "throughput_probe",
    "project_seconds",
]

log = logging.getLogger(__name__)


def count_flops(fn: Callable[[], Any]) -> float:
    """Run ``fn()`` under :class:`~torch.utils.flop_counter.FlopCounterMode` and return its FLOPs.

    Everything ``fn`` executes counts, forward and backward (a multiply-add is 2 FLOPs).

    >>> conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    >>> count_flops(lambda: conv(torch.zeros(1, 3, 16, 16)))  # 2·3·8·3²·16·16
    110592.0
    """
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def count_params(module: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts; shared parameters count once."""
    seen: set[int] = set()
    total = trainable = 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


def _default_loss(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out.float().sum()
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return sum(_default_loss(o) for o in out)  # type: ignore[return-value]
    raise CostError(f"training_flops_per_image: cannot build a loss from a {type(out).__name__}; pass loss_fn.")


def training_flops_per_image(
    module: nn.Module,
    example: Tensor,
    loss_fn: Callable[[Tensor], Tensor] | None = None,
) -> float:
    """Forward + backward FLOPs per image of ``module`` on ``example`` (shape ``(B, ...)``).

    Runs one forward pass, a loss (``loss_fn(output)``, default the sum of the output) and, when
    any parameter requires grad, one backward pass — on a deep copy, so the caller's parameters,
    gradients and BatchNorm running statistics are untouched. Autograd only computes what the
    trainable parameters need, so a frozen prefix costs its forward pass only and a fully frozen
    module costs forward only. The loss and optimizer step are element-wise and not counted.

    Args:
        module: the part of the model that runs in the phase (e.g. the units after the cached
            cut point, plus the head). Training/eval mode is kept as it is.
        example: a batch of inputs of the shape the phase feeds it; ``B = example.shape[0]``.
        loss_fn: maps the module's output to a scalar. Default: ``output.float().sum()``.

    Returns:
        FLOPs per image (total / B).

    >>> conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    >>> training_flops_per_image(conv, torch.zeros(2, 3, 16, 16))  # forward + weight grad
    221184.0
    """
    if not isinstance(example, Tensor) or example.dim() < 1 or example.shape[0] < 1:
        raise CostError(
            f"training_flops_per_image needs an example batch tensor of shape (B, ...) with B >= 1, got "
            f"{getattr(example, 'shape', type(example).__name__)}."
        )
    batch = example.shape[0]
    twin = copy.deepcopy(module)
    twin.zero_grad(set_to_none=True)
    loss_fn = loss_fn or _default_loss
    needs_backward = any(p.requires_grad for p in twin.parameters())

    def step() -> None:
        with torch.enable_grad():
            out = twin(example.detach())
            loss = loss_fn(out)
            if needs_backward and loss.requires_grad:
                loss.backward()

    flops = count_flops(step)
    del twin
    return flops / batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - no MPS in CI
        torch.mps.synchronize()


def _devices(device: str | torch.device | Sequence[str | torch.device]) -> list[torch.device]:
    if isinstance(device, (str, torch.device)):
        if str(device) == "auto":
            out = [torch.device("cpu")]
            if torch.cuda.is_available():
                out.append(torch.device("cuda"))
            return out
        return [torch.device(device)]
    return [torch.device(d) for d in device]


def inference_cost(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    device: str | torch.device | Sequence[str | torch.device] = "cpu",
    batch_sizes: Iterable[int] = (1, 32),
    repeats: int = 5,
    warmup: int = 1,
) -> dict[str, Any]:
    """Inference cost of a final model: parameters, MACs per image, latency per image.

    Latency is measured on random inputs of shape ``(bs, *input_shape)`` in eval mode under
    ``torch.inference_mode()``: ``warmup`` untimed passes, then ``repeats`` timed passes; the
    median batch time divided by ``bs`` is the per-image latency (as TTL, Peng et al., reports
    CPU/GPU latency). The model is left in its original mode and on its original device (a copy
    runs on any other device).

    Args:
        model: the model (backbone + head) as deployed.
        input_shape: ``(C, H, W)`` of one image, e.g. ``(3, 224, 224)``.
        device: ``"cpu"``, ``"cuda"``, a list of them, or ``"auto"`` (CPU, plus CUDA when present).
        batch_sizes: default ``(1, 32)``.
        repeats: timed passes per batch size (median taken). Default 5.

    Returns:
        ``{"params": int, "params_trainable": int, "macs_per_image": float, "flops_per_image": float,
        "latency_ms_<device>_b<bs>": float, …}`` with ``<device>`` ``cpu`` or ``cuda``.
    """
    if len(tuple(input_shape)) != 3 or any(int(s) < 1 for s in input_shape):
        raise CostError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}.")
    if repeats < 1:
        raise CostError(f"repeats must be >= 1, got {repeats!r}.")
    batch_sizes = [int(b) for b in batch_sizes]
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise CostError(f"batch_sizes must be positive integers, got {batch_sizes!r}.")
    total, trainable = count_params(model)
    was_training = model.training
    try:
        model.eval()
        first = next(iter(model.parameters()), None)
        home = first.device if first is not None else torch.device("cpu")
        x1 = torch.randn(1, *input_shape, device=home)
        with torch.inference_mode():
            flops = count_flops(lambda: model(x1))
        out: dict[str, Any] = {
            "params": total,
            "params_trainable": trainable,
            "macs_per_image": flops / 2.0,
            "flops_per_image": flops,
        }
        for dev in _devices(device):
            runner = model if dev == home or (dev.type == home.type and dev.index is None) else copy.deepcopy(model).to(dev)
            runner.eval()
            for bs in batch_sizes:
                x = torch.randn(bs, *input_shape, device=dev)
                times = []
                with torch.inference_mode():
                    for i in range(warmup + repeats):
                        _sync(dev)
                        t0 = time.perf_counter()
                        runner(x)
                        _sync(dev)
                        if i >= warmup:
                            times.append(time.perf_counter() - t0)
                out[f"latency_ms_{dev.type}_b{bs}"] = statistics.median(times) / bs * 1000.0
            if runner is not model:
                del runner
    finally:
        model.train(was_training)
    return out


def throughput_probe(fn: Callable[[], None], n_images: int, *, warmup: int = 1, repeats: int = 3) -> float:
    """Measured images per second of ``fn``, which processes ``n_images`` images per call.

    ``fn`` is called ``warmup`` times untimed, then ``repeats`` times timed; the median call time
    gives the rate. CUDA work is synchronised around each timed call. Meant for the dry-run
    projection: time a few real training steps of a phase, multiply by the phase's FLOPs per
    image to get FLOP/s, then :func:`project_seconds`.

    >>> rate = throughput_probe(lambda: None, n_images=16)
    >>> rate > 0
    True
    """
    if n_images < 1 or repeats < 1 or warmup < 0:
        raise CostError(
            f"throughput_probe needs n_images >= 1, repeats >= 1, warmup >= 0 (got {n_images}, {repeats}, {warmup})."
        )
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return n_images / max(med, 1e-9)


def project_seconds(flops_total: float, flops_per_second: float) -> float:
    """Projected wall time of ``flops_total`` FLOPs at a measured ``flops_per_second``.

    ``flops_per_second`` should come from a probe of the same kind of work on the same device
    (``throughput_probe(...) * flops_per_image``), not from a datasheet peak.

    >>> project_seconds(1e12, 2e11)
    5.0
    """
    for name, v in (("flops_total", flops_total), ("flops_per_second", flops_per_second)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise CostError(f"project_seconds: {name} must be a finite number >= 0, got {v!r}.")
    if flops_per_second == 0:
        raise CostError("project_seconds: flops_per_second is 0; the throughput probe measured nothing.")
    return float(flops_total) / float(flops_per_second)
