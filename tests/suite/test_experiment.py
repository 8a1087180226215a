"""The experiment file: validation with clear messages, overrides, examples."""

from pathlib import Path

import pytest
import yaml

from medapt.errors import ConfigError
from medapt.suite import load_experiment

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["quickstart.yaml", "mehmood2023.yaml"])
def test_examples_validate(name):
    exp = load_experiment(ROOT / "examples" / name)
    assert len(exp.strategies) == 10


def test_quickstart_schedule_scales_the_paper_defaults():
    exp = load_experiment(ROOT / "examples" / "quickstart.yaml")
    s = exp.strategy("DA_L1SB_PFT")
    assert [p.epochs for p in s.phases] == [40, 4, 2]  # 1000/100/50 x 0.04, ratios kept


def test_unknown_key_is_named_with_a_suggestion(write_config):
    path = write_config()
    data = yaml.safe_load(path.read_text())
    data["strategy"] = data.pop("strategies")
    data["engine"]["bn_polcy"] = "frozen"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_experiment(path)
    msg = str(exc.value)
    assert "unknown key 'strategy'" in msg and "Did you mean 'strategies'" in msg
    assert "unknown key 'engine.bn_polcy'" in msg and "'bn_policy'" in msg


def test_wrong_types_and_values_are_explained(write_config):
    with pytest.raises(ConfigError, match=r"downstream.epochs.*got 'many'"):
        load_experiment(write_config(**{"downstream.epochs": "many"}))
    with pytest.raises(ConfigError, match=r"engine.precision.*'fp32', 'bf16' or 'fp16'"):
        load_experiment(write_config(**{"engine.precision": "fp64"}))


def test_unknown_strategy_head_and_reader(write_config):
    with pytest.raises(ConfigError, match="Unknown strategy 'DA_L3SB'. Did you mean 'DA_L2SB'"):
        load_experiment(write_config(strategies=["DA_L3SB"]))
    with pytest.raises(ConfigError, match="Unknown head 'model3'"):
        load_experiment(write_config(**{"downstream.heads": ["model3"]}))
    with pytest.raises(ConfigError, match="data.source"):
        load_experiment(write_config(**{"data.source": {"format": "nifti", "path": "x"}}))


def test_dotted_overrides(write_config):
    exp = load_experiment(write_config(), overrides=["engine.cache=off", "seeds=[0, 1]", "downstream.lr=1e-4"])
    assert exp.engine.cache == "off" and exp.seeds == [0, 1] and exp.downstream.lr == 1e-4
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_experiment(write_config(), overrides=["engine.cache"])


def test_custom_strategies_inline(write_config):
    custom = [{"name": "DA_L3SB", "family": "partial DAPT",
               "phases": [{"name": "phase1", "trainable": "head", "lr": 1e-4, "epochs": 1000},
                          {"name": "phase2", "trainable": "last:3", "lr": 1e-5, "epochs": 150}]}]
    exp = load_experiment(write_config(strategies=["DA_L3SB"], custom_strategies=custom))
    assert [p.epochs for p in exp.strategy("DA_L3SB").phases] == [2, 1]  # schedule applied


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.yaml")


def test_unknown_metric_and_missing_auc(write_config):
    with pytest.raises(ConfigError, match="Unknown metric 'aucc'"):
        load_experiment(write_config(**{"downstream.metrics": ["aucc"]}))
    with pytest.raises(ConfigError, match="must include 'auc'"):
        load_experiment(write_config(**{"downstream.metrics": ["accuracy"]}))


def test_external_folder_with_a_class_missing_is_refused(write_config, tmp_path):
    import numpy as np
    from PIL import Image

    from medapt.suite import plan_experiment

    def folder(root, classes):
        for c in classes:
            (root / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray((np.random.default_rng(i).random((16, 16)) * 255).astype("uint8")).save(root / c / f"{i}.png")
        return str(root)

    dev = {"format": "folder", "path": folder(tmp_path / "dev", ["glioma", "meningioma", "pituitary"])}
    ext = {"format": "folder", "path": folder(tmp_path / "ext", ["glioma", "meningioma"])}
    exp = load_experiment(write_config(**{"data.targets.tumor_type": {"dataset": dev, "external": ext}}))
    with pytest.raises(ConfigError, match=r"external set's classes \['glioma', 'meningioma'\] differ"):
        plan_experiment(exp)
