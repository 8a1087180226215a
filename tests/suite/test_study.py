"""Study protocols: sources × strategies × seeds × shot levels, sharing, source validation,
few-shot draws, BiT-HyperRule (medapt.suite.study)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from medapt.errors import ConfigError, WeightsError
from medapt.suite import load_experiment, plan_experiment
from medapt.suite.experiment import experiment_from_dict
from medapt.suite.kinds.fewshot import draw_shots
from medapt.suite.study import bit_hyperrule, bit_phase, sharing, sharing_line

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "examples" / "benchmark.yaml"


def study_config(tmp_path, **changes) -> dict:
    from .conftest import tiny_config

    cfg = tiny_config(tmp_path, strategies=["ImageNet", "FTL"])
    cfg["data"]["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0}
    cfg["data"].pop("source")
    cfg["schedule"] = {"epochs": {"finetune": 1}}
    cfg.update(changes)
    return cfg


# --- the config ------------------------------------------------------------------------------------

def test_seeds_count_means_that_many_seeds(tmp_path):
    assert experiment_from_dict(study_config(tmp_path, seeds=3)).seeds == [0, 1, 2]
    assert experiment_from_dict(study_config(tmp_path, seeds=[4, 7])).seeds == [4, 7]


@pytest.mark.parametrize("bad", [0, -2])
def test_seeds_zero_is_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match="seeds"):
        experiment_from_dict(study_config(tmp_path, seeds=bad))


def test_bad_shot_levels_and_duplicate_sources_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="shot"):
        experiment_from_dict(study_config(tmp_path, shots=[0, "full"]))
    with pytest.raises(ConfigError, match="full"):  # only numbers or 'full'
        experiment_from_dict(study_config(tmp_path, shots=["all"]))
    src = {"name": "a", "backbone": "tf_efficientnet_lite0", "weights": "embedded"}
    with pytest.raises(ConfigError, match="'a'"):
        experiment_from_dict(study_config(tmp_path, sources=[src, src]))


# --- sharing: the count the dry run states ------------------------------------------------------------

def test_benchmark_plan_counts_steps_results_and_sharing():
    exp = load_experiment(BENCHMARK, overrides=["engine.device=cpu"])
    plan = plan_experiment(exp)
    n_src, n_seed, draws = len(exp.sources), len(exp.seeds), exp.shot_draws
    fits = draws + 1  # each seed: `shot_draws` few-shot subsets + the full split
    assert exp.shots == [5, "full"] and n_src == 2 and n_seed == 3
    # results: ImageNet one head per fit; FTL one head + its own head (evaluate) per fit
    results = n_src * n_seed * fits * (1 + 2)
    # steps: 1 prepare (both sources are Lite0: one normalisation), fewshot per seed × draw (shared by
    # sources and strategies), an init per source × seed (ImageNet and FTL have the same surgery),
    # FTL: finetune + evaluate + extract + head per fit, ImageNet: one extract per init + a head per fit
    steps = (1 + n_seed * draws + n_src * n_seed + n_src * n_seed * fits * 4
             + n_src * n_seed * (1 + fits))
    # shared by several results: prepare, fewshot subsets, inits, ImageNet's extractions, FTL's finetunes
    shared = 1 + n_seed * draws + n_src * n_seed + n_src * n_seed + n_src * n_seed * fits
    got = sharing(plan)
    assert (got["steps"], got["results"], got["shared"]) == (steps, results, shared)
    assert got["unshared"] > 2 * got["steps"]
    assert sharing_line(plan).startswith(f"{steps} steps run for {results} results; {shared} shared")
    assert plan.counts()["fewshot"] == n_seed * draws


def test_study_rows_are_tagged_with_the_cell(tmp_path):
    src = [{"name": "imagenet", "weights": "embedded"}, {"name": "scratch", "weights": "none"}]
    exp = experiment_from_dict(study_config(tmp_path, sources=src, shots=[2, "full"]))
    heads = [s for s in plan_experiment(exp).steps if s.kind == "head"]
    cells = {t["strategy"] for s in heads for t in s.tags}
    assert "FTL/scratch/2-shot" in cells and "ImageNet/imagenet/full" in cells
    tag = next(t for s in heads for t in s.tags if t["strategy"] == "FTL/scratch/2-shot")
    assert (tag["method"], tag["source"], tag["shots"], tag["draw"]) == ("FTL", "scratch", "2", 0)


# --- sources -------------------------------------------------------------------------------------------

def test_missing_source_file_is_an_error_before_anything_runs(tmp_path):
    exp = experiment_from_dict(study_config(tmp_path, sources=[{"name": "mine", "weights": str(tmp_path / "no.pt")}]))
    with pytest.raises(ConfigError, match=r"sources\[0\] \(mine\).*no\.pt"):
        plan_experiment(exp)


def test_source_file_of_another_shape_names_the_first_bad_keys(tmp_path):
    from medapt.models.backbones import create_backbone

    sd = create_backbone("tf_efficientnet_lite0", "none")[0].state_dict()
    sd["conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    exp = experiment_from_dict(study_config(tmp_path, sources=[{"name": "bad", "weights": str(path)}]))
    with pytest.raises(WeightsError, match=r"sources\[0\] \(bad\).*extra\.weight.*conv_stem\.weight"):
        plan_experiment(exp)


def test_a_medapt_checkpoint_is_a_source_continual_pretraining(tmp_path):
    """A previous run's weights.safetensors (UnitModel keys) loads onto the backbone's own keys."""
    from medapt.models import build
    from medapt.models.backbones import create_backbone
    from medapt.suite.context import save_weights

    torch.manual_seed(0)
    model = build("tf_efficientnet_lite0", weights="none", n_outputs=3)
    save_weights(model, tmp_path)
    ckpt = tmp_path / "weights.safetensors"
    backbone, info = create_backbone("tf_efficientnet_lite0", str(ckpt))
    assert info.source == "file"
    unit_keys = [k for k in model.state_dict() if k.startswith("units.")]
    assert unit_keys and not any(k.startswith("units.") for k in backbone.state_dict())
    # every unit tensor arrived: the rebuilt model equals the checkpoint's units
    again = build("tf_efficientnet_lite0", weights=str(ckpt), n_outputs=3)
    for k, v in model.state_dict().items():
        if k.startswith("units."):
            assert torch.equal(again.state_dict()[k], v), k
    exp = experiment_from_dict(study_config(tmp_path, sources=[{"name": "cont", "weights": str(ckpt)}]))
    init = next(s for s in plan_experiment(exp).steps if s.kind == "init")
    assert init.key.weights == str(ckpt)


# --- few-shot draws -------------------------------------------------------------------------------------

def test_fewshot_draw_is_per_class_patient_level_and_deterministic():
    y = np.repeat([0, 1, 2], 12)
    pid = np.array([f"p{i // 4}" for i in range(36)])  # 4 images per patient, 3 patients per class
    rows = np.arange(36)
    a = draw_shots(y, pid, rows, ["a", "b", "c"], 5, np.random.default_rng(1))
    b = draw_shots(y, pid, rows, ["a", "b", "c"], 5, np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert np.bincount(y[a]).tolist() == [5, 5, 5]
    # patient level: 5 images of a class come from 2 patients (4 + 1), never from 5
    assert all(len(set(pid[a][y[a] == c])) == 2 for c in range(3))
    c = draw_shots(y, pid, rows, ["a", "b", "c"], 5, np.random.default_rng(2))
    assert len(c) == 15


def test_fewshot_more_shots_than_the_smallest_class_names_class_and_count():
    y = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ConfigError, match=r"shots 5 .* 3 training image\(s\) of class 'rare'"):
        draw_shots(y, np.array([None] * 13, dtype=object), np.arange(13), ["common", "rare"], 5,
                   np.random.default_rng(0), "t")


def test_fewshot_multilabel_takes_positives_per_label():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [1, np.nan], [0, 0]], dtype=float)
    rows = draw_shots(y, np.array([None] * 6, dtype=object), np.arange(6), ["x", "z"], 2, np.random.default_rng(0))
    assert (y[rows, 0] == 1).sum() >= 2 and (y[rows, 1] == 1).sum() >= 2


# --- BiT-HyperRule ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, boundaries, mixup", [
    (1, (100, 200, 300, 400, 500), 0.0),
    (19_999, (100, 200, 300, 400, 500), 0.0),
    (20_000, (500, 3000, 6000, 9000, 10_000), 0.1),
    (499_999, (500, 3000, 6000, 9000, 10_000), 0.1),
    (500_000, (500, 6000, 12_000, 18_000, 20_000), 0.1),
])
def test_bit_hyperrule_schedule_at_the_size_boundaries(n, boundaries, mixup):
    """Kolesnikov et al.'s bit_hyperrule.py: < 20k, < 500k, else; MixUp from 20k images."""
    r = bit_hyperrule(n, 224)
    assert r.boundaries == boundaries and r.mixup == mixup
    assert (r.lr, r.batch_size, r.momentum) == (0.003, 512, 0.9)


def test_bit_hyperrule_resolution_at_96_squared():
    assert (bit_hyperrule(100, (95, 96)).resize, bit_hyperrule(100, (95, 96)).crop) == (160, 128)
    assert (bit_hyperrule(100, 96).resize, bit_hyperrule(100, 96).crop) == (512, 480)
    with pytest.raises(ConfigError):
        bit_hyperrule(0, 96)


def test_bit_phase_gives_the_rules_steps_in_epochs():
    from medapt.strategies import STRATEGIES

    ft = STRATEGIES.get("FTL").target_phases[0]
    p = bit_phase(ft, n_train=1000, image_size=64, batch_size=100)
    assert p.optimizer == "sgd" and p.batch_size == 100
    assert p.lr == pytest.approx(0.003 * 100 / 512)  # BiT scales the base lr linearly with the batch
    assert p.epochs == 50  # 500 steps × 100 images / 1000 images


@pytest.mark.parametrize("n", [19_999, 20_000, 500_000])
def test_bit_phase_lr_at_the_rules_boundary_steps(n):
    """The learning rate a torch LambdaLR gives at BiT-HyperRule's boundaries (bit_hyperrule.get_lr):
    0 at step 0, linear to 0.003 at the warm-up end, ×0.1 for the steps after each decay point."""
    from medapt.strategies import STRATEGIES

    rule = bit_hyperrule(n, 224)
    p = bit_phase(STRATEGIES.get("FTL").target_phases[0], n, 224)  # batch 512: the base lr 0.003
    assert p.lr == pytest.approx(0.003) and p.mixup == rule.mixup and p.plateau is None
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=p.lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: p.lr_schedule.multiplier(t))
    lrs = []
    for _ in range(rule.steps + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    warm, *decays, end = rule.boundaries
    assert lrs[0] == 0 and lrs[warm // 2] == pytest.approx(0.003 * (warm // 2) / warm)
    assert lrs[warm] == pytest.approx(0.003)
    for k, d in enumerate(decays):
        assert lrs[d] == pytest.approx(0.003 * 0.1 ** k)
        assert lrs[d + 1] == pytest.approx(0.003 * 0.1 ** (k + 1))
    assert lrs[end] == pytest.approx(0.003 * 1e-3)


def test_rule_bit_hyperrule_sets_finetune_phases_from_the_task_size(tmp_path):
    exp = experiment_from_dict(study_config(tmp_path, schedule={"rule": "bit-hyperrule", "batch_size": 8}))
    ft = next(s for s in plan_experiment(exp).steps if s.kind == "finetune")
    n_train = round(3 * 8 * 0.6)  # tumor_type: 3 classes × 8 images, 60% training
    assert (ft.key.phase.optimizer, ft.key.phase.batch_size) == ("sgd", 8)
    assert ft.key.phase.lr_schedule.warmup_steps == 100 and ft.key.phase.mixup == 0.0  # fewer than 20k images
    assert ft.key.phase.epochs == int(np.ceil(500 / np.ceil(n_train / 8)))  # 500 steps of ceil(n/8) batches an epoch


def test_benchmark_example_is_valid_yaml_with_the_issue_shape():
    cfg = yaml.safe_load(BENCHMARK.read_text())
    assert len(cfg["sources"]) == 2 and cfg["seeds"] == 3 and len(cfg["shots"]) == 2
