"""``medapt export``: a strategy's model from a run directory → timm state dict, TorchScript or ONNX.

The run's own ``config.yaml`` is planned again (with the device type and precision recorded in
``environment.json``, which enter the step hashes), so the exported weights are exactly the step
outputs the run's tables were computed from. Which head comes along:

* ``own`` (the default for strategies that fine-tune on the target task): the model's own head
  after its target phases — or, for a strategy with only source (DAPT) phases, the head of the
  source task, with the source task's class names;
* a downstream head name (``model1``, ``model2``, …; the default for strategies without target
  phases): the MLP trained on the frozen GAP features of ``task``, with the feature
  standardisation it was trained with, so backbone + head run as one model on images.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path, atomic_write_json
from ..errors import ConfigError, RunDirError
from ..models import UnitModel
from ..models.portable import FeatureMLPHead, metadata_path, mlp_from_state_dict, save_portable

__all__ = ["EXPORT_FORMATS", "ExportResult", "Located", "locate_model", "export_model", "run_contents"]

log = logging.getLogger("medapt.deploy")

#: format → file suffix
EXPORT_FORMATS = {"timm": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}


@dataclass
class Located:
    """A strategy's model found in a run, with its head attached, and what applying it needs."""

    model: UnitModel
    keep: str
    image_size: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportResult:
    path: Path
    metadata_path: Path
    metadata: dict[str, Any]


class _RecordedRuntime:
    """The run's device type / precision / processes as recorded in environment.json (step hashes use them)."""

    def __init__(self, env: dict[str, Any]):
        self.device_type = str(env.get("device") or "cpu").split(":")[0]
        self.precision = str(env.get("precision") or "fp32")
        self.nproc = int(env.get("nproc_per_node") or 1)

    def numerics(self, training: bool = False) -> dict:
        out = {"device": self.device_type, "precision": self.precision}
        if training:
            out["nproc"] = self.nproc
        return out


def _open(run_dir: Path):
    from ..config import read_yaml
    from ..suite.experiment import experiment_from_dict
    from ..suite.planners import plan_experiment
    from ..suite.store import StepStore

    run_dir = Path(run_dir)
    cfg = run_dir / "config.yaml"
    if not cfg.is_file():
        raise RunDirError(f"{str(run_dir)!r} is not a medapt run directory (no config.yaml); give the folder "
                          "`medapt run --out` wrote")
    exp = experiment_from_dict(read_yaml(cfg), str(cfg))
    env_path = run_dir / "environment.json"
    env = json.loads(env_path.read_text()) if env_path.is_file() else {}
    plan = plan_experiment(exp, _RecordedRuntime(env))
    return exp, plan, StepStore(run_dir / "steps")


def _weights_step(exp, plan, strategy: str, seed: int, task: str | None):
    b = plan.builder
    if exp.strategy(strategy).target_phases and task is not None:
        return b.task_weights(strategy, seed, task)
    return b.source_weights(strategy, seed)


def run_contents(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every strategy × seed of a run and whether its weights are complete."""
    exp, plan, store = _open(Path(run_dir))
    task = next(iter(exp.data.targets), None)
    return [{"strategy": s, "seed": seed, "complete": store.done(_weights_step(exp, plan, s, seed, task))}
            for s in exp.strategies for seed in exp.seeds]


def _listing(exp, plan, store) -> str:
    task = next(iter(exp.data.targets), None)
    rows = []
    for s in exp.strategies:
        done = [seed for seed in exp.seeds if store.done(_weights_step(exp, plan, s, seed, task))]
        rows.append(f"{s} (seeds {', '.join(map(str, done)) if done else 'none complete'})")
    return "; ".join(rows)


def _head_step(plan, strategy: str, seed: int, head: str, task: str):
    want = {"strategy": strategy, "seed": seed, "head": head, "task": task}
    for s in plan.steps:
        if s.kind == "head" and any(all(t.get(k) == v for k, v in want.items()) for t in s.tags):
            return s
    return None


def _activation(task_type: str, n_outputs: int) -> str:
    return "sigmoid" if task_type == "multilabel" or n_outputs == 1 else "softmax"


def locate_model(run_dir: str | Path, strategy: str, *, seed: int | None = None, task: str | None = None,
                 head: str | None = None) -> Located:
    """The model ``strategy`` (seed ``seed``) produced in ``run_dir``, with ``head`` attached (see module doc).

    Raises :class:`~medapt.errors.ConfigError` naming what the run holds when the strategy, seed,
    task or head is not in it, and :class:`~medapt.errors.RunDirError` when its steps are incomplete.
    """
    from safetensors.torch import load_file

    from ..suite.context import RunContext

    run_dir = Path(run_dir)
    exp, plan, store = _open(run_dir)
    if strategy not in exp.strategies:
        raise ConfigError(f"strategy {strategy!r} is not in run {str(run_dir)!r}; it holds: {_listing(exp, plan, store)}")
    seed = exp.seeds[0] if seed is None else int(seed)
    if seed not in exp.seeds:
        raise ConfigError(f"seed {seed} is not in run {str(run_dir)!r} (seeds {exp.seeds}); it holds: "
                          f"{_listing(exp, plan, store)}")
    tasks = list(exp.data.targets)
    if task is not None and task not in tasks:
        raise ConfigError(f"task {task!r} is not in run {str(run_dir)!r}; its tasks are {tasks or 'none'}")
    strat = exp.strategy(strategy)
    if head is None:
        head = "own" if strat.target_phases or not exp.downstream.heads or not tasks else exp.downstream.heads[0]
    if head != "own" and head not in exp.downstream.heads:
        raise ConfigError(f"head {head!r} is not in run {str(run_dir)!r}; use 'own' or one of its downstream heads "
                          f"{list(exp.downstream.heads)}")
    if head != "own" or strat.target_phases:
        task = task if task is not None else (tasks[0] if tasks else None)
    weights = _weights_step(exp, plan, strategy, seed, task)
    if not store.done(weights):
        raise RunDirError(f"the weights of {strategy} seed {seed} are not complete in {str(run_dir)!r} (step "
                          f"{weights.id}); finish the run with `medapt run` first. The run holds: "
                          f"{_listing(exp, plan, store)}")
    ctx = RunContext(exp, run_dir, store, Path(exp.data.root), runtime=None)
    model = ctx.load_model(weights)
    data_step = weights.inputs.get("data")
    if head == "own":
        if not strat.phases:
            raise ConfigError(f"{strategy} has no training phase, so its own head was never trained; export it with a "
                              f"downstream head (--head {exp.downstream.heads[0] if exp.downstream.heads else 'model1'} "
                              "--task TASK)")
        info = store.result(data_step) if data_step is not None else {}
        what = f"own head ({'task ' + task if strat.target_phases else 'source task'})"
        used_task = task if strat.target_phases else "source"
        spec = exp.data.targets[task].dataset if strat.target_phases else exp.data.source
    else:
        hstep = _head_step(plan, strategy, seed, head, task)
        if hstep is None or not store.done(hstep):
            raise RunDirError(f"the {head} head of {strategy} seed {seed} on {task!r} is not complete in "
                              f"{str(run_dir)!r}; finish the run with `medapt run` first")
        hfile = store.path(hstep) / "head.safetensors"
        if not hfile.is_file():
            raise RunDirError(f"{hfile} is missing: this run's head steps were made by a medapt that did not keep the "
                              f"head weights. Delete {store.path(hstep)} and run `medapt run` again on this directory "
                              "(only the heads are retrained)")
        sd = load_file(str(hfile))
        model.head = FeatureMLPHead(mlp_from_state_dict(sd, "mlp."), sd["feature_mean"], sd["feature_std"])
        model.head.mlp.load_state_dict({k.removeprefix("mlp."): v for k, v in sd.items() if k.startswith("mlp.")})
        info = store.result(hstep.inputs["data"])
        standardised = bool(sd["feature_mean"].abs().max() > 0 or (sd["feature_std"] != 1).any())
        what = f"{head} head on task {task} (frozen GAP features{', standardised' if standardised else ', raw'})"
        used_task = task
        spec = exp.data.targets[task].dataset
    model.eval()
    key = weights
    while key.kind != "init":
        key = key.inputs["weights"]
    keep = key.key.surgery["keep"]
    n_out = int(model.head.n_outputs)
    classes = list(info.get("classes") or [])
    task_type = info.get("task_type") or ("binary" if n_out == 1 else "multiclass")
    spec_d = spec.model_dump(mode="json") if spec is not None else {}
    b = plan.builder
    meta = {
        "strategy": strategy, "seed": seed, "task": used_task, "head_used": what, "classes": classes,
        "task_type": task_type, "n_outputs": n_out, "activation": _activation(task_type, n_out),
        "positive_class": classes[1] if task_type == "binary" and n_out == 1 and len(classes) == 2 else None,
        "mean": list(b.mean), "std": list(b.std), "image_size": int(exp.data.image_size),
        "preprocessing": {"channels": 3, "intensity": spec_d.get("intensity", "minmax"),
                          "window": spec_d.get("window"), "resize": "bilinear, non-square images stretched",
                          "grayscale": "replicated to 3 channels", "normalise": "(x - mean) / std on [0, 1] pixels"},
        "run_dir": str(run_dir.resolve()), "weights_step": weights.id,
    }
    return Located(model, keep, int(exp.data.image_size), meta)


def _check_onnx(path: Path, model: torch.nn.Module, size: int) -> dict[str, Any] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: the ONNX file was not checked against torch "
                    "(pip install 'medapt[deploy]')")
        return None
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    diff = float(abs(got - ref).max())
    return {"onnxruntime": ort.__version__, "batch": 3, "max_abs_diff_vs_torch": diff}


def _write_onnx(model: torch.nn.Module, path: Path, size: int) -> None:
    x = torch.zeros(2, 3, size, size)
    with atomic_path(path) as tmp:
        kwargs = dict(input_names=["image"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        try:
            torch.onnx.export(model, (x,), str(tmp), dynamo=False, **kwargs)
        except TypeError:  # an older torch without the dynamo switch
            torch.onnx.export(model, (x,), str(tmp), **kwargs)


def export_model(run_dir: str | Path, strategy: str, *, fmt: str = "timm", out_file: str | Path | None = None,
                 out_dir: str | Path | None = None, seed: int | None = None, task: str | None = None, head: str | None = None) -> ExportResult:
    """Export ``strategy``'s model from ``run_dir`` as ``fmt`` (``timm``, ``torchscript``, ``onnx``) to ``out_file``.

    ``out_file`` defaults to ``<strategy>-seed<seed>.<suffix>`` in ``out_dir`` (default: the current folder); the JSON is
    written beside it (same stem). ONNX files have a dynamic batch dimension and are checked
    against torch with onnxruntime when it is installed (the max abs difference is in the JSON).
    """
    from .. import __version__

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format {fmt!r} is not known; use one of {', '.join(EXPORT_FORMATS)}")
    loc = locate_model(run_dir, strategy, seed=seed, task=task, head=head)
    suffix = EXPORT_FORMATS[fmt]
    if out_file is not None and out_dir is not None:
        raise ConfigError("give an output folder (--out) or an output file (--out-file), not both")
    path = Path(out_file) if out_file is not None else \
        Path(out_dir or ".") / f"{strategy}-seed{loc.metadata['seed']}{suffix}"
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ConfigError(f"--out {str(out_dir)!r} is a file; --out is a folder (use --out-file for a file name)")
    if path.suffix != suffix:
        raise ConfigError(f"--out-file {str(path)!r}: a {fmt} export is a {suffix} file; name it e.g. "
                          f"{path.with_suffix(suffix).name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": fmt, "medapt": __version__, "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **loc.metadata}
    model, size = loc.model.eval(), loc.image_size
    if fmt == "timm":
        meta = save_portable(model, path, loc.keep, image_size=size, metadata=meta)
        return ExportResult(path, metadata_path(path), meta)
    meta |= {"backbone": model.backbone, "family": model.family, "keep": loc.keep, "cut_point": model.n_units,
             "input_size": [3, size, size], "input": "image", "output": "logits"}
    if fmt == "torchscript":
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still loadable
            traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
        with atomic_path(path) as tmp:
            traced.save(str(tmp))
        meta["load"] = f"torch.jit.load({path.name!r})"
    else:
        _write_onnx(model, path, size)
        meta["load"] = f"onnxruntime.InferenceSession({path.name!r}); input 'image' (N, 3, {size}, {size})"
        check = _check_onnx(path, model, size)
        if check is not None:
            meta["onnx_check"] = check
            if check["max_abs_diff_vs_torch"] > 1e-4:
                log.warning("ONNX output differs from torch by %.3g (max abs)", check["max_abs_diff_vs_torch"])
    atomic_write_json(metadata_path(path), meta)
    return ExportResult(path, metadata_path(path), meta)
