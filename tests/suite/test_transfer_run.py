"""The transfer strategies end to end in `medapt run`: TF@k's slimmed model reloaded by every later step
(its parameters and FLOPs in costs.csv and inference.csv), LWFT@k's cached prefix, convergence rows."""

import pandas as pd
import pytest
import yaml

from medapt.suite import run_experiment

from .conftest import tiny_config


@pytest.mark.slow
def test_tf_lwft_and_convergence_in_a_run(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["strategies"] = ["Scratch", "TF@6", "LWFT@16"]
    cfg["data"]["source"] = None
    cfg["data"]["split"] = {"train": 0.5, "val": 0.25, "test": 0.25, "seed": 0}
    cfg["data"]["targets"]["tumor_type"]["dataset"]["n_per_class"] = 16
    cfg["schedule"] = {"epochs": {"finetune": 2, "train": 2}}
    cfg["convergence"] = {"thresholds": [0.01], "baseline": "Scratch"}  # every curve reaches it at epoch 1
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    run_experiment(path, out=out)

    costs = pd.read_csv(out / "costs.csv")
    ft = costs[costs["step"] == "finetune"].set_index("strategy")
    assert ft.loc["TF@6", "params_total"] < ft.loc["Scratch", "params_total"]
    assert ft.loc["TF@6", "flops_per_image"] < ft.loc["Scratch", "flops_per_image"]
    assert bool(ft.loc["LWFT@16", "cached"]) and not bool(ft.loc["Scratch", "cached"])
    inf = pd.read_csv(out / "inference.csv").set_index("strategy")
    assert inf.loc["TF@6", "params"] < inf.loc["Scratch", "params"]
    assert inf.loc["TF@6", "flops_per_image"] < inf.loc["Scratch", "flops_per_image"]

    m = pd.read_csv(out / "metrics.csv")
    conv = m[m["metric"].str.startswith("speedup_epochs@")]
    assert set(conv["strategy"]) == {"Scratch", "TF@6", "LWFT@16"}
    assert (conv["value"] == 1.0).all()  # all at epoch 1
    assert "Convergence speed" in (out / "report.html").read_text()
