"""Strategy catalogue (recipes as data) and how a phase is applied to a model."""

from .catalogue import (DATA_ROLES, MONITORS, PRESETS, STRATEGIES, Phase, Plateau, Strategy, Surgery, from_dict, get,
                        load_yaml, names, parse_trainable, phase_from_dict, register)
from .surgery import BN_POLICIES, apply_phase, count_params, param_groups, trainable_unit_indices
from .transfer import lwft_candidates  # registers LWFT@k, TF@k, Transfusion@k, MeanVar, GaborConv1

__all__ = ["DATA_ROLES", "MONITORS", "PRESETS", "STRATEGIES", "Phase", "Plateau", "Strategy", "Surgery", "from_dict",
           "get", "load_yaml", "names", "parse_trainable", "phase_from_dict", "register", "BN_POLICIES", "apply_phase",
           "count_params", "param_groups", "trainable_unit_indices", "params_report", "describe_keep", "mapping_on", "lwft_candidates"]


def params_report(backbone: str, strategy: str | Strategy, *, n_outputs: int = 1, bn_policy: str = "frozen",
                  image_size: int = 224) -> dict:
    """Parameter counts of a strategy on a backbone (no weights loaded), as `medapt params` prints.

    ``total`` is the model the strategy trains, head included; for strategies without phases (the
    ``ImageNet*`` baselines) it is the backbone alone, as in Table 1 of Mehmood et al.
    ``image_size`` matters only for a ``flatten`` head (its size depends on the feature map).
    """
    from ..models import build

    s = get(strategy) if isinstance(strategy, str) else strategy
    model = build(backbone, s.surgery, n_outputs=n_outputs, image_size=image_size)
    total = model.n_params() if s.trains else model.n_params() - sum(p.numel() for p in model.head.parameters())
    phases = [{"name": p.name, "data": p.data, "trainable": count_params(model, p, bn_policy)[1]} for p in s.phases]
    rep = {"backbone": backbone, "strategy": s.name, "n_outputs": n_outputs, "bn_policy": bn_policy,
           "keeps": model.n_units, "total": total, "phases": phases}
    from ..models import INITS, Surgery

    if INITS.get(s.surgery.init).reshapes:  # TF@k: the model it was slimmed from, for the saving
        full = build(backbone, Surgery(keep=s.surgery.keep, init="random", head=s.surgery.head), n_outputs=n_outputs,
                     image_size=image_size).n_params()
        rep["unreshaped_total"], rep["saving"] = full, full - total
    return rep


def mapping_on(backbone: str, strategy: str | Strategy) -> dict:
    """What a strategy keeps and trains on one backbone, in that backbone's unit names.

    ``keeps``: the kept units (count, first and last name, output stride after the last one);
    ``phases``: per phase the trainable units' names (``head`` only: none). This is how Mehmood
    et al.'s ResNet-specific words (first blocks, last sub-blocks) map onto another family.
    """
    from ..models import build

    s = get(strategy) if isinstance(strategy, str) else strategy
    model = build(backbone, s.surgery)
    anatomy = model.anatomy
    strides = anatomy.output_strides()
    phases = []
    for p in s.phases:
        idx = trainable_unit_indices(model, p.trainable)
        phases.append({"name": p.name, "data": p.data, "trainable": p.trainable,
                       "units": [model.unit_names[i] for i in idx]})
    return {"strategy": s.name, "backbone": backbone, "family": model.family, "keep": s.surgery.keep,
            "n_units": model.n_units, "first_unit": model.unit_names[0], "last_unit": model.unit_names[-1],
            "output_stride": strides[-1], "phases": phases}


def describe_keep(strategy: Strategy) -> str:
    """One line for listings: what the surgery keeps, and how it initialises and heads it."""
    s = strategy.surgery
    extra = [x for x in (None if s.init == "pretrained" else f"init {s.init}", None if s.head == "gap" else f"head {s.head}") if x]
    return s.keep + (f" ({', '.join(extra)})" if extra else "")
