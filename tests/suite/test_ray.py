"""The Ray executor runs the same plan as the local one and the outputs agree."""

import pandas as pd
import pytest

from medapt.suite import run_experiment

ray = pytest.importorskip("ray", reason="the optional Ray executor needs `pip install 'medapt[ray]'`")


def test_ray_executor_matches_local(write_config, tmp_path):
    cfg = write_config(strategies=["ImageNet", "DA_L1SB"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_experiment(cfg, out=tmp_path / "ray", executor="ray", report=False)
    finally:
        ray.shutdown()
    assert len(res.executed) == len(res.plan.steps)
    local = run_experiment(cfg, out=tmp_path / "local", report=False)
    a = pd.read_csv(tmp_path / "ray" / "metrics.csv")
    b = pd.read_csv(tmp_path / "local" / "metrics.csv")
    pd.testing.assert_series_equal(a["value"], b["value"], atol=1e-6, check_exact=False)
    assert len(local.executed) == len(res.executed)
