"""Patient-level, stratified, seeded splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medapt.data import SplitSpec, assign_splits, inspect_source, prepare_dataset


def _cohort(seed=0, n_patients=60, n_classes=3):
    rng = np.random.default_rng(seed)
    labels, patients = [], []
    for p in range(n_patients):
        c = p % n_classes
        for _ in range(int(rng.integers(1, 9))):  # 1..8 images per patient, like CE-MRI / BraTS
            labels.append(c)
            patients.append(f"pt{p}")
    return np.array(labels), np.array(patients, dtype=object)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fractions", [(0.8, 0.0, 0.2), (0.64, 0.16, 0.2), (0.5, 0.25, 0.25)])
def test_no_patient_in_two_splits(seed, fractions):
    y, pats = _cohort(seed)
    tr, va, te = fractions
    s = assign_splits(y, pats, SplitSpec(train=tr, val=va, test=te, seed=seed))
    for p in np.unique(pats):
        assert len(set(s[pats == p])) == 1, p
    # fractions are met per class to within one (largest) patient
    for c in np.unique(y):
        sel = y == c
        for name, f in zip(("train", "val", "test"), fractions):
            assert abs((s[sel] == name).sum() - f * sel.sum()) <= 8
    if va == 0:
        assert "val" not in set(s)


def test_deterministic_for_a_seed_and_seed_matters():
    y, pats = _cohort()
    a = assign_splits(y, pats, SplitSpec(seed=3))
    b = assign_splits(y, pats, SplitSpec(seed=3))
    c = assign_splits(y, pats, SplitSpec(seed=4))
    assert (a == b).all() and (a != c).any()


def test_images_without_patient_are_their_own_group():
    y = np.array([0] * 50 + [1] * 50)
    s = assign_splits(y, [None] * 100, SplitSpec())
    assert (s[y == 0] == "test").sum() == 10 and (s[y == 1] == "test").sum() == 10


def test_multilabel_stratifies_on_rare_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < [0.5, 0.2, 0.05]).astype(np.float32)
    y[0, 0] = np.nan
    pats = np.array([f"p{i // 2}" for i in range(200)], dtype=object)
    s = assign_splits(y, pats, SplitSpec())
    rare = y[:, 2] == 1
    assert 0 < (s[rare] == "test").sum() < rare.sum()
    for p in np.unique(pats):
        assert len(set(s[pats == p])) == 1


def test_prepared_phantom_split_is_patient_level(tmp_path):
    ds = prepare_dataset({"format": "phantom", "task": "tumor_type", "n_per_class": 20, "slices_per_patient": 3},
                         tmp_path, image_size=32, split=SplitSpec(train=0.6, val=0.2, test=0.2), progress=False)
    m = ds.manifest
    assert (m.groupby("patient")["split"].nunique() == 1).all()
    assert set(m["split"]) == {"train", "val", "test"}
    assert len(ds.indices("train")) + len(ds.indices("val")) + len(ds.indices("test")) == len(ds)
    for c in range(3):  # every class in every split
        for split in ("train", "val", "test"):
            assert (ds.labels[ds.indices(split)] == c).any()


# ----------------------------------------------------------------------------- patient ids as written


def test_normalize_patient_id():
    from medapt.data.split import normalize_patient_id

    assert [normalize_patient_id(x) for x in (7, np.int64(7), 7.0, "007", " 7 ", "0007\t")] == ["7"] * 6
    assert [normalize_patient_id(x) for x in ("P01", "p01", " p01", "P01 ")] == ["p01"] * 4
    assert normalize_patient_id("0") == "0" and normalize_patient_id("000") == "0"
    assert normalize_patient_id("P007") == "p007"  # only purely numeric ids lose leading zeros
    assert [normalize_patient_id(x) for x in (None, float("nan"), "", "  ", pd.NA)] == [None] * 5


def test_one_patient_written_several_ways_lands_in_one_split():
    """7 (a number), "007" and " 7" are one patient, as are "P01" and "p01"; compared as written
    (before) they were separate groups and could be split between train and test."""
    from medapt.data.split import patient_id_collisions

    pats = []
    for p in range(40):  # 40 patients × 4 images, every patient written in two ways
        a, b = (p, f"{p:03d}") if p % 2 else (f"P{p:02d}", f"p{p:02d} ")
        pats += [a, a, b, b]
    pats = np.array(pats, dtype=object)
    y = np.array([p % 2 for p in range(40) for _ in range(4)])
    for seed in range(5):
        s = assign_splits(y, pats, SplitSpec(seed=seed))
        for p in range(40):
            assert len(set(s[4 * p: 4 * p + 4])) == 1, (seed, pats[4 * p: 4 * p + 4], s[4 * p: 4 * p + 4])
    c = patient_id_collisions(pats)
    assert len(c) == 40 and c["7"] == ["'007'", "7"] and c["p02"] == ["'P02'", "'p02 '"]


def test_csv_ids_collapse_reported_in_log_and_meta(tmp_path, w, caplog):
    """A CSV whose patient column spells one patient two ways ("7" / "007", "P1" / "p1")."""
    import json
    import logging

    rows = ["file,dx,pid"]
    spellings = {0: ("7", "007"), 1: ("P1", "p1"), 2: ("x2", "x2"), 3: ("x3", "x3")}
    k = 0
    for p, (a, b) in spellings.items():
        for pid in (a, a, b, b):
            w.write_png(tmp_path / "img" / f"{k}.png", seed=k)
            rows.append(f"img/{k}.png,{['neg', 'pos'][p % 2]},{pid}")
            k += 1
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    spec = {"format": "csv", "path": str(tmp_path / "labels.csv"), "path_column": "file",
            "label_column": "dx", "patient_column": "pid", "classes": ["neg", "pos"]}
    with caplog.at_level(logging.WARNING, logger="medapt.data.split"):
        ds = prepare_dataset(spec, tmp_path / "cache", image_size=8, split=SplitSpec(train=0.5, test=0.5),
                             progress=False)
    assert "'007' = '7'" in caplog.text and "'P1' = 'p1'" in caplog.text
    meta = json.loads((ds.path / "meta.json").read_text())
    assert meta["patient_ids"]["collisions"] == {"7": ["'007'", "'7'"], "p1": ["'P1'", "'p1'"]}
    assert meta["n_patients"] == 4
    m = ds.manifest
    assert m.groupby("patient")["split"].nunique().max() == 1
    assert sorted(m["patient"].unique()) == ["7", "p1", "x2", "x3"]  # colliding spellings → one id
    assert inspect_source(spec)["patient_id_collisions"] == meta["patient_ids"]["collisions"]


def test_dicom_patient_ids_collapse(tmp_path, w):
    """DICOM PatientID "PT01" in one file and "pt01 " in another: one patient."""
    d = tmp_path / "dcm"
    ramp = (np.arange(64, dtype=np.int16).reshape(8, 8) * 10)
    k = 0
    for cls in ("neg", "pos"):
        for p in range(3):
            for spelling in (f"PT{cls}{p}", f"pt{cls}{p} "):
                w.write_dicom(d / cls / f"{k}.dcm", ramp + k, patient=spelling, sop_uid=f"1.2.{k}")
                k += 1
    ds = prepare_dataset({"format": "dicom", "path": str(d)}, tmp_path / "cache", image_size=8,
                         split=SplitSpec(train=0.5, test=0.5), progress=False)
    assert ds.meta["n_patients"] == 6 and len(ds.meta["patient_ids"]["collisions"]) == 6
    assert ds.manifest.groupby("patient")["split"].nunique().max() == 1
    assert set(ds.manifest["split"]) == {"train", "test"}


@pytest.mark.parametrize("task", ["grade", "tumor_type", "disease"])
@pytest.mark.parametrize("shift", [False, True])
def test_phantom_ids_are_already_normal(task, shift):
    """The built-in phantom writes ids like 'grade-s0-low_grade-p0003': lower case, not numeric,
    so normalisation is the identity on them and the demo's splits do not change."""
    from medapt.data.phantom import PHANTOM_CLASSES, generate
    from medapt.data.split import normalize_patient_id

    for seed in (0, 7):
        for cls in PHANTOM_CLASSES[task]:
            for pi in (0, 12, 9999):
                pid = f"{task}{'-shift' if shift else ''}-s{seed}-{cls}-p{pi:04d}"  # phantom.iter_phantom
                assert normalize_patient_id(pid) == pid
    _, _, pats = generate(task, n_per_class=4, size=16, slices_per_patient=2, shift=shift, seed=0)
    assert all(normalize_patient_id(p) == p for p in pats)
