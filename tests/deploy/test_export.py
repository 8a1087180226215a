"""`medapt export` / `medapt predict`: timm key names, ONNX against torch, predictions with reasons."""

import json

import numpy as np
import pytest
import torch

from medapt.cli import main
from medapt.deploy import export_model, predict
from medapt.errors import ConfigError
from medapt.models import Surgery, build, load, save_portable


@pytest.mark.parametrize("keep", ["all", "stride:8"])
def test_portable_roundtrip_any_cut(tmp_path, keep):
    model = build("resnet18", Surgery(keep=keep), n_outputs=2, image_size=32).eval()
    meta = save_portable(model, tmp_path / "m.safetensors", keep, image_size=32)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(load(tmp_path / "m.safetensors")(x), model(x))
    assert meta["whole_backbone"] is (keep == "all") and meta["cut_point"] == model.n_units


def test_timm_export_loads_in_timm(tiny_run, tmp_path):
    import timm

    res = export_model(tiny_run, "FTL", fmt="timm", out_file=tmp_path / "ftl.safetensors")
    from safetensors.torch import load_file

    keys = set(load_file(str(res.path)))
    assert "conv_stem.weight" in keys and "classifier.weight" in keys and not any(k.startswith("units.") for k in keys)
    meta = json.loads(res.metadata_path.read_text())
    assert meta["classes"] == ["meningioma", "glioma", "pituitary"] and meta["input_size"] == [3, 32, 32]
    n = meta["n_outputs"]
    t = timm.create_model("tf_efficientnet_lite0", pretrained=True, num_classes=n,
                          pretrained_cfg_overlay=dict(file=str(res.path), num_classes=n)).eval()
    ours = load(res.path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (t(x) - ours(x)).abs().max().item() < 1e-5


def test_onnx_matches_torch_with_dynamic_batch(tiny_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    res = export_model(tiny_run, "DA", fmt="onnx", out_dir=tmp_path)  # DA: backbone + the model1 MLP head
    assert res.path.name == "DA-seed0.onnx" and res.metadata["head_used"].startswith("model1")
    timm_res = export_model(tiny_run, "DA", fmt="timm", out_file=tmp_path / "da.safetensors")
    ref_model = load(timm_res.path)
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # exported with batch 2: the batch dimension is dynamic
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        got = sess.run(None, {"image": x.numpy()})[0]
        with torch.no_grad():
            ref = ref_model(x).numpy()
        assert got.shape == (batch, 3) and np.abs(got - ref).max() <= 1e-4
    assert res.metadata["onnx_check"]["max_abs_diff_vs_torch"] <= 1e-4


def test_export_of_absent_strategy_or_seed_lists_the_run(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match=r"'Nope' is not in run .*DA \(seeds 0\); FTL \(seeds 0\)"):
        export_model(tiny_run, "Nope", out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"seed 7 is not in run .*seeds \[0\]"):
        export_model(tiny_run, "DA", seed=7, out_dir=tmp_path)


def test_predict_scores_folders_and_reports_bad_files(tiny_run, tmp_path, capsys):
    from medapt.data.phantom_files import write_phantom_images

    model = export_model(tiny_run, "FTL", fmt="torchscript", out_dir=tmp_path / "exp").path
    files = write_phantom_images("tumor_type", tmp_path / "imgs", n=2, size=48)  # another size: resized
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    from PIL import Image

    Image.fromarray(np.zeros((40, 30, 3), np.uint8) + 7).save(tmp_path / "flat.png")  # constant colour image
    rows = predict(model, [tmp_path / "imgs", tmp_path / "flat.png", tmp_path / "missing.png"])
    by = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert len(rows) == len(files) + 3
    assert by["broken.png"]["status"] == "skipped" and "cannot decode" in by["broken.png"]["reason"]
    assert by["flat.png"]["status"] == "skipped" and "constant" in by["flat.png"]["reason"]
    assert by["missing.png"]["status"] == "skipped" and "no such file" in by["missing.png"]["reason"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == len(files)
    for r in ok:
        p = [r[f"p_{c}"] for c in ("meningioma", "glioma", "pituitary")]
        assert abs(sum(p) - 1) < 1e-5 and r["prediction"] in ("meningioma", "glioma", "pituitary")
        assert "resized 48x48 -> 32x32" in r["reason"]
    # the CLI writes the same rows as CSV
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model), str(tmp_path / "imgs"), "--out-file", str(out)]) == 0
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df.columns[:6]) == ["file", "frame", "status", "prediction", "score", "reason"]
    assert (df["status"] == "skipped").sum() == 1 and len(df) == len(files) + 1


def _write_dicom(path, pixels, window=None):
    """A minimal CT-like DICOM file (pydicom FileDataset), 16-bit, optionally with a window."""
    from pydicom import dcmwrite
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "P", "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    dcmwrite(str(path), ds, enforce_file_format=True)
    return path


def test_predict_dicom_rgb_and_timm_file_agree_with_onnx(tiny_run, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pydicom")
    from PIL import Image

    st = export_model(tiny_run, "DA", fmt="timm", out_dir=tmp_path).path
    ox = export_model(tiny_run, "DA", fmt="onnx", out_dir=tmp_path).path
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    _write_dicom(tmp_path / "in" / "scan.dcm", rng.integers(0, 2000, (40, 52)), window=(1000, 2000))
    _write_dicom(tmp_path / "in" / "noext", rng.integers(0, 4000, (32, 32)))  # DICOM without a suffix, no window
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), "RGB").save(tmp_path / "in" / "colour.jpg")
    (tmp_path / "in" / "cut.dcm").write_bytes((tmp_path / "in" / "scan.dcm").read_bytes()[:400])  # truncated
    files = [tmp_path / "in" / n for n in ("scan.dcm", "noext", "colour.jpg", "cut.dcm")]
    a, b = predict(st, files), predict(ox, files)
    assert [r["status"] for r in a] == ["ok", "ok", "ok", "skipped"] and "DICOM" in a[3]["reason"]
    for ra, rb in zip(a[:3], b[:3]):  # the same preprocessing feeds both runtimes
        assert ra["prediction"] == rb["prediction"] and abs(ra["score"] - rb["score"]) < 1e-4
    assert "grayscale replicated" in a[0]["reason"] and "grayscale" not in a[2]["reason"]
