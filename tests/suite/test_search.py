"""Cut-point search (issue 12): the four methods as planners of ordinary steps, search.csv, the
report section, `search:` inside `medapt run`, and bad input. Tiny: phantom data at 32 px, the
embedded EfficientNet-Lite0 (real weights), one epoch per candidate."""

import json

import numpy as np
import pandas as pd
import pytest

from medapt.cli import main
from medapt.errors import ConfigError, UnknownNameError
from medapt.models import build
from medapt.strategies import get
from medapt.suite import run_experiment
from medapt.suite.kinds.search import SEARCH_COLUMNS, check_validation, val_score
from medapt.suite.search import SEARCH_METHODS, lwft_strategy, run_search

from .conftest import tiny_config


def search_config(tmp_path, **changes):
    cfg = tiny_config(tmp_path, **changes)
    cfg["strategies"] = ["ImageNet"]
    cfg["schedule"] = {"epochs": {"finetune": 1}}
    cfg["data"]["split"] = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0}
    cfg["data"].pop("source")
    cfg["data"]["targets"]["tumor_type"].pop("external")
    cfg["search"] = {"methods": ["probe"]}
    return cfg


def write(tmp_path, cfg, name="exp.yaml"):
    import yaml

    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_methods_registry_and_lwft_candidate():
    assert set(SEARCH_METHODS.names()) == {"ttl", "probe", "svcca", "lwft"}
    (ph,) = lwft_strategy(5).phases
    assert ph.trainable == "from:5" and dict(ph.lr_mult) == {"backbone": 0.1} and ph.monitor == "auprc"
    with pytest.raises(ConfigError, match=">= 1"):
        lwft_strategy(0)
    # candidates are compared on search.metric at the epoch each kept
    phase = {"best_epoch": 2, "curve": [{"auc": 0.5, "auprc": 0.4}, {"auc": 0.7, "auprc": 0.6}]}
    assert val_score(phase, "auprc") == 0.6 and val_score(phase, "auroc") == 0.7


@pytest.mark.slow
def test_all_four_methods_write_search_csv_and_are_resumable(tmp_path, capsys):
    cfg = search_config(tmp_path)
    cfg["search"] = {"methods": ["probe"], "lwft_max_units": 2}
    cfg = write(tmp_path, cfg)
    out = tmp_path / "run"
    res = run_search(cfg, ["ttl", "probe", "svcca", "lwft"], out=out, progress=False)
    assert set(res["chosen"]) == {"ttl", "probe", "svcca", "lwft"}
    df = pd.read_csv(out / "search.csv")
    assert list(df.columns) == list(SEARCH_COLUMNS)
    # the probe ranks every cut point of the backbone (EfficientNet-Lite0: 18) from one pass
    probe = df[df["method"] == "probe"]
    assert sorted(probe["cut_point"]) == list(range(1, 19)) and probe["probe_score"].notna().all()
    # ttl: every stage end fine-tuned, then the cut points inside the best stage
    ttl = df[df["method"] == "ttl"]
    ends = sorted(ttl[ttl["role"] == "stage"]["cut_point"])
    assert ends == [1, 2, 4, 6, 9, 12, 16, 18]
    best_end = int(ttl[ttl["role"] == "stage"].sort_values(["val_score", "cut_point"], ascending=[False, True])
                   ["cut_point"].iloc[0])
    lo = max([e for e in ends if e < best_end], default=0)
    assert sorted(ttl[ttl["role"] == "inner"]["cut_point"]) == list(range(lo + 1, best_end))
    # every fine-tuned candidate has its validation metrics, params, FLOPs, latency and time
    ft = df[df["val_score"].notna()]
    for c in ("val_auroc", "val_auprc", "params", "flops_per_image", "latency_ms_cpu_b1", "wall_seconds"):
        assert ft[c].notna().all(), c
    # the chosen candidate of each method is its best on validation (ties: the shallower)
    for m, g in ft.groupby("method"):
        if m in ("probe", "svcca"):  # these choose by the probe ranking / the SVCCA detection
            continue
        chosen = g[g["chosen"]]
        assert len(chosen) == 1 and chosen["val_score"].iloc[0] == g["val_score"].max()
        assert res["chosen"][m] == chosen["candidate"].iloc[0]
    assert (df.groupby("method")["chosen"].sum() == 1).all()
    # svcca: FTL = the whole backbone, then the detected cut point
    sv = df[df["method"] == "svcca"]
    assert sv[sv["role"] == "ftl"]["cut_point"].tolist() == [18]
    assert res["cut_points"]["svcca"] == int(sv[sv["chosen"]]["cut_point"].iloc[0])
    # the report has the search section and its figure
    html = (out / "report.html").read_text()
    assert "Cut-point search" in html and (out / "figures" / "search.png").exists()
    # resumable: the same search again runs nothing
    again = run_search(cfg, ["ttl", "probe", "svcca", "lwft"], out=out, progress=False, report=False)
    assert again["executed"] == 0 and again["chosen"] == res["chosen"]
    # the CLI prints the chosen k per method
    # the CLI prints the chosen k per method; the run directory keeps the methods searched before
    assert main(["search", str(cfg), "--method", "probe", "--out", str(out), "--no-report", "--format", "json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["chosen"] == res["chosen"] and cli["executed"] == 0


@pytest.mark.slow
def test_search_section_of_an_experiment_runs_the_chosen_ttl_with_the_other_strategies(tmp_path):
    cfg = search_config(tmp_path)
    cfg["search"] = {"methods": ["probe"], "cut_points": [1, 2, 4]}
    cfg["strategies"] = ["ImageNet", "DA_TF_F1B"]  # a DAPT strategy that keeps the units up to stride 4
    cfg["data"]["source"] = {"format": "phantom", "task": "grade", "n_per_class": 8}
    cfg["schedule"]["epochs"] |= {"phase1": 1, "phase2": 1}
    cfg["similarity"] = {"methods": ["cka"]}
    cfg["data"]["targets"]["tumor_type"]["dataset"]["n_per_class"] = 12  # 9 patients: a non-empty test split
    res = run_experiment(write(tmp_path, cfg), out=tmp_path / "run", progress=False)
    sim = pd.read_csv(tmp_path / "run" / "similarity.csv")
    kept = build("tf_efficientnet_lite0", get("DA_TF_F1B").surgery).n_units  # compared on the units it keeps
    assert set(sim["strategy"]) == {"DA_TF_F1B"} and sorted(sim["cut_point"]) == list(range(1, kept + 1))
    assert sim["value"].between(0, 1 + 1e-9).all()
    assert "What DAPT changed" in res.report.read_text()
    chosen = pd.read_csv(tmp_path / "run" / "search.csv").query("chosen")["candidate"].iloc[0]
    assert chosen in ("TTL@1", "TTL@2", "TTL@4")
    m = pd.read_csv(tmp_path / "run" / "metrics.csv")
    own = m[(m["strategy"] == chosen) & (m["head"] == "own")]
    assert {"val", "test"} <= set(own["split"])  # fine-tuned, then its own head scored on test
    assert {"ImageNet", chosen} <= set(m[m["head"] == "model1"]["strategy"])  # downstream heads for both
    assert "Cut-point search" in res.report.read_text()


def test_bad_search_input_is_a_clear_error(tmp_path):
    cfg = search_config(tmp_path)
    cfg["data"]["split"] = {"train": 0.75, "val": 0.0, "test": 0.25, "seed": 0}
    with pytest.raises(ConfigError, match=r"data\.split\.val is 0\.0"):
        run_search(write(tmp_path, cfg), "probe", out=tmp_path / "r1", report=False)
    cfg = search_config(tmp_path)
    cfg["search"] = {"methods": ["sweep"]}
    with pytest.raises(ConfigError, match="search method 'sweep'"):
        run_search(write(tmp_path, cfg, "b.yaml"), out=tmp_path / "r2", report=False)
    cfg = search_config(tmp_path)
    cfg["search"] = {"task": "disease"}
    with pytest.raises(UnknownNameError, match="target task 'disease'"):
        run_search(write(tmp_path, cfg, "c.yaml"), out=tmp_path / "r3", report=False)


def test_single_class_validation_split_names_its_class_counts():
    class DS:
        classes = ["a", "b"]
        labels = np.array([0, 0, 0, 1, 1])

        def indices(self, split):
            return np.array([0, 1]) if split == "val" else np.array([2, 3, 4])

    with pytest.raises(ConfigError, match=r"'val' split, which has 2 images with class counts \{'a': 2, 'b': 0\}"):
        check_validation(DS(), "tumor_type", "the probe search")
