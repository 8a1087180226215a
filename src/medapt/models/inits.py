"""Initialisations from the Transfusion paper, as in-place functions on modules.

Raghu, Zhang, Kleinberg, Bengio, *Transfusion: Understanding Transfer Learning for Medical
Imaging* (NeurIPS 2019) separate what pretraining gives a network — feature reuse or merely a
good scaling of the weights — with initialisations that keep part of the pretrained model:

* :func:`meanvar_` — every layer drawn i.i.d. from N(mean, var) of its pretrained weights;
* :func:`gabor_conv1_` (with :func:`gabor_bank`) — synthetic Gabor filters in the first conv;
* :func:`transfusion_` — pretrained weights up to unit *k*, random above (same widths).

Also :func:`reset_` (each module's own ``reset_parameters``) and :func:`he_init_` (He-normal
convolutions, unit BatchNorm: the initialisation of the published slimmed ResNets).

Every function changes its module in place, returns it, and draws its randomness from the
``torch.Generator`` it is given. Where PyTorch's own ``reset_parameters`` must run (it reads the
global RNG), it runs inside :func:`torch.random.fork_rng` seeded from that generator, so the
caller's global RNG state is the same afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError, WeightsError

__all__ = ["reset_", "he_init_", "meanvar_", "gabor_bank", "gabor_conv1_", "first_layer", "transfusion_",
           "MEANVAR_BN_MODES"]

_BN = nn.modules.batchnorm._BatchNorm
MEANVAR_BN_MODES = ("sample", "reset")


# --- plumbing ------------------------------------------------------------------------------------

def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


@contextmanager
def _forked_rng(generator: torch.Generator, module: nn.Module):
    """Global RNG (CPU, and the CUDA devices ``module`` lives on) seeded from ``generator``, restored on exit."""
    cuda = sorted({t.device.index or 0 for t in [*module.parameters(), *module.buffers()] if t.is_cuda})
    seed = _seed_from(generator)
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for d in cuda:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


def _check_generator(generator: object) -> None:
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"expected a torch.Generator, got {type(generator).__name__}; "
                          "pass e.g. torch.Generator().manual_seed(seed) (medapt never reseeds the global RNG)")


def _own_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


def reset_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every submodule with its own ``reset_parameters`` (PyTorch's defaults).

    BatchNorm layers also reset their running statistics. Runs under a forked global RNG seeded
    from ``generator``. A submodule that owns parameters but has no ``reset_parameters`` is an
    error (it would silently keep its old values).

    >>> g = torch.Generator().manual_seed(0)
    >>> reset_(nn.Conv2d(3, 8, 3), g).weight.shape
    torch.Size([8, 3, 3, 3])
    """
    _check_generator(generator)
    mods = [(n, m) for n, m in module.named_modules() if _own_params(m) or isinstance(m, _BN)]
    missing = [f"{n or '<root>'} ({type(m).__name__})" for n, m in mods if not hasattr(m, "reset_parameters")]
    if missing:
        raise ConfigError("cannot re-initialise " + ", ".join(missing) + ": no reset_parameters(). "
                          "Initialise these modules yourself, or use he_init_.")
    with _forked_rng(generator, module):
        for _, m in mods:
            m.reset_parameters()
    return module


@torch.no_grad()
def he_init_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """He-normal (fan-out, ReLU) convolutions with zero bias, BatchNorm γ=1, β=0 and fresh statistics.

    This is the initialisation of torchvision's ResNet, which the published slimmed ResNets of
    Peng et al. (TruncatedTL code) use for their rebuilt stages. Other parameterised modules
    (e.g. ``Linear``) get their own ``reset_parameters`` (see :func:`reset_`).
    """
    _check_generator(generator)
    others = []
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            # drawn where the generator lives, then copied (the module may be on another device)
            w = torch.empty(m.weight.shape, dtype=m.weight.dtype, device=generator.device)
            m.weight.copy_(nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=generator))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (_BN, nn.GroupNorm, nn.LayerNorm)):
            if getattr(m, "weight", None) is not None:
                m.weight.fill_(1.0)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
            if isinstance(m, _BN):
                m.reset_running_stats()
        elif _own_params(m):
            others.append(m)
    for m in others:
        if not hasattr(m, "reset_parameters"):
            raise ConfigError(f"he_init_ cannot initialise a {type(m).__name__}: no reset_parameters()")
        with _forked_rng(generator, m):
            m.reset_parameters()
    return module


# --- Mean-Var ------------------------------------------------------------------------------------

@torch.no_grad()
def meanvar_(module: nn.Module, pretrained_state_dict: Mapping[str, torch.Tensor], generator: torch.Generator,
             *, bn: str = "sample", strict: bool = True) -> nn.Module:
    """Mean-Var initialisation (Raghu et al., Transfusion §5): each layer i.i.d. from its pretrained N(μ, σ²).

    Every parameter ``name`` of ``module`` (conv/linear weights and biases, normalisation γ/β) is
    filled with i.i.d. draws from N(μ, σ²), where μ and σ² are the mean and (population) variance
    of ``pretrained_state_dict[name]``. Only these two numbers per tensor are kept: the pretrained
    *features* are gone, their *scale* stays. Shapes need not match (μ, σ² are per tensor).

    BatchNorm (``bn``):

    * ``"sample"`` (default): γ and β, like every other layer, are drawn from N(μ, σ²) of the
      pretrained γ and β. A layer's γ carries its scale (e.g. small γ at the end of residual
      branches), which is exactly what Mean-Var is meant to transfer.
    * ``"reset"``: γ = 1, β = 0.

    In both modes the running mean/var are reset to 0/1 (and the batch counter to 0): they are
    statistics of the pretrained channels' activations, which the resampled weights no longer
    produce, so keeping them would normalise with wrong numbers. Hence train Mean-Var models with
    BN policy ``train`` (or recalibrate the statistics first); under ``frozen`` the BN layers
    would be plain affine maps.

    Args:
        module: the model (or unit) to initialise, in place.
        pretrained_state_dict: tensors of the pretrained model, keyed like ``module.state_dict()``.
        generator: source of the draws.
        bn: ``"sample"`` or ``"reset"``, see above.
        strict: raise when a parameter of ``module`` has no pretrained tensor (otherwise it keeps
            its current values).

    >>> pre, _ = create_backbone("tf_efficientnet_lite0", "embedded")
    >>> net, _ = create_backbone("tf_efficientnet_lite0", "none")
    >>> _ = meanvar_(net, pre.state_dict(), torch.Generator().manual_seed(0))
    >>> net.conv_stem.weight.shape, net.bn1.running_var.unique()      # same shapes; fresh statistics
    (torch.Size([32, 3, 3, 3]), tensor([1.]))
    """
    _check_generator(generator)
    if bn not in MEANVAR_BN_MODES:
        raise ConfigError(f"meanvar_ bn={bn!r}: allowed are {MEANVAR_BN_MODES}")
    bn_params = {f"{n}.{p}" if n else p for n, m in module.named_modules() if isinstance(m, _BN)
                 for p, _ in m.named_parameters(recurse=False)}
    missing = [n for n, _ in module.named_parameters() if n not in pretrained_state_dict
               and not (bn == "reset" and n in bn_params)]
    if missing and strict:
        shown = ", ".join(missing[:6]) + (f" … (+{len(missing) - 6})" if len(missing) > 6 else "")
        raise WeightsError(f"meanvar_: no pretrained tensor for {shown}. The state dict must be keyed like "
                           "module.state_dict() (same architecture); pass strict=False to leave these as they are.")
    for name, p in module.named_parameters():
        if bn == "reset" and name in bn_params:
            p.fill_(1.0 if name.endswith("weight") else 0.0)
            continue
        if name not in pretrained_state_dict:
            continue
        ref = pretrained_state_dict[name].detach().to(torch.float64)
        mean, std = float(ref.mean()), float(ref.var(correction=0).sqrt())
        draw = torch.randn(p.shape, generator=generator, device=generator.device,
                           dtype=p.dtype if p.is_floating_point() else torch.float32)
        p.copy_(draw.mul_(std).add_(mean))
    for m in module.modules():
        if isinstance(m, _BN):
            m.reset_running_stats()
    return module


# --- Gabor conv1 ---------------------------------------------------------------------------------

def _pair(k: int | Sequence[int]) -> tuple[int, int]:
    return (int(k), int(k)) if isinstance(k, int) else (int(k[0]), int(k[1]))


def gabor_layout(out_channels: int) -> tuple[int, int, int]:
    """(orientations, wavelengths, phases) of a bank of ``out_channels`` Gabor filters.

    Two phases (even and odd: cosine and sine) from 4 filters up, four wavelengths from 32 filters
    up (two from 8), and as many orientations as needed to reach ``out_channels``: 64 filters are
    8 orientations × 4 wavelengths × 2 phases.
    """
    if out_channels < 1:
        raise ConfigError(f"a Gabor bank needs at least one filter, got out_channels={out_channels}")
    n_phase = 2 if out_channels >= 4 else 1
    n_lambda = 4 if out_channels >= 32 else 2 if out_channels >= 8 else 1
    n_theta = math.ceil(out_channels / (n_phase * n_lambda))
    return n_theta, n_lambda, n_phase


def gabor_bank(out_channels: int, in_channels: int, kernel_size: int | Sequence[int],
               generator: torch.Generator | None = None) -> torch.Tensor:
    """A bank of zero-mean, unit-norm Gabor filters, shape ``(out_channels, in_channels, kh, kw)``.

    Filter ``i`` is ``g(x, y) = exp(-(x'² + γ² y'²) / 2σ²) · cos(2π x' / λ + ψ)`` with
    ``x' = x cos θ + y sin θ``, ``y' = -x sin θ + y cos θ`` (x along the width, y along the height,
    origin at the kernel centre), aspect γ = 0.5 and envelope σ = 0.56 λ (a one-octave bandwidth),
    capped at half the kernel size. The grid (:func:`gabor_layout`):

    * orientations θ = jπ/n_θ, j = 0..n_θ-1 — even coverage of [0, π);
    * wavelengths λ geometric from 2.5 px (above the 2-px Nyquist limit, where an odd filter
      vanishes) to max(2.5, kernel size) px;
    * phases ψ ∈ {0, π/2} (even/odd pair).

    θ varies fastest and the bank is cut after ``out_channels`` filters, so a bank that does not
    fill the grid lacks a few filters of its last (λ, ψ) sweep, never an orientation. Each filter
    has its mean removed (no DC response, like the edge and texture filters of a pretrained conv1)
    and is the same for every input channel (medapt feeds grayscale images replicated to three
    channels); over all its input channels it has unit norm. With ``generator`` the phases are
    drawn uniformly from [0, 2π) instead of the fixed pair (orientations and wavelengths stay on
    the grid).

    Raghu et al. describe the filters only as "synthetic Gabor filters"; this layout is medapt's.

    >>> gabor_bank(64, 3, 7).shape
    torch.Size([64, 3, 7, 7])
    """
    kh, kw = _pair(kernel_size)
    if in_channels < 1 or kh < 1 or kw < 1:
        raise ConfigError(f"gabor_bank needs positive sizes, got in_channels={in_channels}, kernel_size={(kh, kw)}")
    n_theta, n_lambda, n_phase = gabor_layout(out_channels)
    lambdas = torch.logspace(math.log10(2.5), math.log10(max(2.5, float(max(kh, kw)))), n_lambda, dtype=torch.float64)
    y, x = torch.meshgrid(torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2,
                          torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2, indexing="ij")
    filters = []
    for i in range(out_channels):
        t, rest = i % n_theta, i // n_theta
        li, pi = rest % n_lambda, rest // n_lambda % n_phase
        theta, lam = t * math.pi / n_theta, float(lambdas[li])
        psi = (float(torch.rand((), generator=generator, device=generator.device, dtype=torch.float64)) * 2 * math.pi
               if generator is not None
               else pi * math.pi / 2)
        sigma = min(0.56 * lam, max(kh, kw) / 2)
        xr = x * math.cos(theta) + y * math.sin(theta)
        yr = -x * math.sin(theta) + y * math.cos(theta)
        g = torch.exp(-(xr**2 + 0.25 * yr**2) / (2 * sigma**2)) * torch.cos(2 * math.pi * xr / lam + psi)
        g = g - g.mean() if g.numel() > 1 else g
        norm = g.norm()
        filters.append(g / norm if norm > 0 else g)
    bank = torch.stack(filters)[:, None].expand(out_channels, in_channels, kh, kw) / math.sqrt(in_channels)
    return bank.to(torch.get_default_dtype()).contiguous()


def first_layer(module: nn.Module) -> nn.Module:
    """The first parameterised layer of ``module`` (registration order), which must be a ``Conv2d``."""
    if isinstance(module, nn.Conv2d):
        return module
    for name, m in module.named_modules():
        if _own_params(m):
            if not isinstance(m, nn.Conv2d):
                raise ConfigError(f"GaborConv1 needs a Conv2d first layer, but the first layer of {type(module).__name__} "
                                  f"is {name!r} ({type(m).__name__}).")
            return m
    raise ConfigError(f"{type(module).__name__} has no parameterised layer to fill with Gabor filters")


@torch.no_grad()
def gabor_conv1_(conv: nn.Module, reference_weight: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> nn.Conv2d:
    """Fill a first convolution with a synthetic Gabor bank (Raghu et al., Transfusion: "Gabor conv1").

    ``conv`` is the ``Conv2d`` itself, or a model/unit whose first parameterised layer is taken
    (:func:`first_layer`; a first layer that is not a ``Conv2d`` is an error). Its weight becomes
    :func:`gabor_bank` ``(out, in/groups, kh, kw)``, scaled so that its Frobenius norm equals that
    of ``reference_weight`` (the pretrained conv1; every filter gets the same share) or, without
    one, the expected norm of a He (fan-in) initialisation, ``sqrt(2 · out_channels)``. A bias is
    set to zero. The rest of the network is left alone (the paper trains it from random).

    >>> conv = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    >>> ref = torch.randn(64, 3, 7, 7)
    >>> float(gabor_conv1_(conv, ref).weight.norm()) == pytest.approx(float(ref.norm()))
    True
    """
    layer = first_layer(conv)
    w = layer.weight
    bank = gabor_bank(w.shape[0], w.shape[1], tuple(w.shape[2:]), generator)
    bank = bank / bank.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]  # unit norm per filter
    target = float(reference_weight.detach().float().norm()) if reference_weight is not None else math.sqrt(2 * w.shape[0])
    layer.weight.copy_((bank * target / math.sqrt(w.shape[0])).to(w.dtype))
    if layer.bias is not None:
        layer.bias.zero_()
    return layer


# --- weight transfusion --------------------------------------------------------------------------

def _unit_modules(units: object) -> list[nn.Module]:
    """Modules of a UnitModel, an Anatomy, or a sequence of Units / modules."""
    if isinstance(units, nn.Module) and hasattr(units, "units") and isinstance(units.units, nn.ModuleList):
        return list(units.units)
    if hasattr(units, "units") and not isinstance(units, nn.Module):  # Anatomy
        units = units.units
    if isinstance(units, Iterable):
        return [getattr(u, "module", u) for u in units]
    raise ConfigError(f"expected a UnitModel, an Anatomy or a list of units, got {type(units).__name__}")


@torch.no_grad()
def transfusion_(units: object, pretrained_units: object, k: int, generator: torch.Generator) -> object:
    """Weight transfusion (Raghu et al., Transfusion §6): pretrained units 1..k, random units k+1..

    ``units`` and ``pretrained_units`` are the same architecture at the same widths (a
    :class:`~medapt.models.UnitModel`, an :class:`~medapt.models.Anatomy` or a list of units or
    modules). Units ``1..k`` of ``units`` get the pretrained state (weights and BatchNorm running
    statistics); units ``k+1..`` are re-initialised with each module's own ``reset_parameters``
    (:func:`reset_`) under a global RNG forked and seeded from ``generator``. ``k = 0`` re-draws
    everything; ``k = len(units)`` copies everything.

    >>> pretrained = build("tf_efficientnet_lite0", "embedded")
    >>> model = transfusion_(build("tf_efficientnet_lite0"), pretrained, k=4,
    ...                      generator=torch.Generator().manual_seed(0))   # stem + stages 1-2 pretrained
    """
    _check_generator(generator)
    mods, pre = _unit_modules(units), _unit_modules(pretrained_units)
    if len(mods) != len(pre):
        raise ConfigError(f"transfusion_: {len(mods)} units but {len(pre)} pretrained units; they must be the same architecture")
    if not 0 <= k <= len(mods):
        raise ConfigError(f"transfusion_: k={k} out of range 0..{len(mods)}")
    for i, (m, p) in enumerate(zip(mods[:k], pre[:k]), start=1):
        try:
            m.load_state_dict(p.state_dict())
        except RuntimeError as exc:
            raise WeightsError(f"transfusion_: unit {i} does not fit its pretrained counterpart "
                               f"(same widths are required): {exc}") from exc
    for m in mods[k:]:
        reset_(m, generator)
    return units
