"""PhaseMeter rows, energy sources, and costs.csv I/O."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from medapt.cost import COST_COLUMNS, SOURCES, EnergyTracker, PhaseMeter, rapl_status, read_costs_csv, write_costs_csv
from medapt.errors import CostError

# docs/run-directory.md, costs.csv
DOC_COLUMNS = ["strategy", "seed", "step", "phase", "seconds", "images", "flops_per_image", "flops_total", "kwh",
               "energy_source", "energy_note", "params_total", "params_trainable", "cached", "cache_note", "shared_by",
               "reused_seconds", "reused_flops", "standalone_seconds", "standalone_flops", "standalone_kwh", "resumes"]


def busy(seconds: float = 0.05) -> None:
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        sum(range(1000))


def test_columns_match_run_directory_doc():
    assert list(COST_COLUMNS) == DOC_COLUMNS


def test_phase_meter_row_with_codecarbon(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with PhaseMeter(strategy="DA_L1SB", step="pretrain", phase="phase2", seed=3) as m:
        m.set_params(100, 10)
        m.set_cache(True, "cut point 16")
        m.set_flops_per_image(50.0)
        m.add_images(8)
        m.add_images(8)
        m.add_flops(1000)
        busy()
    row = m.row()
    assert list(row) == DOC_COLUMNS
    assert row["seconds"] >= 0.05 and row["images"] == 16 and row["flops_total"] == 16 * 50 + 1000
    assert row["params_total"] == 100 and row["params_trainable"] == 10 and row["cached"] is True
    assert row["shared_by"] == "DA_L1SB" and row["seed"] == 3
    src = row["energy_source"]
    assert all(part in SOURCES for part in src.split("+"))
    assert src != "none" and row["energy_note"]
    assert row["kwh"] >= 0 and math.isfinite(row["kwh"])
    # honest: no RAPL here means the CPU figure must not be labelled as measured by RAPL
    if not rapl_status()[0]:
        assert "measured-rapl" not in src and "RAPL not readable" in row["energy_note"]
    assert "RAM" in row["energy_note"]  # RAM is always CodeCarbon's estimate and the note says so
    # CodeCarbon wrote nothing into the working directory
    assert list(tmp_path.iterdir()) == []


def test_track_energy_off():
    with PhaseMeter(strategy="A", step="head", phase="model1", track_energy=False) as m:
        pass
    row = m.row()
    assert row["energy_source"] == "none" and math.isnan(row["kwh"]) and "switched off" in row["energy_note"]


def test_fallback_to_green_algorithms_when_codecarbon_fails(monkeypatch):
    def boom(self):
        raise RuntimeError("no codecarbon here")

    monkeypatch.setattr(EnergyTracker, "_make_tracker", boom)
    with PhaseMeter(strategy="A", step="pretrain", phase="phase1") as m:
        busy()
    row = m.row()
    assert row["energy_source"] == "estimated-green-algorithms"
    assert row["kwh"] > 0
    assert "no codecarbon here" in row["energy_note"] and "profile" in row["energy_note"]


def test_exception_in_block_propagates_and_meter_stops():
    m = PhaseMeter(strategy="A", step="pretrain", phase="phase1", track_energy=False)
    with pytest.raises(ZeroDivisionError):
        with m:
            1 / 0
    assert m.row()["seconds"] >= 0


def _fake(name, **attrs):
    return type(name, (), attrs)()


@pytest.mark.parametrize(
    "hardware, device, expected",
    [
        (["RAM", ("CPU", "intel_rapl")], "cpu", "measured-rapl"),
        (["RAM", ("CPU", "cpu_load")], "cpu", "estimated-codecarbon-tdp"),
        (["RAM", ("CPU", "constant")], "cpu", "estimated-codecarbon-tdp"),
        (["RAM", ("CPU", "intel_rapl"), "GPU"], "cuda", "measured-rapl+measured-nvml"),
        (["RAM", ("CPU", "cpu_load"), "GPU"], "cuda", "estimated-codecarbon-tdp+measured-nvml"),
    ],
)
def test_source_label_follows_what_codecarbon_used(hardware, device, expected):
    """The label is read from CodeCarbon's tracker state; a TDP constant is never 'measured'."""
    objs = []
    for h in hardware:
        if isinstance(h, tuple):
            objs.append(_fake(h[0], _mode=h[1], _tdp=65, _model="Some CPU", _is_generic_tdp=False))
        else:
            objs.append(_fake(h))
    tracker = SimpleNamespace(_hardware=objs)
    data = SimpleNamespace(cpu_energy=1e-3, gpu_energy=2e-3, ram_energy=5e-4, energy_consumed=3.5e-3,
                           cpu_power=10.0, gpu_power=100.0, ram_power=5.0)
    et = EnergyTracker(device="cpu")
    et.device = __import__("torch").device(device)  # no CUDA needed to test the labelling
    reading = et._classify(tracker, data)
    assert reading.source == expected
    # a reader that only looks at the prefix must not take a partly estimated sum for a measurement
    assert reading.source.startswith("measured") == all(p.startswith("measured") for p in expected.split("+"))
    assert reading.kwh == pytest.approx(3.5e-3)
    if "estimated-codecarbon-tdp" in expected:
        assert "estimated by CodeCarbon" in reading.note


def test_costs_csv_roundtrip(tmp_path):
    rows = []
    for phase, cached in (("phase1", True), ("phase2", False)):
        with PhaseMeter(strategy="DA", step="pretrain", phase=phase, track_energy=False) as m:
            m.set_params(23_510_081, 2_049)
            m.set_cache(cached, "cut point 17" if cached else "phase trains the stem; no cache")
            m.set_flops_per_image(4e6)
            m.add_images(32)
        m.set_shared_by(["DA", "DA_L1SB", "DA_L2SB"])
        rows.append(m.row())
    path = tmp_path / "run" / "costs.csv"
    write_costs_csv(rows, path)
    assert [p.name for p in path.parent.iterdir()] == ["costs.csv"]  # no temporary left behind
    assert path.read_text().splitlines()[0] == ",".join(DOC_COLUMNS)
    df = read_costs_csv(path)
    assert list(df.columns) == DOC_COLUMNS and len(df) == 2
    assert df["cached"].tolist() == [True, False]
    assert df["params_total"].tolist() == [23_510_081] * 2
    assert df["shared_by"].iloc[0] == "DA;DA_L1SB;DA_L2SB"
    assert df["flops_total"].iloc[0] == pytest.approx(32 * 4e6)
    assert df["energy_source"].tolist() == ["none", "none"]


def test_costs_csv_errors(tmp_path):
    with pytest.raises(CostError, match="missing columns"):
        write_costs_csv([{"strategy": "A"}], tmp_path / "costs.csv")
    with pytest.raises(CostError, match="No costs table"):
        read_costs_csv(tmp_path / "nope.csv")
    pd.DataFrame({"strategy": ["A"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CostError, match="lacks columns"):
        read_costs_csv(tmp_path / "bad.csv")


def test_row_before_stop_and_bad_values():
    m = PhaseMeter(strategy="A", step="s", phase="p", track_energy=False)
    with pytest.raises(CostError):
        m.row()
    with pytest.raises(CostError):
        m.set_params(10, 20)
    with pytest.raises(CostError):
        m.add_flops(-1)


def test_codecarbon_log_goes_to_output_dir_only(tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    with PhaseMeter(strategy="A", step="s", phase="p", output_dir=tmp_path / "step") as m:
        busy(0.01)
    assert m.row()["energy_source"] != "none"
    assert (tmp_path / "step" / "emissions.csv").is_file()
    assert list(work.iterdir()) == []
