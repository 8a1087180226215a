"""Parameter counts as Keras reports them, to compare with Mehmood et al.'s Table 1.

Mehmood et al. count parameters with Keras (``model.summary()``) on ``keras.applications.ResNet50``.
PyTorch counts differ from Keras's for the same architecture in two ways:

1. **Convolution biases.** Keras's ResNet50 builds every ``Conv2D`` with a bias (the Keras
   default ``use_bias=True``), although a BatchNorm follows each one; timm and torchvision build
   them without (``bias=False``). ResNet50 has 53 convolutions with 26,560 output channels in
   all, hence 26,560 more parameters in Keras.
2. **BatchNorm statistics.** Keras counts a BatchNorm's moving mean and moving variance as
   *non-trainable parameters*; PyTorch keeps them as buffers (``running_mean``, ``running_var``)
   outside ``parameters()``. ResNet50's BatchNorms have 26,560 channels, hence 53,120 more.

The counting rule here derives the Keras numbers from the PyTorch model, not from a table:

* total = PyTorch parameters + one bias per output channel of every convolution built without a
  bias + two statistics per channel of every BatchNorm that tracks running statistics;
* trainable = PyTorch trainable parameters + the added bias of every convolution whose weight
  trains (in Keras a layer's kernel and bias train together); the statistics never train.

For timm's ResNet50 with a 1-logit head this gives 23,510,081 + 26,560 + 53,120 = 23,589,761,
Table 1's figure, and every trainable count of that table (``tests/cost/test_keras_params.py``).
The rule is Keras's ResNet (v1) convention; other Keras applications (EfficientNet, MobileNet…)
build their convolutions without biases, so for other families the added biases overstate what
Keras would print.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["KerasCounts", "keras_counts", "keras_params_report", "KERAS_RULE"]

#: one sentence for reports and the CLI
KERAS_RULE = ("Keras counting (Mehmood et al., Table 1): a bias added to every convolution built without one "
              "(Keras's ResNet50 convolutions have biases) and the BatchNorm moving mean and variance counted as "
              "non-trainable parameters")


@dataclass(frozen=True)
class KerasCounts:
    """Parameter counts of a module, PyTorch's and Keras's way."""

    total: int  # Keras: PyTorch parameters + conv biases + BN statistics
    trainable: int  # Keras: PyTorch trainable + biases of trainable convolutions
    torch_total: int
    torch_trainable: int
    conv_biases: int  # biases Keras has and this model lacks
    bn_statistics: int  # moving mean + variance entries

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable


def keras_counts(module: nn.Module) -> KerasCounts:
    """Count ``module``'s parameters with Keras's conventions (module docstring), in its current
    trainable state (``requires_grad`` as set by :func:`medapt.strategies.apply_phase`).

    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))
    >>> c = keras_counts(m)
    >>> c.torch_total, c.conv_biases, c.bn_statistics, c.total
    (232, 8, 16, 256)
    """
    torch_total = sum(p.numel() for p in module.parameters())
    torch_trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    biases = trainable_biases = stats = 0
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and m.bias is None:
            biases += m.out_channels
            if m.weight.requires_grad:
                trainable_biases += m.out_channels
        elif isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
            stats += m.running_mean.numel() + m.running_var.numel()
    return KerasCounts(total=torch_total + biases + stats, trainable=torch_trainable + trainable_biases,
                       torch_total=torch_total, torch_trainable=torch_trainable, conv_biases=biases,
                       bn_statistics=stats)


def keras_params_report(backbone: str, strategy, *, n_outputs: int = 1, bn_policy: str = "frozen") -> dict:
    """Like :func:`medapt.strategies.params_report`, counted the Keras way (Table 1 of Mehmood et al.).

    ``total`` is the model the strategy trains, head included (for strategies without phases,
    the backbone alone, as Table 1 does); every phase gives ``trainable`` and ``non_trainable``.
    ``torch_total`` and the added ``conv_biases`` / ``bn_statistics`` show where the difference
    from the PyTorch count comes from.

    >>> keras_params_report("resnet50", "DA_L1SB")["phases"][1]["trainable"]  # doctest: +SKIP
    4461569
    """
    from ..models import build
    from ..strategies import apply_phase, get

    s = get(strategy) if isinstance(strategy, str) else strategy
    model = build(backbone, s.surgery, n_outputs=n_outputs)
    whole = keras_counts(model)
    counted = whole if s.trains else _minus(whole, keras_counts(model.head))
    phases = []
    for p in s.phases:
        apply_phase(model, p, bn_policy)
        c = keras_counts(model)
        phases.append({"name": p.name, "trainable": c.trainable, "non_trainable": c.total - c.trainable})
    note = "" if model.family == "resnet" else (
        f"family {model.family!r}: Keras's own implementation may build its convolutions without biases; "
        "the added biases then overstate what Keras would print")
    return {"backbone": backbone, "strategy": s.name, "n_outputs": n_outputs, "bn_policy": bn_policy,
            "convention": "keras", "rule": KERAS_RULE, "total": counted.total, "torch_total": counted.torch_total,
            "conv_biases": counted.conv_biases, "bn_statistics": counted.bn_statistics, "phases": phases,
            "note": note}


def _minus(a: KerasCounts, b: KerasCounts) -> KerasCounts:
    return KerasCounts(*(getattr(a, f) - getattr(b, f) for f in
                         ("total", "trainable", "torch_total", "torch_trainable", "conv_biases", "bn_statistics")))
