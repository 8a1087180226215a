"""`medapt prepare`, `medapt inspect-data`, `medapt phantom preview` as a user runs them; the data section."""

from __future__ import annotations

import json

import pytest

from medapt.cli import main
from medapt.data import DataSection, load_data_section, prepare_section
from medapt.errors import ConfigError

CONFIG = """
experiment: ignored-by-prepare
data:
  image_size: 32
  channels: 3
  root: {root}
  split: {{train: 0.8, val: 0.0, test: 0.2, seed: 0}}
  source: {{format: phantom, task: grade, n_per_class: 8}}
  targets:
    tumor_type:
      dataset:  {{format: phantom, task: tumor_type, n_per_class: 8}}
      external: {{format: phantom, task: tumor_type, n_per_class: 4, shift: true}}
"""


def test_prepare_command_json_and_reuse(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG.format(root=tmp_path / "cache"))
    assert main(["prepare", str(cfg), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["dataset"] for r in rows] == ["source", "tumor_type", "tumor_type/external"]
    assert rows[0]["classes"] == {"low_grade": 8, "high_grade": 8}
    assert rows[2]["splits"] == {"external": 12}
    # --out overrides data.root; a second run reuses the folders (same digests)
    assert main(["prepare", str(cfg), "--format", "json", "--out", str(tmp_path / "other")]) == 0
    rows2 = json.loads(capsys.readouterr().out)
    assert all(r["path"].startswith(str(tmp_path / "other")) for r in rows2)
    assert [r["digest"] for r in rows2] == [r["digest"] for r in rows]


def test_prepare_section_keys_and_mean_std(tmp_path):
    import yaml

    section = DataSection.model_validate(yaml.safe_load(CONFIG.format(root=tmp_path))["data"])
    out = prepare_section(section, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), progress=False)
    assert set(out) == {"source", "tumor_type", "tumor_type/external"}
    assert out["source"].meta["settings"]["mean"] == [0.5, 0.5, 0.5]


def test_external_class_mismatch_names_both_lists(tmp_path):
    import yaml

    doc = yaml.safe_load(CONFIG.format(root=tmp_path))
    doc["data"]["targets"]["tumor_type"]["external"] = {"format": "phantom", "task": "disease", "n_per_class": 2}
    section = load_data_section(doc)
    with pytest.raises(ConfigError) as e:
        prepare_section(section, progress=False)
    assert "['meningioma', 'glioma', 'pituitary']" in str(e.value) and "'normal'" in str(e.value)
    assert not list(tmp_path.iterdir())  # checked before anything is prepared


@pytest.mark.parametrize("patch, text", [
    ({"image_sizee": 32}, "image_sizee"),
    ({"split": {"train": 0.9, "test": 0.2}}, "sum to 1"),
    ({"channels": 2}, "channels"),
    ({"source": {"format": "phantom", "task": "grading"}}, "grading"),
])
def test_section_validation(tmp_path, patch, text):
    import yaml

    doc = yaml.safe_load(CONFIG.format(root=tmp_path))
    doc["data"].update(patch)
    with pytest.raises(ConfigError, match=text):
        load_data_section(doc)


def test_prepare_errors_are_medapt_errors(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("data:\n  source: {format: folder, path: /no/such/dir}\n")
    assert main(["prepare", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medapt: error:") and "/no/such/dir" in err
    assert main(["prepare", str(tmp_path / "missing.yaml")]) == 2
    cfg.write_text("backbone: x\n")
    assert main(["prepare", str(cfg)]) == 2
    assert "no `data:` section" in capsys.readouterr().err


def test_inspect_data_json(tmp_path, w, capsys):
    root = tmp_path / "hms"
    for cls in ("normal", "neoplastic"):
        for i in range(3):
            w.write_png(root / cls / f"{i}.png", seed=i)
    (root / "normal" / "thumbs.db").write_bytes(b"x")
    w.truncate(w.write_png(root / "neoplastic" / "bad.png"), 0.3)
    assert main(["inspect-data", "folder", str(root), "--format", "json", "--opt", "classes=[normal, neoplastic]"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n_images"] == 6 and s["classes"] == {"normal": 3, "neoplastic": 3} and s["n_patients"] is None
    assert {x["file"].rsplit("/", 1)[-1] for x in s["skipped"]} == {"thumbs.db", "bad.png"}
    assert not list(tmp_path.glob(".medapt-cache"))  # wrote nothing
    assert main(["inspect-data", "folder", str(root)]) == 0
    text = capsys.readouterr().out
    assert "BAD" in text and "bad.png" in text and "normal" in text


def test_inspect_data_errors(capsys):
    assert main(["inspect-data", "foldr", "/x"]) == 2
    assert "Did you mean 'folder'" in capsys.readouterr().err
    assert main(["inspect-data", "folder"]) == 2
    assert main(["inspect-data", "phantom", "--opt", "task=grade", "--opt", "n_per_class=2"]) == 0


def test_phantom_preview_writes_png(tmp_path, capsys):
    out = tmp_path / "figs" / "grid.png"
    assert main(["phantom", "preview", "--task", "disease", "--n", "2", "--size", "32", "--out", str(out)]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]  # no temporary file left
