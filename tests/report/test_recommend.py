"""The external-first ranking, the budgeted recommendation, whole costs, energy formatting and
family colours (issue 16, points 1–3), on the synthetic run directory of conftest.py.

By construction (conftest.py): external AUC = test − 0.08 (DA_L1SB − 0.15), so on tumor_type's
external set DA (0.87) > DA_TF_F1B (0.84) > ImageNet (0.82) > ImageNet_TF_F1B (0.77) > DA_L1SB (0.76);
whole kWh per seed: DA 0.5 + 2.0 + 0.001 (its feature extraction), DA_L1SB 0.5 + 1.0, DA_TF_F1B 0.4,
the ImageNet strategies 0 (no rows).
"""

from __future__ import annotations

import colorsys
import re

import pandas as pd
import pytest

from medapt.errors import ConfigError
from medapt.report import build_report, recommendation_table
from medapt.report.html import fmt_energy
from medapt.report.recommend import Budget, budget_of, parse_budget
from medapt.report.whole_cost import whole_costs


def _text(html: str) -> str:
    html = re.sub(r"<style>.*?</style>|<script>.*?</script>|<svg.*?</svg>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def run(tmp_path_factory, fake):
    return fake.make(tmp_path_factory.mktemp("rec") / "run")


def test_parse_budget_forms_and_errors():
    assert parse_budget("0.5kWh") == Budget(kwh=0.5)
    assert parse_budget("500 Wh") == Budget(kwh=0.5)
    assert parse_budget("2h") == Budget(hours=2.0)
    assert parse_budget("90min").hours == pytest.approx(1.5)
    assert parse_budget("2:30").hours == pytest.approx(2.5)
    assert parse_budget("1kWh,3h") == Budget(kwh=1.0, hours=3.0)
    assert not parse_budget(None)
    for bad in ("2.5", "lots", "-1kWh", "0h", "3 parsecs"):
        with pytest.raises(ConfigError, match="budget"):
            parse_budget(bad)
    # --budget overrides its own kind only; the config's other kind stays
    cfg = {"report": {"budget_kwh": 1.0, "budget_hours": 4.0}}
    assert budget_of(cfg, "2h") == Budget(kwh=1.0, hours=2.0)
    assert budget_of(cfg) == Budget(kwh=1.0, hours=4.0)


def test_budget_in_the_experiment_config():
    from medapt.suite.experiment import ReportSpec

    assert ReportSpec(budget_kwh=0.5).budget_kwh == 0.5
    with pytest.raises(ValueError):
        ReportSpec(budget_kwh=-1)


def test_best_by_external_auc_and_best_within_budget(run):
    rec = recommendation_table(run, "0.5kWh")
    t = rec[rec.task == "tumor_type"].set_index("role")
    assert t.loc["best", "strategy"] == "DA" and t.loc["best", "ranked_on"] == "external"
    assert t.loc["within budget", "strategy"] == "DA_TF_F1B"
    assert t.loc["within budget", "kwh"] == pytest.approx(0.4)
    assert t.loc["best", "kwh"] == pytest.approx(2.501)  # pre-training + its feature extraction
    s = t.loc["within budget", "sentence"]
    a, c = t.loc["within budget", "auc"], t.loc["best", "auc"]
    assert s.startswith(f"Within the budget of 0.500 kWh: DA_TF_F1B reaches external AUC {a:.3f} [")
    assert f"for 0.400 kWh; the best overall, DA, reaches {c:.3f} for 2.50 kWh (6.25× the cost) — the difference " in s
    assert re.search(r"is (not )?significant \(paired t-test over 2 seeds, p = [\d.e-]+; DeLong on one seed", s)
    assert s.endswith("(means over 2 seeds).") and t.loc["best", "n_seeds"] == 2
    # the disease task has no external set: ranked on the development test split, and it says so
    d = rec[rec.task == "disease"].set_index("role")
    assert d.loc["best", "ranked_on"] == "test" and "(this task has no external set)" in d.loc["best", "sentence"]


def test_no_strategy_meets_the_budget_names_the_cheapest(tmp_path, fake):
    run = fake.make(tmp_path / "run")
    c = pd.read_csv(run / "costs.csv", keep_default_na=False)
    extra = c[c.step == "extract"].copy()
    for s, kwh in (("ImageNet", 0.02), ("ImageNet_TF_F1B", 0.01)):  # give the baselines a cost too
        extra = extra.assign(strategy=s, kwh=kwh)
        c = pd.concat([c, extra])
    c.to_csv(run / "costs.csv", index=False)
    text = _text(build_report(run, budget="1Wh").read_text(encoding="utf-8"))
    assert "No strategy fits the budget of 0.00100 kWh: the cheapest is ImageNet_TF_F1B at 0.0100 kWh" in text
    rec = pd.read_csv(run / "recommendation.csv")
    row = rec[(rec.task == "tumor_type") & rec.role.str.startswith("cheapest (no strategy")]
    assert list(row.strategy) == ["ImageNet_TF_F1B"]


def test_report_leads_with_the_recommendation(run):
    html = build_report(run, budget="0.5kWh").read_text(encoding="utf-8")
    heads = re.findall(r"<h2>([^<]+)</h2>", html)
    assert heads[0] == "Recommendation"
    text = _text(html)
    assert "tumor_type — ranking by external AUC (head model1)" in text
    # ranking table: external AUC first, development AUC and dip beside it, rank 1 = DA
    assert re.search(r"rank strategy external AUC \[95% CI\] development AUC \[95% CI\] dip energy \(whole\)", text)
    assert re.search(r"1 DA 0\.8\d\d \[0\.\d+, 0\.\d+\] 0\.9\d\d \[0\.\d+, 0\.\d+\] \+0\.0\d\d 2\.50 kWh", text)
    # DeLong against the best on the external set as well as the development split
    assert "tumor_type — head model1 — external set" in text and "tumor_type — head model1 — development test split" in text
    assert (run / "recommendation.csv").exists()


def test_whole_cost_standalone_and_as_run(run, fake):
    c = pd.read_csv(run / "costs.csv", keep_default_na=False)
    wc = whole_costs(c, ["ImageNet", "DA", "DA_L1SB", "DA_TF_F1B"]).set_index("strategy")
    assert wc.loc["DA", "pretrain_kwh"] == pytest.approx(2.5) and wc.loc["DA", "extract_kwh"] == pytest.approx(0.001)
    assert wc.loc["DA_L1SB", "kwh"] == pytest.approx(1.5)  # the shared phase 1 counts in full standalone
    assert wc.loc["DA_L1SB", "run_kwh"] == pytest.approx(1.0)  # ... and once, for DA, as run
    assert wc.loc["ImageNet", "kwh"] == 0 and wc.loc["DA_TF_F1B", "trainable"] == 28_000
    # as run, summed over strategies and seeds, is the suite's total
    n_seeds = c.seed.nunique()
    assert (wc["run_kwh"] * n_seeds).sum() == pytest.approx(pd.to_numeric(c.kwh).sum())


def test_energy_is_never_printed_as_zero_point_zero_zero(run):
    assert fmt_energy(2.501) == "2.50 kWh" and fmt_energy(0.000123) == "0.123 Wh"
    assert fmt_energy(0.0123) == "0.0123 kWh" and fmt_energy(0) == "0 kWh" and fmt_energy(float("nan")) == "—"
    text = _text((run / "report.html").read_text(encoding="utf-8")) if (run / "report.html").exists() else \
        _text(build_report(run).read_text(encoding="utf-8"))
    assert not re.search(r"(?<![\d:.])0\.00 ", text) and "e-0" not in text  # (7:30:00.00 is a time)
    # the estimate-vs-measured note once, as a footnote
    assert text.count("A source counts as a measurement only if every") == 1
    assert text.count("RAPL not readable: permission denied") == 1


def test_summary_says_gain_for_a_gain(tmp_path, fake):
    run = fake.make(tmp_path / "run")
    m = pd.read_csv(run / "metrics.csv")
    ext = (m.strategy == "ImageNet") & (m.split == "external") & (m.metric == "auc")
    m.loc[ext, "value"] += 0.12  # ImageNet now does better on the external set than on the test split
    m.to_csv(run / "metrics.csv", index=False)
    text = _text(build_report(run).read_text(encoding="utf-8"))
    assert re.search(r"smallest for ImageNet \(-0\.0\d\d, a gain on the external set\)", text)
    assert "drop" not in text


def test_family_colours_share_a_hue():
    from medapt.report.style import family_of, strategy_colours

    assert family_of("DA_L1SB") == family_of("DA_L2SB") == "partial DAPT"
    assert family_of("DA_L1SB_PFT") == "hybrid DAPT" and family_of("my_custom_thing") == "other"
    col = strategy_colours(["ImageNet", "DA", "DA_L1SB", "DA_L2SB", "DA_TF_F1B", "DA_TF_F2B"])
    hue = {s: colorsys.rgb_to_hsv(*c[:3])[0] for s, c in col.items()}
    assert col["DA_L1SB"] != col["DA_L2SB"]  # members: shades of one hue
    assert abs(hue["DA_L1SB"] - hue["DA_L2SB"]) < 0.08 and abs(hue["DA_TF_F1B"] - hue["DA_TF_F2B"]) < 0.08
    assert abs(hue["DA_L1SB"] - hue["DA"]) > 0.1 and abs(hue["DA_TF_F1B"] - hue["DA"]) > 0.1


def test_cli_budget(tmp_path, capsys, fake):
    import json

    from medapt.cli import main

    run = fake.make(tmp_path / "run")
    assert main(["report", str(run), "--budget", "0.5kWh", "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["recommendation"] == str(run / "recommendation.csv")
    assert main(["report", str(run), "--budget", "2.5"]) == 2
    err = capsys.readouterr().err
    assert "budget '2.5'" in err and "0.5kWh" in err and "Traceback" not in err


@pytest.mark.slow
def test_interactive_pareto_is_embedded_and_offline(tmp_path, fake):
    pytest.importorskip("altair")
    pytest.importorskip("vl_convert")
    import html as _html

    run = fake.make(tmp_path / "run")
    page = build_report(run, budget="0.5kWh", interactive=True).read_text(encoding="utf-8")
    m = re.search(r'<iframe class="interactive"[^>]*srcdoc="([^"]*)"', page)
    assert m, "no interactive chart in the report"
    doc = _html.unescape(m.group(1))
    assert "vega-embed" in doc and '"DA_TF_F1B"' in doc and '"budget": 0.5' in doc
    assert not re.search(r"<script[^>]+src=|<link", doc)  # Vega inlined: nothing fetched
    # off by default
    assert "<iframe" not in build_report(run).read_text(encoding="utf-8")


def test_one_seed_budget_from_config(tmp_path, fake):
    """One seed: the CI is the bootstrap over test images and p is DeLong's; the budget comes from
    report.budget_kwh in config.yaml."""
    run = fake.make(tmp_path / "run", seeds=(0,))
    with open(run / "config.yaml", "a", encoding="utf-8") as f:
        f.write("report:\n  budget_kwh: 0.5\n")
    text = _text(build_report(run).read_text(encoding="utf-8"))
    assert "Budget: 0.500 kWh (report.budget_kwh / report.budget_hours in config.yaml)" in text
    rec = pd.read_csv(run / "recommendation.csv")
    row = rec[(rec.task == "tumor_type") & (rec.role == "within budget")].iloc[0]
    assert row.strategy == "DA_TF_F1B" and row.n_seeds == 1 and row.test_vs_best == "DeLong"
    assert re.search(r"— the difference is (not )?significant \(DeLong p = [\d.e-]+\) \(one seed\)\.$", row.sentence)
    assert row.ci_low < row.auc < row.ci_high  # bootstrap over the external images


def test_energy_budget_without_recorded_energy_is_not_judged(tmp_path, fake):
    run = fake.make(tmp_path / "run")
    c = pd.read_csv(run / "costs.csv", keep_default_na=False)
    c["kwh"] = float("nan")  # energy tracking switched off: the column is there, empty
    c["energy_source"] = "none"
    c.to_csv(run / "costs.csv", index=False)
    rec = recommendation_table(run, "0.5kWh")
    row = rec[(rec.task == "tumor_type") & (rec.role == "budget not judged")]
    assert len(row) == 1 and "recorded no energy per strategy" in row.sentence.iloc[0]
    assert not rec.role.str.startswith("cheapest (no strategy").any()  # never "nothing fits" on unknown costs
    best = rec[(rec.task == "tumor_type") & (rec.role == "best")].sentence.iloc[0]
    assert "energy not recorded" in best and "0 kWh" not in best


def test_the_python_api_returns_the_recommendation(run):
    """`medapt.open_run(dir).recommendation` is the report's table (what `medapt.run` returns too)."""
    from medapt import open_run

    rec = open_run(run).recommendation
    assert rec.equals(recommendation_table(run))
    assert rec.set_index(["task", "role"]).loc[("tumor_type", "best"), "strategy"] == "DA"
