"""A tiny experiment on phantom data: the real pipeline at test size."""

import pytest
import yaml


def tiny_config(tmp_path, **changes) -> dict:
    cfg = {
        "name": "tiny",
        "seeds": [0],
        "backbone": {"name": "tf_efficientnet_lite0", "weights": "embedded"},
        "strategies": ["ImageNet", "DA", "DA_L1SB", "DA_TF_F1B", "ImageNet_TF_F1B"],
        "schedule": {"epochs": {"phase1": 2, "phase2": 1, "phase3": 1}},
        "engine": {"device": "cpu"},
        "data": {
            "image_size": 32,
            "root": str(tmp_path / "data"),
            "split": {"train": 0.75, "val": 0.0, "test": 0.25, "seed": 0},
            "source": {"format": "phantom", "task": "grade", "n_per_class": 8},
            "targets": {
                "tumor_type": {
                    "dataset": {"format": "phantom", "task": "tumor_type", "n_per_class": 8},
                    "external": {"format": "phantom", "task": "tumor_type", "n_per_class": 4, "shift": True},
                },
            },
        },
        "downstream": {"heads": ["model1"], "epochs": 3, "lr": 1e-3, "batch_size": 16},
        "cost": {"track_energy": False, "inference": True, "inference_repeats": 1},
    }
    for key, value in changes.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


@pytest.fixture
def write_config(tmp_path):
    def write(name="exp.yaml", **changes):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tiny_config(tmp_path, **changes)))
        return path

    return write
