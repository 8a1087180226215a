"""Run-directory integrity: damaged outputs are found, named, moved aside and recomputed to the
same numbers; `medapt verify` and `medapt report` refuse a damaged run directory."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from medapt.cli import main
from medapt.suite import run_experiment

from .conftest import tiny_config

KEY = ["strategy", "seed", "head", "task", "split", "epoch", "metric"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One undamaged tiny run (a cached source phase, a trained phase, features, heads), reused by
    every damage case through a copy of its run directory."""
    tmp = tmp_path_factory.mktemp("integrity")
    cfg = tiny_config(tmp, strategies=["DA_L1SB"], **{"cost.inference": False})
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp / "base"
    res = run_experiment(path, out=out, report=False)
    return {"config": path, "out": out, "plan": res.plan, "tmp": tmp}


def _metrics(run_dir):
    m = pd.read_csv(run_dir / "metrics.csv")
    return m.sort_values(KEY).reset_index(drop=True)


def _copy(base, name):
    dst = base["tmp"] / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(base["out"], dst, symlinks=True)  # copy2: contents and mtimes kept
    return dst


def _step(base, kind, pick=lambda s: True):
    return next(s for s in base["plan"].steps if s.kind == kind and pick(s))


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _zero(p):
    p.write_bytes(b"")


def _same_shape_garbage(p):
    """Overwrite an .npy array in place with other values of the same shape and dtype."""
    arr = np.load(p, mmap_mode="r+")
    arr[...] = np.random.default_rng(1).standard_normal(arr.shape).astype(arr.dtype)
    arr.flush()
    del arr


def _flip_bytes(p):
    """Same size, other content (a weights file that still parses as far as its size goes)."""
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(255 - b for b in data[mid:mid + 64])
    p.write_bytes(bytes(data))


def _rerun(base, out):
    before = (out / "log.txt").read_text()
    res = run_experiment(base["config"], out=out, report=False)
    log = (out / "log.txt").read_text()[len(before):]
    return res, log


def _assert_same_numbers(base, out):
    a, b = _metrics(base["out"]), _metrics(out)
    assert a[KEY].equals(b[KEY])
    np.testing.assert_allclose(b["value"].to_numpy(), a["value"].to_numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind,file,damage", [
    ("head", "metrics.csv", _truncate),
    ("extract", "features.npy", _same_shape_garbage),
    ("extract", "features.npy", _zero),
    ("pretrain", "weights.safetensors", _truncate),
    ("pretrain", "weights.safetensors", _flip_bytes),
])
def test_damaged_step_output_is_recomputed_to_the_same_numbers(base, kind, file, damage):
    out = _copy(base, f"{kind}-{damage.__name__}")
    step = _step(base, kind, lambda s: (out / "steps" / s.id / file).exists())
    damage(out / "steps" / step.id / file)
    res, log = _rerun(base, out)
    assert step.id in res.executed
    assert f"step {step.id}" in log and file in log and "recomputing" in log  # names the step and the file
    assert list((out / "steps" / kind).glob(f"{step.hash}.corrupt-*"))  # moved aside, not deleted
    _assert_same_numbers(base, out)
    assert main(["verify", str(out)]) == 0


def test_damaged_prepared_images_are_prepared_again(base):
    out = _copy(base, "prepared")
    step = _step(base, "prepare")
    info = json.loads((base["out"] / "steps" / step.id / "step.json").read_text())
    images = base["tmp"] / "images-backup.npy"
    src = next(p for p in map(__import__("pathlib").Path, info["files"]) if p.name == "images.npy")
    shutil.copy2(src, images)
    try:
        _same_shape_garbage(src)
        assert main(["verify", str(out)]) == 1
        res, log = _rerun(base, out)
        assert step.id in res.executed
        assert "images.npy" in log and "recomputing" in log
        _assert_same_numbers(base, out)
    finally:
        if images.exists():  # the data root is shared by the cases: leave it as it was
            shutil.copy2(images, src)


def test_damaged_prefix_cache_is_rebuilt(base):
    out = _copy(base, "cache")
    caches = sorted((out / "cache").glob("prefix-*.npy"))
    assert caches, "the tiny run's cached phase should have written a frozen-prefix cache"
    _same_shape_garbage(caches[0])
    assert main(["verify", str(out)]) == 1
    # the step that used the cache must run again (as after an interrupted run) to read it
    cached = [s for s in base["plan"].steps if s.kind == "pretrain"
              and json.loads((out / "steps" / s.id / "cost.json").read_text())["cached"]]
    shutil.rmtree(out / "steps" / cached[0].id)
    res, log = _rerun(base, out)
    assert cached[0].id in res.executed
    assert "frozen-prefix cache" in log and "damaged" in log and caches[0].name in log
    _assert_same_numbers(base, out)
    assert main(["verify", str(out)]) == 0


def test_verify_and_report_refuse_a_damaged_run_dir(base, capsys):
    out = _copy(base, "verify")
    assert main(["verify", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    step = _step(base, "head")
    _truncate(out / "steps" / step.id / "metrics.csv")
    assert main(["verify", str(out), "--format", "json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert not res["ok"] and res["damaged"][0]["step"] == step.id
    assert res["damaged"][0]["file"].endswith("metrics.csv") and "size" in res["damaged"][0]["problem"]
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fails verification" in err and "metrics.csv" in err and "--no-verify" in err
    assert main(["report", str(out), "--no-verify"]) == 0
    # a run directory table edited after the run: found too, and a re-run writes it again
    run_experiment(base["config"], out=out, report=False)
    capsys.readouterr()
    (out / "metrics.csv").write_text((out / "metrics.csv").read_text().replace("model1", "model2"))
    assert main(["verify", str(out)]) == 1
    assert "DAMAGED tables" in capsys.readouterr().out


def test_step_json_records_digests_of_its_files_and_inputs(base):
    step = _step(base, "head")
    info = json.loads((base["out"] / "steps" / step.id / "step.json").read_text())
    assert {"metrics.csv", "cost.json"} <= set(info["files"])
    rec = info["files"]["metrics.csv"]
    assert rec["size"] == (base["out"] / "steps" / step.id / "metrics.csv").stat().st_size
    assert len(rec["blake2b"]) == 32
    assert set(info["input_digests"]) == set(info["inputs"])
    prep = json.loads((base["out"] / "steps" / _step(base, "prepare").id / "step.json").read_text())
    assert any(name.endswith("images.npy") for name in prep["files"])  # the prepared folder, outside the step


def test_dry_run_names_a_damaged_step_and_leaves_it_in_place(base, caplog):
    out = _copy(base, "dry")
    step = _step(base, "head")
    _truncate(out / "steps" / step.id / "metrics.csv")
    with caplog.at_level("WARNING", logger="medapt"):
        res = run_experiment(base["config"], out=out, dry_run=True)
    row = next(r for r in res.dry_run if r.get("id") == step.id)
    assert row["status"] != "done"
    assert (out / "steps" / step.id).is_dir() and not list((out / "steps" / "head").glob("*.corrupt-*"))
    assert any("metrics.csv" in r.getMessage() and "would move it aside" in r.getMessage() for r in caplog.records)
