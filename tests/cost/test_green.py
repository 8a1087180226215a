"""Green Algorithms estimator, constant tables and the ``medapt energy`` command."""

from __future__ import annotations

import json

import pytest

from medapt.cli import main
from medapt.cost import (
    EnergyEstimate,
    get_hardware,
    green_algorithms,
    match_cpu_profile,
    match_gpu_profile,
    parse_runtime,
    table_versions,
)
from medapt.errors import CostError, UnknownNameError

# Mehmood et al., Appendix B (Table B1): total runtime (hours:minutes) and kWh per strategy,
# Green Algorithms with "TPU V2", 1 device, 35 GB memory, default PUE.
TABLE_B1 = [
    ("DA_L1SB", "154:37.967", 67.93),
    ("DA_L2SB", "159:39.529", 70.12),
    ("DA", "215:56.988", 94.86),
    ("DA_TF_F1B", "69:14.181", 30.41),
    ("DA_TF_F2B", "128:7.572", 56.28),
    ("DA_L1SB_PFT", "175:4.021", 76.90),
    ("DA_L2SB_PFT", "179:1.836", 78.64),
]


@pytest.mark.parametrize("strategy, runtime, kwh", TABLE_B1)
def test_table_b1_reproduced(strategy, runtime, kwh):
    """Mehmood et al., Appendix B: every kWh figure from its runtime, to ±0.02 kWh."""
    est = green_algorithms(parse_runtime(runtime), hardware="tpu-v2", table="v1.1", memory_gb=35)
    assert est.kwh == pytest.approx(kwh, abs=0.02), strategy
    assert est.power_w == pytest.approx(250 + 35 * 0.3725)
    assert est.pue == 1.67


def test_cli_reproduces_table_b1_row(capsys):
    """Mehmood et al., Appendix B, DA_L1SB: 67.93 kWh — through the command line."""
    rc = main(["energy", "--hardware", "tpu-v2", "--table", "v1.1", "--memory-gb", "35",
               "--runtime", "154:37.967", "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kwh"] == pytest.approx(67.93, abs=0.02)
    assert out["co2e_g"] == pytest.approx(out["kwh"] * 475)
    assert out["table"] == "v1.1" and out["hardware"] == "tpu-v2"


def test_cli_text_output_and_options(capsys):
    rc = main(["energy", "--hardware", "tesla-v100", "--count", "2", "--usage", "0.5", "--pue", "1",
               "--runtime", "10:00", "--table", "v1.1", "--carbon-intensity", "100"])
    assert rc == 0
    out = capsys.readouterr().out
    # 10 h × (2 × 300 W × 0.5) × 1 = 3.0 kWh, × 100 g = 300 g
    assert "kwh     3.00" in out and "co2e_g  300" in out


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["energy", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--hardware", "--table", "--count", "--memory-gb", "--pue", "--usage", "--runtime", "--format"):
        assert opt in out


def test_cli_list_and_errors(capsys):
    assert main(["energy", "--list", "--table", "v1.1", "--format", "json"]) == 0
    names = {h["name"] for h in json.loads(capsys.readouterr().out)}
    assert {"tpu-v2", "tpu-v3", "any-cpu", "any-gpu", "xeon-gold-6148"} <= names
    assert main(["energy", "--hardware", "tpu-v9", "--runtime", "1:00"]) == 2
    err = capsys.readouterr().err
    assert "Unknown hardware 'tpu-v9'" in err and "tpu-v2" in err and "medapt energy --list" in err
    assert main(["energy", "--hardware", "tpu-v2", "--runtime", "90 minutes"]) == 2
    assert "H:MM[.frac]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # --runtime missing: argparse usage error
        main(["energy", "--hardware", "tpu-v2"])
    assert e.value.code == 2


def test_tpu_v2_power_differs_between_tables():
    assert get_hardware("tpu-v2", "v1.1").tdp_per_core_w == 250
    assert get_hardware("tpu-v2", "latest").tdp_per_core_w == 280
    assert {"v1.1", "latest"} <= set(table_versions())
    a = green_algorithms(1.0, hardware="tpu-v2", table="latest", pue=1.0)
    assert a.kwh == pytest.approx(0.28)


@pytest.mark.parametrize("text, hours", [("1:30", 1.5), ("0:06", 0.1), ("154:37.967", 154 + 37.967 / 60),
                                         ("128:7.572", 128 + 7.572 / 60), (" 2:00 ", 2.0),
                                         ("2.5", 2.5), ("1.5", 1.5), ("3", 3.0), (" 0.25 ", 0.25)])
def test_parse_runtime(text, hours):
    assert parse_runtime(text) == pytest.approx(hours)


@pytest.mark.parametrize("text", ["", "1h", "1.5h", "-2.5", "1:60", "1:75.2", "-1:00", "a:b", "1:2:3", "1:"])
def test_parse_runtime_errors_show_expected_format(text):
    with pytest.raises(CostError, match=r"H:MM\[\.frac\]"):
        parse_runtime(text)


def test_unknown_hardware_lists_known_ones():
    with pytest.raises(UnknownNameError) as e:
        green_algorithms(1.0, hardware="tpu-v7", table="v1.1")
    msg = str(e.value)
    assert "tpu-v2" in msg and "tesla-v100" in msg and "any-cpu" in msg
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)


def test_unknown_table():
    with pytest.raises(UnknownNameError, match="v1.1"):
        green_algorithms(1.0, hardware="tpu-v2", table="v9")


@pytest.mark.parametrize("kw", [dict(count=0), dict(count=1.5), dict(usage=0), dict(usage=1.2),
                                dict(memory_gb=-1), dict(pue=0.9), dict(carbon_intensity=-5),
                                dict(runtime_h=float("nan"))])
def test_bad_numbers(kw):
    args = dict(runtime_h=1.0, hardware="tpu-v2")
    args.update(kw)
    with pytest.raises(CostError):
        green_algorithms(args.pop("runtime_h"), **args)


@pytest.mark.parametrize("spelling", ["tpu-v2", "TPU v2", "TPU2", "tpu_v2"])
def test_hardware_spellings(spelling):
    assert get_hardware(spelling, "v1.1").name == "tpu-v2"


def test_vendor_prefix_optional():
    assert get_hardware("NVIDIA Tesla T4", "v1.1").name == "tesla-t4"
    assert get_hardware("tesla-t4", "latest").name == "nvidia-tesla-t4"


def test_cpu_and_gpu_profiles():
    p, note = match_cpu_profile("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", "v1.1")
    assert p.name == "xeon-gold-6148" and p.tdp_per_core_w == 7.5 and "matched" in note
    p, note = match_cpu_profile("Intel(R) Xeon(R) Processor", "v1.1")
    assert p.name == "any-cpu" and "any-cpu" in note and "not in table" in note
    p, _ = match_cpu_profile("Intel(R) Core(TM) i9-10900KF CPU @ 3.70GHz", "v1.1")
    assert p.name == "core-i9-10900kf"
    g, _ = match_gpu_profile("Tesla V100-SXM2-16GB", "v1.1")
    assert g.name == "tesla-v100"
    g, note = match_gpu_profile("NVIDIA H100 80GB HBM3", "latest")
    assert g.name == "any-gpu" and "any-gpu" in note


def test_estimate_is_a_record_of_its_inputs():
    e = green_algorithms(2.0, hardware="any-cpu", count=4, memory_gb=10, table="v1.1")
    assert isinstance(e, EnergyEstimate)
    d = e.to_dict()
    assert d["kwh"] == pytest.approx(2.0 * (4 * 12.0 + 10 * 0.3725) * 1.67 / 1000)
    assert d["memory_power_w_per_gb"] == 0.3725 and d["count"] == 4 and d["kind"] == "cpu"


# ----------------------------------------------------------------------------- the default table


@pytest.mark.parametrize("strategy, runtime, kwh", TABLE_B1)
def test_default_table_reproduces_table_b1(strategy, runtime, kwh):
    """Without naming a table, the estimate is the paper's (Mehmood et al., Appendix B): the
    default is v1.1. (With the old default, latest, DA came out at 95.27 kWh instead of 94.86.)"""
    assert green_algorithms(parse_runtime(runtime), hardware="tpu-v2", memory_gb=35).kwh == pytest.approx(kwh, abs=0.02)


def test_latest_stays_available_and_differs():
    da = parse_runtime("215:56.988")  # Table B1, DA
    latest = green_algorithms(da, hardware="tpu-v2", memory_gb=35, table="latest")
    assert latest.table == "latest" and latest.kwh == pytest.approx(95.27, abs=0.01)
    assert latest.pue == 1.56 and latest.power_w == pytest.approx(280 + 35 * 0.08)


def test_cli_default_table_is_the_papers(capsys):
    assert main(["energy", "--hardware", "tpu-v2", "--memory-gb", "35", "--runtime", "215:56.988",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["table"] == "v1.1" and out["kwh"] == pytest.approx(94.86, abs=0.02)
    assert main(["energy", "--hardware", "tpu-v2", "--memory-gb", "35", "--runtime", "215:56.988",
                 "--table", "latest"]) == 0
    text = capsys.readouterr().out
    assert "kwh     95.27" in text and "table latest" in text
    with pytest.raises(SystemExit):
        main(["energy", "--help"])
    assert "v1.1 (default" in capsys.readouterr().out


def test_experiment_setting_lists_the_shipped_tables():
    """cost.energy_table in an experiment: default v1.1, and exactly the tables that ship."""
    import typing

    from pydantic import ValidationError

    from medapt.suite.experiment import CostSpec

    assert CostSpec().energy_table == "v1.1"
    assert set(typing.get_args(CostSpec.model_fields["energy_table"].annotation)) == set(table_versions())
    assert CostSpec(energy_table="latest").energy_table == "latest"
    with pytest.raises(ValidationError, match="energy_table"):
        CostSpec(energy_table="v2")


@pytest.mark.parametrize("table", [None, "latest"])
def test_meter_fallback_uses_and_names_the_table(monkeypatch, table):
    """When CodeCarbon cannot run, the meter's Green Algorithms estimate uses the configured table
    and costs.csv's energy_note says which."""
    from medapt.cost import EnergyTracker, PhaseMeter

    def fail(self):
        raise RuntimeError("no CodeCarbon here")

    monkeypatch.setattr(EnergyTracker, "_make_tracker", fail)
    kw = {} if table is None else {"energy_table": table}
    with PhaseMeter(strategy="DA", step="pretrain", phase="phase1", **kw) as m:
        pass
    row = m.row()
    assert row["energy_source"] == "estimated-green-algorithms"
    assert f"Green Algorithms estimate (table {table or 'v1.1'})" in row["energy_note"]
