"""The phantom multi-label CSV (``medapt phantom csv``) and the csv reader's all-missing label column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medapt.data import SplitSpec, prepare_dataset
from medapt.data.phantom_csv import PHANTOM_FINDINGS, write_phantom_csv
from medapt.errors import LabelError


def test_phantom_csv_is_a_multilabel_dataset_for_the_csv_reader(tmp_path):
    csv = write_phantom_csv(tmp_path / "cxr", n_per_class=4, size=32, uncertain=0.2)
    df = pd.read_csv(csv)
    assert list(df.columns) == ["Path", "Patient", *PHANTOM_FINDINGS] and len(df) == 20
    assert (df[PHANTOM_FINDINGS] == -1).any().any()  # some uncertain labels to exercise the policy
    ds = prepare_dataset({"format": "csv", "path": str(csv), "label_columns": PHANTOM_FINDINGS,
                          "patient_column": "Patient", "uncertain": "ignore"}, tmp_path / "root", image_size=32,
                         split=SplitSpec(train=0.6, test=0.4), progress=False)
    assert ds.task_type == "multilabel" and ds.labels.shape == (20, len(PHANTOM_FINDINGS))
    assert np.isnan(ds.labels).any()  # -1 → NaN under `ignore`
    # the label follows the phantom class: Abnormal is positive exactly for the four disease classes
    known = ~np.isnan(ds.labels[:, 0])
    assert set(np.unique(ds.labels[known, 0])) == {0.0, 1.0}
    again = pd.read_csv(write_phantom_csv(tmp_path / "again", n_per_class=4, size=32, uncertain=0.2))
    pd.testing.assert_frame_equal(df, again)  # deterministic for the seed


@pytest.mark.parametrize("uncertain", ["zeros", "ignore"])
def test_all_missing_label_column_is_named(tmp_path, uncertain):
    csv = write_phantom_csv(tmp_path / "cxr", n_per_class=2, size=16, uncertain=0.0, blank=0.0)
    df = pd.read_csv(csv)
    # all blank; or, where uncertain labels are ignored, all uncertain (-1): never known either way
    df["Vascular"] = pd.NA if uncertain == "zeros" else -1
    df.to_csv(csv, index=False)
    spec = {"format": "csv", "path": str(csv), "label_columns": PHANTOM_FINDINGS, "uncertain": uncertain}
    with pytest.raises(LabelError, match=r"label column 'Vascular' is missing .* in all 10 rows"):
        prepare_dataset(spec, tmp_path / "root", image_size=16, progress=False)
