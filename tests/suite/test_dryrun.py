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
