"""Strategy catalogue (recipes as data) and the surgery that applies them to a model."""

from .catalogue import STRATEGIES, Phase, Strategy, Surgery, from_dict, get, load_yaml, names, parse_trainable, register
from .surgery import BN_POLICIES, apply_phase, build_for, count_params, keep_units, trainable_unit_indices

__all__ = ["STRATEGIES", "Phase", "Strategy", "Surgery", "from_dict", "get", "load_yaml", "names", "parse_trainable",
           "register", "BN_POLICIES", "apply_phase", "build_for", "count_params", "keep_units", "trainable_unit_indices",
           "params_report"]


def params_report(backbone: str, strategy: str | Strategy, *, n_outputs: int = 1, bn_policy: str = "frozen") -> dict:
    """Parameter counts of a strategy on a backbone (no weights loaded), as `medapt params` prints.

    ``total`` is the model the strategy trains, head included; for strategies without phases (the
    ``ImageNet*`` baselines) it is the backbone alone, as in Table 1 of Mehmood et al.
    """
    s = get(strategy) if isinstance(strategy, str) else strategy
    model = build_for(s, backbone, "none", n_outputs=n_outputs)
    total = model.n_params() if s.trains else model.n_params() - sum(p.numel() for p in model.head.parameters())
    phases = [{"name": p.name, "trainable": count_params(model, p, bn_policy)[1]} for p in s.phases]
    return {"backbone": backbone, "strategy": s.name, "n_outputs": n_outputs, "bn_policy": bn_policy,
            "total": total, "phases": phases}
