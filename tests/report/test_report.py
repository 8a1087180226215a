"""build_report on a synthetic run directory: figures, tables, summary, missing files, bad input."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from medapt.errors import MissingFieldError, RunDirError
from medapt.report import build_report, expand_shared, params_table, pareto_front, strategy_costs, time_energy_table

EXPECTED_FIGURES = {
    "auc_curves_tumor_type_model1", "auc_curves_tumor_type_linear",
    "auc_curves_disease_model1", "auc_curves_disease_linear",
    "boxplot_tumor_type_model1", "boxplot_tumor_type_linear",  # disease has no external split
    "pareto_tumor_type", "pareto_disease",
}


def _text(html: str) -> str:
    html = re.sub(r"<style>.*?</style>|<script>.*?</script>", "", html, flags=re.S)
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    html = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture(scope="module")
def built(tmp_path_factory, fake):
    run = fake.make(tmp_path_factory.mktemp("r") / "run")
    out = build_report(run)
    return run, out, out.read_text(encoding="utf-8")


def test_all_figures_written_and_embedded(built):
    run, out, html = built
    assert out == run / "report.html"
    pngs = {p.stem: p for p in (run / "figures").glob("*.png")}
    assert set(pngs) == EXPECTED_FIGURES
    # every figure inline as vector SVG, its PNG at >= 200 dpi in figures/
    blocks = re.findall(r'<figure class="medapt-fig" data-file="figures/([^"]+)">(<svg.*?</svg>)', html, flags=re.S)
    assert sorted(name for name, _ in blocks) == sorted(f"{n}.png" for n in EXPECTED_FIGURES)
    from PIL import Image

    for name, svg in blocks:
        assert "<path" in svg and "<text" in svg  # drawn content, text kept as text
        with Image.open(run / "figures" / name) as im:
            assert im.format == "PNG" and min(im.info["dpi"]) >= 199.9
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "two inline SVGs share an element id"
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'<link|<script\s+src|src="(?!data:)|href="(?!#)|url\((?!#)', html)  # only in-page references
    # atomic writes leave no temporary files behind
    from medapt.atomic import is_temporary

    assert not list(run.rglob("*.tmp")) and not [p for p in run.rglob("*") if is_temporary(p)]


def test_plain_summary_names_computed_pareto_set(built, fake):
    _, _, html = built
    text = _text(html)
    for task in ("tumor_type", "disease"):
        m = re.search(rf"{task} \(head model1\): .*?by energy: ([^;]+);", text)
        assert m, text[:2000]
        assert {s.strip() for s in m.group(1).split(",")} == fake.PARETO_BY_KWH
    assert re.search(r"largest for DA_L1SB \(\+0\.1[45]\d, a loss on the external set\)", text)  # 0.15 by construction
    assert "synthetic phantom data" in text  # config says reader: phantom
    assert "estimated-green-algorithms" in text and "not measurements" in text


def test_tables(built):
    _, _, html = built
    text = _text(html)
    # Table 1: trainable per phase from costs.csv; totals of non-pretrained strategies from inference.csv
    assert re.search(r"DA_L1SB 4,010,000 1,281 900,000", text)
    assert re.search(r"ImageNet_TF_F1B 28,500 — —", text)
    assert "Counted by PyTorch" in text and "medapt params --keras" in text
    # Table B1: a shared phase counts for both strategies; estimates are labelled as such
    assert re.search(r"DA_L1SB total 27,000 7:30:00\.00 1\.50 kWh", text)
    assert "estimated-green-algorithms (estimate)" in text
    assert "measured-rapl (estimate)" not in text
    # summary table with two seeds: mean ± s.d. and CI; threshold from config.yaml (0.85)
    assert "±" in text and "epoch to 0.85 (test)" in text
    assert "95% t-interval over seeds of the mean (1 degrees of freedom)" in text and "bootstrap" not in text
    # time to the threshold: censored median and how many seeds reached it
    assert "counted as censored" in text and "reached 2 of 2 seeds" in text
    assert "Inference cost" in text and "latency_ms_cpu" in text
    assert "deadbeef" in text  # environment.json
    assert "DeLong p" in text and "t-test p" in text


def test_energy_table_named_where_estimates_are_shown(tmp_path, fake):
    """Table B1's note and the summary name the Green Algorithms table: from the config's
    cost.energy_table, else (older run directories) from the energy_note of costs.csv."""
    run = fake.make(tmp_path / "run")
    with open(run / "config.yaml", "a", encoding="utf-8") as f:
        f.write("cost:\n  track_energy: true\n  energy_table: v1.1\n")
    text = _text(build_report(run).read_text())
    assert ("Green Algorithms estimates ( estimated-green-algorithms ) use constant table v1.1 (the constants of "
            "Mehmood et al.'s Table B1), from cost.energy_table in config.yaml") in text
    assert "Green Algorithms figures use constant table v1.1." in text
    # an older run: no setting in config.yaml, the table named only in the notes
    run2 = fake.make(tmp_path / "run2")
    c = pd.read_csv(run2 / "costs.csv", keep_default_na=False)
    c.loc[c.energy_source == "estimated-green-algorithms", "energy_note"] = (
        "CodeCarbon could not run (x); Green Algorithms estimate (table latest): any-cpu")
    c.to_csv(run2 / "costs.csv", index=False)
    text = _text(build_report(run2).read_text())
    assert "use constant table latest (the calculator's later constants, not those of Mehmood" in text
    assert "from energy_note in costs.csv" in text


def test_costs_missing_says_so(tmp_path, fake):
    run = fake.make(tmp_path / "run", costs=False, inference=False, predictions=False, seeds=(0,))
    html = build_report(run).read_text()
    text = _text(html)
    assert "costs.csv is missing" in text
    assert "predictions.csv is missing" in text and "inference.csv is missing" in text
    assert "Pareto-optimal strategies (no other" not in text and "±" not in text  # one seed: no spread
    assert not list((run / "figures").glob("pareto_*"))
    assert len(list((run / "figures").glob("auc_curves_*"))) == 4


def test_one_seed_ci_from_test_images(tmp_path, fake):
    """With one seed the final AUC's [95% CI] comes from a bootstrap over the test images of
    predictions.csv, and equals bootstrap_auc_ci on the same predictions."""
    from medapt.evaluate import bootstrap_auc_ci

    run = fake.make(tmp_path / "run", seeds=(0,))
    text = _text(build_report(run).read_text())
    assert "percentile bootstrap over test images (2,000 class-stratified resamples" in text
    assert "t-interval" not in text and "±" not in text
    p = pd.read_csv(run / "predictions.csv")
    g = p[(p.strategy == "DA") & (p["head"] == "model1") & (p.task == "tumor_type") & (p.split == "test")]
    b = bootstrap_auc_ci(g["label"].to_numpy(), g[["score_0", "score_1", "score_2"]].to_numpy(), "multiclass",
                         n_boot=2000, seed=0)
    assert f"[{b['ci_low']:.3f}, {b['ci_high']:.3f}]" in text
    # with a patient column, patients are resampled
    p["patient"] = p["index"] // 3
    p.to_csv(run / "predictions.csv", index=False)
    assert "percentile bootstrap over patients" in _text(build_report(run).read_text())


def test_time_to_threshold_counts_seeds_that_never_reached_it(tmp_path, fake):
    """DA reaches the threshold in 1 of 3 seeds: "not reached (1 of 3)", never a mean of the fast seed."""
    run = fake.make(tmp_path / "run", seeds=(0, 1, 2))
    m = pd.read_csv(run / "metrics.csv")
    slow = (m.strategy == "DA") & (m.seed > 0) & (m.metric == "auc")
    m.loc[slow, "value"] = m.loc[slow, "value"].clip(upper=0.80)  # seeds 1 and 2 never reach 0.85
    m.to_csv(run / "metrics.csv", index=False)
    html = build_report(run).read_text()
    row = re.search(r"<tr class=\"[^\"]*\"><td class=\"l\">DA</td>.*?</tr>", html.split("tumor_type — head linear")[1]).group(0)
    assert "not reached<br><span class=note>reached 1 of 3 seeds</span>" in row
    assert "Fastest to reach AUC 0.85" in _text(html) and "counted as censored" in _text(html)


def test_only_costs_and_custom_out(tmp_path, fake):
    run = fake.make(tmp_path / "run")
    (run / "metrics.csv").unlink()
    out = build_report(run, tmp_path / "elsewhere" / "r.html")
    text = _text(out.read_text())
    assert out.exists() and "metrics.csv is missing" in text
    assert "Table B1" in text and "DA_TF_F1B total" in text


def test_bad_run_dirs(tmp_path, fake):
    with pytest.raises(RunDirError, match="does not exist"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a medapt run directory"):
        build_report(tmp_path / "empty")
    run = fake.make(tmp_path / "run")
    pd.read_csv(run / "costs.csv").drop(columns=["kwh"]).to_csv(run / "costs.csv", index=False)
    with pytest.raises(MissingFieldError, match=r"costs\.csv lacks column\(s\) \['kwh'\]"):
        build_report(run)
    assert not (run / "report.html").exists()


# ----------------------------------------------------------------------------- cost helpers


def test_pareto_front_hand_example():
    #            cheap+bad  mid+good  dear+best  dominated  tie-with-mid  NaN
    cost = [0.0, 1.0, 3.0, 2.0, 1.0, float("nan")]
    auc = [0.80, 0.90, 0.95, 0.85, 0.90, 0.99]
    assert pareto_front(cost, auc).tolist() == [True, True, True, False, True, False]


def test_shared_steps_count_for_every_strategy(tmp_path, fake):
    KWH = fake.KWH
    run = fake.make(tmp_path / "run", seeds=(0, 1))
    costs = pd.read_csv(run / "costs.csv", keep_default_na=False)
    ex = expand_shared(costs)
    assert set(ex[ex.phase == "phase1"].strategy) == {"DA", "DA_L1SB", "DA_TF_F1B"}
    sc = strategy_costs(costs, pd.read_csv(run / "inference.csv"), ["ImageNet", "DA", "DA_L1SB", "DA_TF_F1B"]).set_index("strategy")
    # DA_L1SB = shared phase 1 (0.5) + its own phase 2 (1.0), per seed; mean over 2 seeds
    assert sc.loc["DA_L1SB", "kwh"] == pytest.approx(KWH["DA", "phase1"] + KWH["DA_L1SB", "phase2"])
    assert sc.loc["DA", "kwh"] == pytest.approx(KWH["DA", "phase1"] + KWH["DA", "phase2"])
    assert sc.loc["ImageNet", "kwh"] == 0 and sc.loc["ImageNet", "params"] == 4_007_548
    t1 = params_table(costs, None, ["DA", "DA_L1SB"]).set_index("strategy")
    assert t1.loc["DA_L1SB", "phase1 trainable"] == 1_281 and t1.loc["DA", "phase2 trainable"] == 3_960_000
    b1 = time_energy_table(costs, ["DA"])
    tot = b1[(b1.strategy == "DA_L1SB") & (b1.phase == "total")].iloc[0]
    assert tot.kwh == pytest.approx(1.5) and tot.n_seeds == 2
    assert b1[(b1.strategy == "DA") & (b1.phase == "phase1")].n_sharing.item() == 2


def test_is_measured_needs_every_part_measured():
    from medapt.report import is_measured

    assert is_measured("measured-rapl") and is_measured("measured-rapl+measured-nvml")
    assert not is_measured("estimated-codecarbon-tdp+measured-nvml")
    assert not is_measured("measured-nvml+estimated-codecarbon-tdp")
    assert not is_measured("estimated-green-algorithms") and not is_measured("")


def test_report_says_when_a_dataset_has_no_patient_ids(tmp_path, fake):
    """From config.yaml alone: a folder dataset without patient_regex is split slice-level."""
    run = fake.make(tmp_path / "run")
    cfg = ("name: fake-suite\nstrategies: [ImageNet, DA, DA_L1SB, DA_TF_F1B, ImageNet_TF_F1B]\n"
           "evaluation:\n  threshold: 0.85\n"
           "data:\n  source: {format: phantom, task: grade}\n  targets:\n"
           "    tumor_type:\n      dataset: {format: folder, path: kaggle/Training}\n"
           "      external: {format: folder, path: other}\n"
           "    disease:\n      dataset: {format: folder, path: hms, patient_regex: '^(\\d+)_'}\n")
    (run / "config.yaml").write_text(cfg, encoding="utf-8")
    text = _text(build_report(run).read_text())
    assert ("Dataset tumor_type (format folder) has no patient ids (no patient_regex in config.yaml): its "
            "train/test split is slice-level") in text
    assert "Dataset disease" not in text and "Dataset source" not in text
    assert "Dataset tumor_type/external" not in text  # an external set is never split


def test_slice_level_datasets_rules():
    from medapt.report.sections import _slice_level_datasets

    def names(data):
        return [s.split("<b>")[1].split("</b>")[0] for s in _slice_level_datasets({"data": data})]

    assert names({"source": {"format": "csv", "path": "x.csv"}}) == ["source"]
    assert names({"source": {"format": "csv", "path": "x.csv", "patient_column": "pid"}}) == []
    assert names({"source": {"format": "medmnist", "path": "x.npz"}}) == []  # keeps the published split
    assert names({"source": {"format": "medmnist", "path": "x.npz", "use_published_split": False}}) == ["source"]
    assert names({"source": {"format": "dicom", "path": "d"}, "targets": {"t": {"dataset": {"format": "cemri"}}}}) == []
    assert names({"targets": {"t": {"dataset": {"format": "folder", "use_published_split": True}}}}) == ["t"]
    assert _slice_level_datasets(None) == [] and _slice_level_datasets({"data": "odd"}) == []


def test_report_is_the_registered_sections_in_order(tmp_path, fake):
    """A new kind adds a section by registering it; the others are untouched."""
    from medapt.report.sections import SECTIONS, section

    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 3), "red").save(buf, format="PNG")

    @section("test-extra", 65)  # between the comparisons (60) and the parameters (70)
    def extra(ctx):  # the section API of before the templates: an HTML string, html.py's helpers
        return ("<h2>Extra section</h2><p>rows: %d</p>" % len(ctx.rf.metrics)
                + ctx.figs.add("extra_png", buf.getvalue(), "a PNG figure the old way"))

    try:
        html = build_report(fake.make(tmp_path / "run")).read_text(encoding="utf-8")
    finally:
        SECTIONS._items.pop("test-extra")
    assert '<img src="data:image/png;base64,' in html and 'data-file="figures/extra_png.png"' in html
    heads = re.findall(r"<h2>([^<]+)</h2>", html)
    # no own-head rows in this run: the fine-tuning section stays out
    assert heads == ["Recommendation", "Summary", "Downstream results", "AUC vs epoch",
                     "Robustness: development vs external", "AUC vs cost", "Statistical comparisons", "Extra section",
                     "Parameters per phase (Table 1)", "Whole cost per strategy", "Time and energy per phase (Table B1)",
                     "Inference cost", "Run", "Notes"]
