"""`medapt run --dry-run` without the data (issue 16 §5) and the projected-vs-actual table (issue 15 §5)."""

import json
from types import SimpleNamespace

import pytest
import yaml

from medapt.cli import main
from medapt.data import parse_dataset_spec
from medapt.errors import DataPathError
from medapt.suite import run_experiment
from medapt.suite.dryrun import declared_size, write_projection, write_projection_table

from .conftest import tiny_config


@pytest.mark.parametrize("spec, n", [
    ({"format": "brats", "path": "/nope"}, 4926 + 19496),
    ({"format": "cemri", "path": "/nope"}, 708 + 1426 + 930),
    ({"format": "folder", "path": "/nope", "classes": ["normal", "neoplastic", "cerebrovascular", "degenerative",
                                                        "inflammatory"]}, 689 + 370 + 463 + 868 + 314),
    ({"format": "folder", "path": "/nope", "classes": ["meningioma", "glioma", "pituitary"]}, 937 + 926 + 901),
    ({"format": "folder", "path": "/nope", "classes": ["a", "b"], "n_images": 120}, 120),  # declared wins
])
def test_declared_or_paper_sizes(spec, n):
    found = declared_size(parse_dataset_spec(spec))
    assert found is not None and found[0] == n
    assert "n_images" in found[2] or "paper" in found[2]


def test_unknown_dataset_without_declared_size_is_unsized():
    assert declared_size(parse_dataset_spec({"format": "folder", "path": "/nope", "classes": ["a", "b"]})) is None


def _missing_data_config(tmp_path):
    cfg = tiny_config(tmp_path, strategies=["ImageNet", "DA_L1SB"])
    cfg["data"]["source"] = {"format": "brats", "path": str(tmp_path / "no-brats"), "classes": ["LGG", "HGG"]}
    cfg["data"]["targets"]["tumor_type"] = {
        "dataset": {"format": "folder", "path": str(tmp_path / "no-cemri"), "classes": ["meningioma", "glioma",
                                                                                       "pituitary"], "n_images": 90},
        "external": {"format": "folder", "path": str(tmp_path / "no-kaggle"),
                     "classes": ["meningioma", "glioma", "pituitary"]},
    }
    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_dry_run_without_data_lists_every_missing_path(tmp_path, capsys):
    from medapt.suite.dryrun import format_resources

    cfg = _missing_data_config(tmp_path)
    assert main(["run", str(cfg), "--out", str(tmp_path / "dry"), "--dry-run", "--format", "json"]) == 0
    total = json.loads(capsys.readouterr().out)[-1]
    res = total["resources"]
    assert len(total["missing"]) == 3 and res["total_kwh"] > 0 and res["peak_memory_gb"] > 0
    assert res["disk_gb"]["prepared data"] > 0 and set(res["strategies"]) == {"ImageNet", "DA_L1SB"}
    assert json.loads((tmp_path / "dry" / "projection.json").read_text())["steps"]
    out = format_resources(res, total["missing"], total["sizes"])  # what the table format prints
    for name in ("no-brats", "no-cemri", "no-kaggle"):  # all of them, at once
        assert name in out
    assert "90 images (n_images declared" in out and "24,422 images (the paper's size" in out
    assert "kWh" in out and "disk:" in out and "peak memory:" in out
    assert "DA_L1SB" in out.split("per strategy")[1]  # per-strategy totals
    # a real run refuses before anything runs, naming every missing path
    with pytest.raises(DataPathError) as err:
        run_experiment(cfg, out=tmp_path / "real")
    assert all(n in str(err.value) for n in ("no-brats", "no-cemri", "no-kaggle"))
    assert str(err.value).startswith("3 dataset path(s) do not exist")


def test_projection_table_joins_projected_and_actual(tmp_path):
    steps = [SimpleNamespace(id="pretrain/aa", hash="aa", kind="pretrain", label="phase1"),
             SimpleNamespace(id="head/bb", hash="bb", kind="head", label="model1 tumor_type"),
             SimpleNamespace(id="head/cc", hash="cc", kind="head", label="not projected")]
    rows = [{"id": "pretrain/aa", "hash": "aa", "kind": "pretrain", "label": "phase1", "seconds": 2.0},
            {"id": "head/bb", "hash": "bb", "kind": "head", "label": "model1 tumor_type", "seconds": 4.0},
            {"id": "total", "kind": "", "label": "", "seconds": 6.0}]
    write_projection(tmp_path, rows, None)
    actual = {"aa": 3.0, "bb": 2.0, "cc": 1.0}
    store = SimpleNamespace(info=lambda s: {"seconds": actual[s.hash]})
    path = write_projection_table(tmp_path, SimpleNamespace(steps=steps), store)
    lines = path.read_text().splitlines()
    assert lines[0] == "step,kind,label,projected_s,actual_s,actual_over_projected"
    assert lines[1] == 'pretrain/aa,pretrain,"phase1",2.0000,3.0000,1.5000'
    assert lines[2].endswith(",4.0000,2.0000,0.5000") and len(lines) == 3  # cc was not projected
    # no dry run, no table
    assert write_projection_table(tmp_path / "other", SimpleNamespace(steps=steps), store) is None


def test_report_projection_section(tmp_path):
    from medapt.report.projection import projection_section

    ctx = SimpleNamespace(rf=SimpleNamespace(run_dir=tmp_path))
    assert projection_section(ctx) == ""  # no dry run: no section
    (tmp_path / "projection.csv").write_text("step,kind,label,projected_s,actual_s,actual_over_projected\n"
                                             'pretrain/aa,pretrain,"phase1",2.0,3.0,1.5\n'
                                             'head/bb,head,"model1",4.0,2.0,0.5\n')
    html = projection_section(ctx)
    assert "<h2>Projection</h2>" in html and "projected 6.0 s" in html and "took 5.0 s" in html
    assert "pretrain/aa" in html and "0.83" in html  # 5 / 6


# --- the time model's probes (issue 15 §5) ------------------------------------------------------------

def test_calibration_projects_forward_flops_at_the_inference_rate():
    from medapt.suite.dryrun import Calibration

    cal = Calibration(flops_per_s=1e9, build_s=0.5, epoch_overhead_s=0.01, note="", batch_overhead_s=0.001,
                      forward_flops_per_s=4e9)
    assert cal.seconds(2e9) == pytest.approx(2.0)  # training FLOPs at the training rate
    assert cal.seconds(2e9, forward_flops=2e9) == pytest.approx(0.5)  # all forward: the inference rate
    assert cal.seconds(3e9, forward_flops=2e9, models=2, epochs=10, batches=100) == pytest.approx(
        1.0 + 0.5 + 1.0 + 0.1 + 0.1)
    no_fwd = Calibration(1e9, 0.0, 0.0, "")  # not measured: forward FLOPs at the training rate
    assert no_fwd.seconds(2e9, forward_flops=2e9) == pytest.approx(2.0)


def test_time_preparation_reads_the_first_images_and_names_the_folder(tmp_path):
    from medapt.data import prepare_dataset
    from medapt.data.prepare import prepared_folder, time_preparation
    from medapt.data.spec import SplitSpec

    spec = {"format": "phantom", "task": "grade", "n_per_class": 12}
    fixed, per_image = time_preparation(spec, image_size=32)
    assert fixed >= 0 and per_image > 0
    assert time_preparation({"format": "folder", "path": str(tmp_path / "nope"), "classes": ["a", "b"]},
                            image_size=32) is None  # not readable: not timed, no error
    folder = prepared_folder(spec, tmp_path / "data", image_size=32, split=SplitSpec())
    assert not folder.exists()
    ds = prepare_dataset(spec, tmp_path / "data", image_size=32, split=SplitSpec(), progress=False)
    assert folder.resolve() == ds.path.resolve()


def test_head_probe_scales_with_epochs():
    from medapt.suite.kinds.head import head_seconds

    fixed, per_epoch = head_seconds("model1", 64, 3, "multiclass", 48, [16, 12], 16, False)
    assert fixed >= 0 and per_epoch > 0
    fixed_ml, per_epoch_ml = head_seconds("linear", 32, 4, "multilabel", 24, [8], None, True)
    assert fixed_ml >= 0 and per_epoch_ml > 0


def test_dry_run_times_preparation_and_heads_by_probes(tmp_path, capsys):
    cfg = tiny_config(tmp_path, strategies=["ImageNet"])
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "dry"), "--dry-run", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_kind = {}
    for r in rows[:-1]:
        by_kind.setdefault(r["kind"], []).append(r)
    assert all(r["seconds"] > 0 for r in by_kind["prepare"])  # measured on the first images, not 0
    assert all(r["seconds"] > 0 for r in by_kind["head"]) and all(r["seconds"] > 0 for r in by_kind["inference"])
    # once the data is prepared (here by a run in another run directory), preparing it costs nothing
    run_experiment(path, out=tmp_path / "run", report=False)
    assert main(["run", str(path), "--out", str(tmp_path / "dry2"), "--dry-run", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    prepared = [r["seconds"] for r in rows if r["kind"] == "prepare"]
    assert prepared and prepared == [0.0] * len(prepared)


def test_model_builds_are_declared_by_the_kinds():
    """The dry run adds a model build to the steps whose kind builds a backbone — declared by the
    kind (``builds_model``), so a new kind states it instead of a list in the dry run."""
    from medapt.suite.dryrun import step_models
    from medapt.suite.kinds import KINDS

    builders = {name for name in KINDS.names() if KINDS.get(name).builds_model}
    assert builders == {"init", "pretrain", "finetune", "extract", "evaluate", "inference"}
    assert step_models(SimpleNamespace(kind="extract")) == 1 and step_models(SimpleNamespace(kind="head")) == 0


def test_calibration_measures_both_throughputs_on_one_backbone(tmp_path, monkeypatch):
    """One full-size backbone serves the inference and the training probe (it used to be built twice)."""
    import medapt.models
    from medapt.suite import dryrun
    from medapt.suite.experiment import experiment_from_dict

    real_build, full_builds = medapt.models.build, []

    def counting_build(name, *args, **kw):
        if not args and "surgery" not in kw:  # the full network (the build-time probe passes a Surgery)
            full_builds.append(kw.get("image_size"))
        return real_build(name, *args, **kw)

    monkeypatch.setattr(medapt.models, "build", counting_build)
    exp = experiment_from_dict(tiny_config(tmp_path, strategies=["ImageNet"]), "calibration")
    cal = dryrun.calibrate(exp, exp.engine.runtime())
    assert cal.flops_per_s > 0 and cal.forward_flops_per_s > 0 and cal.build_s > 0
    assert full_builds == [exp.data.image_size]
