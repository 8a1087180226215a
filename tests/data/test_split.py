"""Patient-level, stratified, seeded splits."""

from __future__ import annotations

import numpy as np
import pytest

from medapt.data import SplitSpec, assign_splits, prepare_dataset


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
