"""BiT-HyperRule's resolution (Phase.resolution): training at random crops of the resized image,
validation and the own head's evaluation resized to the crop size; the planner sets it from the
image area (< 96² → resize 160 / crop 128, else 512 / 480); unset, step keys are unchanged."""

import logging

import numpy as np
import pytest
import torch

from medapt.errors import ConfigError
from medapt.models import build
from medapt.models.model import UnitModel
from medapt.strategies import STRATEGIES, Phase, get
from medapt.suite.study import bit_phase
from medapt.train import EngineConfig, train_phase


class ShapeSpy:
    """Records (grad enabled, input H×W) at every UnitModel.forward_from call (training and prediction)."""

    def __init__(self, monkeypatch, where=None):
        self.calls, self.where = [], where
        forward = UnitModel.forward_from

        def spy(model, x, start):
            self.calls.append((self.where[0] if self.where else None, torch.is_grad_enabled(), tuple(x.shape[-2:])))
            return forward(model, x, start)

        monkeypatch.setattr(UnitModel, "forward_from", spy)


def test_resolution_is_validated_and_left_out_of_the_key_when_unset():
    d = Phase("p", "all", 0.1, 1).to_dict()
    assert "resolution" not in d  # existing step hashes stay
    p = Phase("p", "all", 0.1, 1, resolution={"resize": 40, "crop": 24})
    assert p.resolution == (40, 24) and p.to_dict()["resolution"] == [40, 24] and Phase(**p.to_dict()) == p
    with pytest.raises(ConfigError, match="resize >= crop"):
        Phase("p", "all", 0.1, 1, resolution=[24, 40])
    with pytest.raises(ConfigError, match=r"\[resize, crop\]"):
        Phase("p", "all", 0.1, 1, resolution=[24])


@pytest.mark.parametrize("size, expected", [(95, (160, 128)), (96, (512, 480)), (64, (160, 128)), (224, (512, 480))])
def test_bit_phase_sets_the_resolution_at_the_96_squared_boundary(size, expected):
    ft = STRATEGIES.get("FTL").target_phases[0]
    assert bit_phase(ft, 1000, size).resolution == expected
    assert bit_phase(ft, 1000, size, resolution=False).resolution is None


def test_engine_trains_on_crops_and_validates_at_the_crop_size(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3, 32, 32)).astype(np.float32)
    y = (x[:, 0].mean(axis=(1, 2)) > 0).astype(np.int64)
    y[:2] = [0, 1]
    spy = ShapeSpy(monkeypatch)
    phase = Phase("finetune", "last:1", 0.01, 1, batch_size=4, data="target", monitor="loss", resolution=(40, 24))
    torch.manual_seed(0)
    m = build("resnet10t", get("DA").surgery, n_outputs=1)
    with caplog.at_level(logging.INFO, logger="medapt"):
        r = train_phase(m, phase, x, y, task_type="binary", workdir=tmp_path, val_indices=np.arange(8, 12),
                        indices=np.arange(8), cfg=EngineConfig(progress=False))
    train = [s for _, g, s in spy.calls if g]
    val = [s for _, g, s in spy.calls if not g]
    assert train and set(train) == {(24, 24)}  # 2 training batches of random 24² crops
    assert val and set(val) == {(24, 24)}  # validation resized to the crop size
    assert not r.cached and "resize(40)+crop(24)+hflip" in r.augment
    assert "frozen-prefix cache is off" in caplog.text
