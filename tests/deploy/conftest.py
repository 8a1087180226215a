"""One tiny run (phantom data, 32 px, one epoch per phase) shared by the deploy tests."""

import pytest
import yaml


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory):
    from medapt.suite import run_experiment

    root = tmp_path_factory.mktemp("deploy")
    cfg = {
        "name": "deploy",
        "seeds": [0],
        "backbone": {"name": "tf_efficientnet_lite0", "weights": "embedded"},
        "strategies": ["DA", "FTL"],  # DA: source phases + MLP heads; FTL: fine-tuned with its own head
        "schedule": {"epochs": {"phase1": 1, "phase2": 1, "finetune": 1}},
        "engine": {"device": "cpu"},
        "data": {
            "image_size": 32,
            "root": str(root / "data"),
            "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
            "source": {"format": "phantom", "task": "grade", "n_per_class": 6},
            "targets": {"tumor_type": {"dataset": {"format": "phantom", "task": "tumor_type", "n_per_class": 6}}},
        },
        "downstream": {"heads": ["model1"], "epochs": 2, "lr": 1e-3, "batch_size": 16},
        "cost": {"track_energy": False, "inference": False},
    }
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_experiment(path, out=root / "run", report=False, progress=False)
    return root / "run"
