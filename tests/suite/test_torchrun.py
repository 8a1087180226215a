"""`medapt run --nproc-per-node 2`: training steps launched with torchrun (gloo on CPU), rank 0 writes;
the weights equal the single-process run's within a stated tolerance."""

import json

import pytest
import torch
from safetensors.torch import load_file

from medapt.cli import main

TOLERANCE = 1e-5  # float32 rounding: DDP all-reduces the gradient in another order


@pytest.mark.slow
def test_torchrun_training_steps_match_one_process(write_config, tmp_path, capsys):
    cfg = write_config(strategies=["DA_L1SB"], **{"schedule.batch_size": 4})
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["pretrain", str(cfg), "--out", str(one)]) == 0
    assert main(["run", str(cfg), "--out", str(two), "--nproc-per-node", "2", "--no-report"]) == 0
    log = (two / "log.txt").read_text()
    assert "2 processes per training step (torchrun)" in log and "[rank 0/2]" in log
    weights = {}
    for run in (one, two):
        for step in sorted((run / "steps" / "pretrain").iterdir()):
            info = json.loads((step / "step.json").read_text())
            weights.setdefault(info["key"]["phase"]["name"], []).append(load_file(str(step / "weights.safetensors")))
            assert info["key"]["runtime"]["nproc"] == (1 if run == one else 2)
    assert set(weights) == {"phase1", "phase2"}
    for phase, (a, b) in weights.items():
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=TOLERANCE, msg=f"{phase} {k}")
    assert not list((two / "steps" / "pretrain").glob("*/result.json"))  # rank 0's hand-over file is consumed
    assert (two / "metrics.csv").is_file()  # the rest of the run ran in this process
