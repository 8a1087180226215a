"""Transfer strategies of Raghu et al. (Transfusion) and Peng et al. (TruncatedTL) on the target task.

Registered in the catalogue next to ``FTL``, ``LinearProbe`` and ``Scratch`` (DESIGN §3):

* ``LWFT@k`` — layer-wise fine-tuning: units ``1..k`` frozen, units ``k+1..`` and the head train;
  the head at the base learning rate η, every trainable backbone unit at η/10 (the published
  TruncatedTL code's groups, which its own DataParallel runs lost). ``k`` in ``0..n`` (``n`` =
  the backbone's units; ``LWFT@n`` trains the head alone). :func:`lwft_candidates` lists the
  names of the incremental search (one more trainable unit each).
* ``TF@k`` — TransFusion slim: pretrained units ``1..k`` (BatchNorm statistics included), the
  rest rebuilt at half width and trained from random (init ``slim@k``); ResNets, EfficientNets, CBR.
* ``Transfusion@k`` — weight transfusion: pretrained units ``1..k``, the rest random, same widths.
* ``MeanVar`` — every tensor drawn from N(mean, var) of its pretrained values.
* ``GaborConv1`` — a Gabor bank in conv1 (scaled to the pretrained conv1), the rest random.

Every one fine-tunes on each target task with the same schedule as ``Scratch`` and ``FTL``
(Adam 1e-4, 100 epochs, validation AUROC monitored, best epoch kept), so their convergence
speeds compare directly (``convergence`` in the experiment; docs/transfer.md).
"""

from __future__ import annotations

from ..errors import ConfigError
from ..models.build import Surgery
from .catalogue import PENG, RAGHU, STRATEGIES, Phase, Strategy, register

__all__ = ["lwft", "lwft_candidates", "LWFT_LR_MULT"]

#: the learning-rate multiplier of LWFT's trainable backbone units (η/10; the head keeps η)
LWFT_LR_MULT = 0.1


def _target(name: str, trainable: str, **values) -> Phase:
    return Phase(name, trainable, **({"lr": 1e-4, "epochs": 100, "data": "target"} | values))


def lwft(k: int) -> Strategy:
    """``LWFT@k``: units 1..k frozen; units k+1.. at lr/10 and the head at lr, on the target task."""
    if k < 0:
        raise ConfigError(f"LWFT@{k}: k must be in 0..n, n being the backbone's units (units 1..k are frozen; "
                          "LWFT@0 fine-tunes every unit at lr/10)")
    return Strategy(f"LWFT@{k}", "LWFT",
                    phases=(_target("finetune", f"from:{k}", lr_mult=(("backbone", LWFT_LR_MULT),)),),
                    description=f"layer-wise fine-tuning: units 1..{k} frozen, units {k + 1}.. at lr/10, the new head "
                                "at lr", reference=PENG)


def lwft_candidates(n_units: int, *, start: int | None = None) -> list[str]:
    """The names of LWFT's incremental search on a backbone with ``n_units`` units: one more unit each.

    From ``LWFT@{start}`` (default ``n_units - 1``: the last unit and the head train) down to
    ``LWFT@0`` (every unit trains). A search runs them in order while validation AUPRC improves.

    >>> lwft_candidates(4)
    ['LWFT@3', 'LWFT@2', 'LWFT@1', 'LWFT@0']
    """
    if n_units < 1:
        raise ConfigError(f"lwft_candidates: n_units must be >= 1, got {n_units}")
    start = n_units - 1 if start is None else start
    if not 0 <= start <= n_units:
        raise ConfigError(f"lwft_candidates: start={start} is out of range 0..{n_units}")
    return [f"LWFT@{k}" for k in range(start, -1, -1)]


def _tf(k: int) -> Strategy:
    if k < 1:
        raise ConfigError(f"TF@{k}: k must be >= 1 (units 1..k keep their pretrained weights)")
    return Strategy(f"TF@{k}", "TransFusion slim", Surgery(init=f"slim@{k}"), phases=(_target("finetune", "all"),),
                    description=f"pretrained units 1..{k} (BN statistics too), later units at half width from random, "
                                "everything fine-tuned", reference=RAGHU)


def _transfusion(k: int) -> Strategy:
    if k < 1:
        raise ConfigError(f"Transfusion@{k}: k must be >= 1 (units 1..k keep their pretrained weights)")
    return Strategy(f"Transfusion@{k}", "weight transfusion", Surgery(init=f"transfusion@{k}"),
                    phases=(_target("finetune", "all"),),
                    description=f"pretrained units 1..{k}, the rest random (same widths), everything fine-tuned",
                    reference=RAGHU)


STRATEGIES.register_family("LWFT", lwft, "layer-wise fine-tuning: units 1..k frozen, the rest at lr/10, the head at lr")
STRATEGIES.register_family("TF", _tf, "TransFusion slim: pretrained units 1..k, the rest at half width from random")
STRATEGIES.register_family("Transfusion", _transfusion, "weight transfusion: pretrained units 1..k, the rest random")
for _s in [
    Strategy("MeanVar", "Mean-Var init", Surgery(init="meanvar"), phases=(_target("finetune", "all"),),
             description="each tensor i.i.d. N(mean, var) of its pretrained values, everything fine-tuned",
             reference=RAGHU),
    Strategy("GaborConv1", "Gabor conv1", Surgery(init="gabor_conv1"), phases=(_target("finetune", "all"),),
             description="conv1 a Gabor bank scaled to the pretrained conv1, the rest random, everything fine-tuned",
             reference=RAGHU),
]:
    register(_s)
