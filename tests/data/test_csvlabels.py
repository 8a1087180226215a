"""CSV reader: CheXpert-style multi-label with the uncertain-label policies, and single-label."""

from __future__ import annotations

import numpy as np
import pytest

from medapt.data import SplitSpec, inspect_source, prepare_dataset
from medapt.errors import DataPathError, LabelError, MissingFieldError


@pytest.fixture
def chexpert(tmp_path, w):
    root = tmp_path / "CheXpert-v1.0-small"
    rows = ["Path,Sex,Frontal/Lateral,Cardiomegaly,Edema"]
    vals = [("1.0", ""), ("-1.0", "0.0"), ("0.0", "1.0"), ("", "-1.0"), ("1.0", "1.0"), ("0.0", "")]
    for i, (a, b) in enumerate(vals):
        pat = f"patient{i // 2:05d}"
        rel = f"train/{pat}/study1/view{i % 2 + 1}_frontal.jpg"
        w.write_png(root / rel, "JPEG", seed=i)
        rows.append(f"{rel},Male,{'Frontal' if i != 5 else 'Lateral'},{a},{b}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("policy, expected_u", [("zeros", 0.0), ("ones", 1.0), ("ignore", np.nan)])
def test_uncertain_policy(chexpert, tmp_path, policy, expected_u):
    ds = prepare_dataset({"format": "csv", "path": str(chexpert / "train.csv"),
                          "label_columns": ["Cardiomegaly", "Edema"], "uncertain": policy,
                          "patient_regex": r"(patient\d+)"}, tmp_path / "c", image_size=16,
                         split=SplitSpec(train=0.5, test=0.5), progress=False)
    assert ds.task_type == "multilabel" and ds.labels.dtype == np.float32 and ds.labels.shape == (6, 2)
    np.testing.assert_array_equal(ds.labels[1, 0], np.float32(expected_u))  # "-1.0" in row 2
    assert ds.labels[0, 1] == 0.0  # blank → zeros (default)
    assert ds.manifest["patient"].nunique() == 3
    assert (ds.manifest.groupby("patient")["split"].nunique() == 1).all()
    assert list(ds.manifest.columns[:4]) == ["id", "patient", "label_Cardiomegaly", "label_Edema"]


def test_blank_ignore_and_where(chexpert):
    s = inspect_source({"format": "csv", "path": str(chexpert / "train.csv"), "label_columns": ["Edema"],
                        "blank": "ignore", "where": {"Frontal/Lateral": "Frontal"}})
    assert s["n_images"] == 5 and s["classes"] == {"Edema": 2}


def test_single_label_column(tmp_path, w):
    rows = ["file,dx,pid"]
    for i in range(6):
        w.write_png(tmp_path / "img" / f"{i}.png", seed=i)
        rows.append(f"img/{i}.png,{['benign', 'malignant'][i % 2]},p{i // 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    spec = {"format": "csv", "path": str(tmp_path / "labels.csv"), "path_column": "file",
            "label_column": "dx", "patient_column": "pid", "classes": ["benign", "malignant"]}
    s = inspect_source(spec)
    assert s["task_type"] == "binary" and s["classes"] == {"benign": 3, "malignant": 3} and s["n_patients"] == 3


@pytest.mark.parametrize("content, exc, text", [
    ("Path,Edema\nx/0.jpg,2.0\n", LabelError, "'2.0'"),
    ("Path,Edema\nmissing.jpg,1.0\n", DataPathError, "missing.jpg"),
    ("Path,Other\nx/0.jpg,1\n", MissingFieldError, "Edema"),
    ("Path,Edema\nx/0.jpg,1\nx/0.jpg,0\n", Exception, "twice"),
])
def test_bad_rows(tmp_path, w, content, exc, text):
    w.write_png(tmp_path / "x" / "0.jpg", "JPEG")
    w.write_png(tmp_path / "x" / "1.jpg", "JPEG", seed=1)
    (tmp_path / "t.csv").write_text(content + "x/1.jpg,1\n" if "Other" not in content else content)
    with pytest.raises(exc, match=text):
        prepare_dataset({"format": "csv", "path": str(tmp_path / "t.csv"), "label_columns": ["Edema"]},
                        tmp_path / "c", image_size=8, progress=False)


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataPathError, match="nope.csv"):
        inspect_source({"format": "csv", "path": str(tmp_path / "nope.csv"), "label_column": "y"})
