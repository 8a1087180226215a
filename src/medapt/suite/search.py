"""Cut-point search as a planner: TruncatedTL's search and three cheaper methods (issue 12).

The ``search`` planner turns the experiment's ``search:`` section (:class:`SearchSpec`) into
ordinary, content-addressed steps. Each method in :data:`SEARCH_METHODS` plans its first
candidates, and after they ran, :meth:`SearchMethod.decide` either asks for more candidates or
names the chosen strategy; a ``search`` step then summarises the method (its rows are the run's
``search.csv``) and, with ``run_chosen``, the chosen strategy runs like the experiment's other
strategies (every planner but this one plans it).

Methods (Peng et al., *Rethinking Transfer Learning for Medical Image Classification*):

* ``ttl`` — fine-tune ``TTL@k`` at every stage end, then at every cut point inside the best stage;
  chosen on the validation metric.
* ``probe`` — one frozen forward pass + a linear probe per cut point; ranks all cut points at the
  cost of one pass; then fine-tunes the best ``TTL@k`` (``probe_finetune``).
* ``svcca`` — fine-tune the whole model once (FTL = ``TTL@n``), SVCCA pretrained vs fine-tuned at
  every cut point against random features, cut at the first overlap, fine-tune that ``TTL@k``.
* ``lwft`` — layer-wise fine-tuning: ``LWFT@k`` freezes units 1..k, the head trains at the base
  learning rate and the trainable backbone units at a tenth of it; starting from the head alone,
  one more unit becomes trainable while the validation metric improves.

:func:`run_search` is ``medapt search``: the search planner alone on an experiment.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..registry import Registry
from ..strategies import STRATEGIES, Strategy, Surgery, phase_from_dict
from .graph import Plan, Step
from .kinds.inference import InferenceKey
from .kinds.search import DetectKey, ProbeKey, SearchKey
from .planners import PLANNERS, Builder, Pending, Planner, register_planner
from .search_spec import SEARCH_METHOD_NAMES, SearchSpec

__all__ = ["SEARCH_METHODS", "SearchMethod", "SearchPlanner", "SearchState", "run_search", "lwft_strategy",
           "SearchSpec"]

log = logging.getLogger("medapt.suite")


# --- the LWFT@k candidates --------------------------------------------------------------------------

def lwft_strategy(k: int) -> Strategy:
    """``LWFT@k``: units 1..k frozen, units k+1..n and a new head fine-tuned on the target (ttl preset);
    the head at the base learning rate, the trainable backbone units at a tenth (Peng et al.)."""
    if k < 1:
        raise ConfigError(f"LWFT@{k}: k must be >= 1 (units 1..k stay frozen)")
    phase = phase_from_dict({"name": "finetune", "trainable": f"from:{k}", "data": "target", "preset": "ttl",
                             "lr_mult": {"backbone": 0.1}})
    return Strategy(f"LWFT@{k}", "LWFT", Surgery(), phases=(phase,),
                    description=f"layer-wise fine-tuning: units 1..{k} frozen, the rest at lr/10, a new head at lr",
                    reference="Peng et al., Rethinking Transfer Learning for Medical Image Classification")


if "LWFT@1" not in STRATEGIES:  # another module may define the family; the search then uses that one
    STRATEGIES.register_family("LWFT", lwft_strategy,
                               "layer-wise fine-tuning: freeze units 1..k, the rest at lr/10, head at lr (ttl preset)")


# --- shared state of one method on one plan ---------------------------------------------------------

@dataclass
class SearchState:
    """What a method needs: the builder, the spec, the task/seed searched and the backbone's anatomy."""

    b: Builder
    spec: SearchSpec
    task: str
    seed: int
    n_units: int
    stage_ends: list[int]
    unit_names: list[str]

    @property
    def family(self) -> str:
        return "TTL" if self.spec.head == "gap" else "TTL-flatten"

    def ttl(self, k: int) -> str:
        return f"{self.family}@{k}"

    def candidate(self, name: str) -> tuple[Step, Step]:
        """The candidate's fine-tuned weights on the searched task and its inference-cost step."""
        b = self.b
        w = b.task_weights(name, self.seed, self.task)
        exp = b.exp
        key = InferenceKey(exp.data.image_size, b.runtime.device_type, exp.cost.inference_repeats)
        inf = b.plan.add(Step("inference", key, {"weights": w}, label="latency"), name,
                         tag={"strategy": name, "seed": self.seed})
        return w, inf

    def score(self, store, step: Step) -> float | None:
        """The candidate's best validation score (``None`` while it has not run)."""
        if not store.done(step):
            return None
        from .kinds.search import val_score

        s = val_score(store.result(step)["phase"], self.spec.metric)
        return float("nan") if s is None else float(s)


def _best(scores: dict[int, float]) -> int:
    """The cut point with the best score; ties (and NaN) go to the shallower, cheaper one."""
    return max(sorted(scores), key=lambda k: (scores[k] if scores[k] == scores[k] else float("-inf"), -k))


class SearchMethod:
    """One search method: :meth:`plan` its first candidates, :meth:`decide` from results."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def plan(self, st: SearchState) -> None:
        raise NotImplementedError

    def decide(self, st: SearchState, store) -> tuple[str, int, list[tuple[str, int, str]], dict[str, Step]] | None:
        """``(chosen strategy, its cut point, candidates (name, k, role), extra inputs)`` once the
        method has decided and every candidate ran; ``None`` while it still waits (it may add steps)."""
        raise NotImplementedError

    def pending(self, st: SearchState) -> Pending | None:
        return None


SEARCH_METHODS: Registry[SearchMethod] = Registry("search method", hint="Known: " + ", ".join(SEARCH_METHOD_NAMES))


def register_method(cls: type[SearchMethod]) -> type[SearchMethod]:
    SEARCH_METHODS.register(cls.name, cls())
    return cls


def _all_done(store, steps) -> bool:
    return all(store.done(s) for s in steps)


@register_method
class TTLSearch(SearchMethod):
    name = "ttl"
    description = "TruncatedTL's two-stage search: fine-tune at every stage end, then inside the best stage"

    def plan(self, st: SearchState) -> None:
        for k in st.stage_ends:
            st.candidate(st.ttl(k))

    def inner(self, st: SearchState, best_end: int) -> list[int]:
        i = st.stage_ends.index(best_end)
        lo = st.stage_ends[i - 1] if i > 0 else 0
        return list(range(lo + 1, best_end))

    def decide(self, st, store):
        stage = {k: st.candidate(st.ttl(k)) for k in st.stage_ends}
        if not _all_done(store, [w for w, _ in stage.values()]):
            return None
        best_end = _best({k: st.score(store, w) for k, (w, _) in stage.items()})
        inner = {k: st.candidate(st.ttl(k)) for k in self.inner(st, best_end)}
        if not _all_done(store, [w for w, _ in inner.values()]):
            return None  # the inner candidates were just planned
        every = stage | inner
        k = _best({c: st.score(store, w) for c, (w, _) in every.items()})
        cands = [(st.ttl(c), c, "stage" if c in stage else "inner") for c in sorted(every)]
        return st.ttl(k), k, cands, {}

    def pending(self, st):
        return Pending("search", "ttl: cut points inside the best stage", 2 * max(
            e - s - 1 for s, e in zip([0] + st.stage_ends, st.stage_ends)), note="after the stage-end candidates")


def _pretrained_init(st: SearchState) -> Step:
    s = Strategy("search:pretrained", "search", Surgery())
    return st.b.init(s, st.seed)


@register_method
class ProbeSearch(SearchMethod):
    name = "probe"
    description = "one frozen forward pass, a linear probe at every cut point; then fine-tune the best TTL@k"

    def probe_step(self, st: SearchState) -> Step:
        b = st.b
        dev, _ = b.target(st.task)
        cuts = tuple(sorted(st.spec.cut_points)) if st.spec.cut_points else None
        if cuts and not all(1 <= c <= st.n_units for c in cuts):
            raise ConfigError(f"search.cut_points {list(cuts)}: this backbone has cut points 1..{st.n_units}")
        key = ProbeKey(st.task, st.spec.metric, cuts, b.exp.engine.eval_batch_size, {"device": b.runtime.device_type})
        return b.plan.add(Step("probe", key, {"weights": _pretrained_init(st), "data": dev}, label=f"probe {st.task}"),
                          "search:probe")

    def plan(self, st):
        self.probe_step(st)

    def decide(self, st, store):
        probe = self.probe_step(st)
        if not store.done(probe):
            return None
        ranking = store.result(probe)["ranking"]
        k = int(ranking[0]["cut_point"])
        cands = [(st.ttl(int(r["cut_point"])), int(r["cut_point"]), "probe") for r in
                 sorted(ranking, key=lambda r: r["cut_point"])]
        extra = {"probe": probe}
        if st.spec.probe_finetune:
            w, inf = st.candidate(st.ttl(k))
            if not store.done(w) or not store.done(inf):
                return None
            cands = [(n, c, "probe+finetune" if c == k else r) for n, c, r in cands]
        return st.ttl(k), k, cands, extra

    def pending(self, st):
        return Pending("search", "probe: fine-tune the best TTL@k", 2 if st.spec.probe_finetune else 0)


@register_method
class SVCCASearch(SearchMethod):
    name = "svcca"
    description = "fine-tune once (FTL), SVCCA pretrained vs fine-tuned vs random, cut at the first overlap"

    def detect_step(self, st: SearchState) -> tuple[Step, Step]:
        b = st.b
        ftl, _ = st.candidate(st.ttl(st.n_units))
        dev, _ = b.target(st.task)
        key = DetectKey(st.task, "svcca", st.spec.svcca_draws, st.spec.svcca_fraction, st.seed,
                        b.exp.engine.eval_batch_size, {"device": b.runtime.device_type})
        det = b.plan.add(Step("detect", key, {"pretrained": _pretrained_init(st), "finetuned": ftl, "data": dev},
                              label=f"svcca {st.task}"), "search:svcca")
        return ftl, det

    def plan(self, st):
        self.detect_step(st)

    def decide(self, st, store):
        ftl, det = self.detect_step(st)
        if not store.done(det):
            return None
        found = store.result(det)["cut_point"]
        k = int(found) if found is not None else st.n_units
        w, inf = st.candidate(st.ttl(k))
        if not store.done(w) or not store.done(inf):
            return None
        cands = [(st.ttl(st.n_units), st.n_units, "ftl")] + ([(st.ttl(k), k, "detected")] if k != st.n_units else [])
        return st.ttl(k), k, cands, {"detect": det}

    def pending(self, st):
        return Pending("search", "svcca: fine-tune the detected TTL@k", 2, note="after FTL and the detection")


@register_method
class LWFTSearch(SearchMethod):
    name = "lwft"
    description = "layer-wise fine-tuning: one more trainable unit while the validation metric improves"

    def plan(self, st):
        st.candidate(f"LWFT@{st.n_units - 1}")  # the last unit (and the head) trainable

    def decide(self, st, store):
        top = st.n_units - 1
        lowest = 1 if st.spec.lwft_max_units is None else max(1, st.n_units - st.spec.lwft_max_units)
        scores: dict[int, float] = {}
        k = top
        while True:
            w, inf = st.candidate(f"LWFT@{k}")
            if not store.done(w) or not store.done(inf):
                return None
            scores[k] = st.score(store, w)
            improved = k == top or scores[k] > scores[k + 1]
            if not improved or k <= lowest:
                break
            k -= 1
        best = _best(scores)
        cands = [(f"LWFT@{c}", c, "lwft") for c in sorted(scores)]
        return f"LWFT@{best}", best, cands, {}

    def pending(self, st):
        return Pending("search", "lwft: one more trainable unit per round", 2 * (st.n_units - 2),
                       note="while the validation metric improves")


# --- the planner ------------------------------------------------------------------------------------

def _state(b: Builder, spec: SearchSpec) -> SearchState:
    import torch

    from ..models import build

    exp = b.exp
    if not exp.data.targets:
        raise ConfigError("search: data.targets is empty; the search fine-tunes on a target task")
    task = spec.task or next(iter(exp.data.targets))
    if task not in exp.data.targets:
        from ..errors import UnknownNameError

        raise UnknownNameError("target task", task, list(exp.data.targets), hint="Set search.task to one of data.targets.")
    if exp.data.split.val <= 0:
        raise ConfigError(f"search: the candidates are chosen on validation {spec.metric}, but data.split.val is "
                          f"{exp.data.split.val}; set data.split.val (e.g. 0.15)")
    cache = b.__dict__.setdefault("_search_anatomy", {})
    if exp.backbone.name not in cache:
        with torch.device("meta"):
            m = build(exp.backbone.name)  # the anatomy only (no weights)
        cache[exp.backbone.name] = (m.n_units, list(m.anatomy.stage_ends), list(m.unit_names))
    n, ends, names = cache[exp.backbone.name]
    seed = spec.seed if spec.seed is not None else exp.seeds[0]
    return SearchState(b, spec, task, seed, n, ends, names)


def _run_like_a_strategy(b: Builder, name: str) -> None:
    """Plan ``name`` as if it were listed under ``strategies``: every planner but the search's."""
    exp2 = b.exp.model_copy(update={"strategies": [name]})
    b2 = Builder(exp2, b.plan, b.runtime)
    for pname, p in PLANNERS.items():
        if pname not in ("search", "similarity") and p.applies(exp2):
            p.plan(b2)


@register_planner
class SearchPlanner(Planner):
    name = "search"
    description = "the cut-point search of the experiment's search: section (ttl, probe, svcca, lwft)"

    def applies(self, exp) -> bool:
        return getattr(exp, "search", None) is not None

    def plan(self, b: Builder) -> None:
        st = None
        for m in b.exp.search.methods:
            st = st or _state(b, b.exp.search)
            SEARCH_METHODS.get(m).plan(st)

    def extend(self, b: Builder, store) -> None:
        spec = b.exp.search
        st = _state(b, spec)
        for m in spec.methods:
            out = SEARCH_METHODS.get(m).decide(st, store)
            if out is None:
                continue
            chosen, k, cands, extra = out
            inputs = dict(extra)
            for name, _, role in cands:
                if role != "probe":  # a fine-tuned candidate (a probe-only row has no weights)
                    w, inf = st.candidate(name)
                    inputs[f"cand:{name}"], inputs[f"inf:{name}"] = w, inf
            key = SearchKey(m, st.task, st.seed, spec.metric, chosen, k, tuple(cands))
            b.plan.add(Step("search", key, inputs, label=f"{m} → {chosen}"), f"search:{m}")
            if spec.run_chosen:
                _run_like_a_strategy(b, chosen)

    def pending(self, b: Builder) -> list[Pending]:
        st = _state(b, b.exp.search)
        return [p for m in b.exp.search.methods if (p := SEARCH_METHODS.get(m).pending(st)) is not None]


# --- medapt search -----------------------------------------------------------------------------------

def _merge_methods(run_dir: Path, exp, spec: SearchSpec) -> SearchSpec:
    """A search run directory accumulates methods: when it holds the same experiment and search
    settings with other methods, those are kept (their steps are reused), so ``search.csv`` and the
    report cover every method searched there."""
    from ..config import read_yaml
    from .experiment import experiment_from_dict

    cfg = run_dir / "config.yaml"
    if not cfg.exists():
        return spec
    try:
        old = experiment_from_dict(read_yaml(cfg), str(cfg))
    except ConfigError:
        return spec
    if old.search is None:
        return spec
    same = old.model_copy(update={"search": None}).digest() == exp.model_copy(update={"search": None}).digest()
    if not same or old.search.model_dump() | {"methods": []} != spec.model_dump() | {"methods": []}:
        return spec
    methods = list(old.search.methods) + [m for m in spec.methods if m not in old.search.methods]
    return spec.model_copy(update={"methods": methods})


def run_search(
    config: str | Path | Any,
    method: str | list[str] | None = None,
    *,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    report: bool = True,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run only the cut-point search of an experiment (``medapt search CONFIG --method M``).

    ``method`` (one name or several) replaces ``search.methods``; without a ``search:`` section
    the defaults of :class:`SearchSpec` apply. Steps are content-addressed and resumable in
    ``out`` (default ``runs/<name>-search``), which receives ``search.csv``, the other tables, a
    figure and ``report.html``. A run directory accumulates methods: searching it again with
    another method keeps the earlier ones (reused), so ``search.csv`` covers them all.

    Returns ``{"run_dir", "chosen": {method: strategy}, "cut_points": {method: k}, "search_csv",
    "report", "executed", "reused" (step counts), "seconds"}``.
    """
    from ..atomic import atomic_write_json, atomic_write_text
    from ..train import isolated_rng
    from .context import RunContext
    from .executors import EXECUTORS
    from .experiment import Experiment, load_experiment
    from .run import RunLock, _check_run_dir, environment, resolve_runtime
    from .store import StepStore
    from .tables import collect_tables

    t0 = time.perf_counter()
    exp = config if isinstance(config, Experiment) else load_experiment(config, overrides)
    spec = exp.search or SearchSpec()
    if method is not None:
        methods = [method] if isinstance(method, str) else list(method)
        spec = SearchSpec.model_validate(spec.model_dump() | {"methods": methods})
    run_dir = Path(out) if out is not None else Path("runs") / f"{exp.name}-search"
    spec = _merge_methods(run_dir, exp, spec)
    exp = exp.model_copy(update={"search": spec})
    runtime = resolve_runtime(exp)
    plan = Plan()
    plan.builder = b = Builder(exp, plan, runtime)
    planner = PLANNERS.get("search")
    planner.plan(b)
    store = StepStore(run_dir / "steps")
    ctx = RunContext(exp, run_dir, store, Path(exp.data.root), runtime, progress=progress)
    execute = EXECUTORS.get("local")
    with RunLock(run_dir), isolated_rng(exp.engine.deterministic):
        _check_run_dir(run_dir, exp, force)
        atomic_write_text(run_dir / "config.yaml", exp.to_yaml())
        atomic_write_json(run_dir / "environment.json", environment(runtime, exp.engine.deterministic))
        steps, executed, reused = list(plan.steps), [], []
        while steps:
            ran, kept = execute(steps, store, ctx)
            executed += ran
            reused += kept
            n = len(plan.steps)
            planner.extend(b, store)
            steps = plan.steps[n:]
        collect_tables(plan, store, run_dir)
        rep = None
        if report:
            from ..report import build_report

            rep = build_report(run_dir)
    chosen = {s.key.method: s.key.chosen for s in plan.steps if s.kind == "search"}
    cuts = {s.key.method: s.key.cut_point for s in plan.steps if s.kind == "search"}
    return {"run_dir": str(run_dir), "chosen": chosen, "cut_points": cuts,
            "search_csv": str(run_dir / "search.csv"), "report": str(rep) if rep else None,
            "executed": len(executed), "reused": len(reused),
            "seconds": round(time.perf_counter() - t0, 1)}
