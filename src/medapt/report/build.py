"""``build_report``: one self-contained HTML report (plus ``figures/*.png``) from a run directory.

The report is rebuilt from the run directory's files alone (docs/run-directory.md), never by
re-running anything (DESIGN §11). Sections whose input file is missing say so.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MedaptError
from ..evaluate.bootstrap import bootstrap_auc_ci
from ..evaluate.delong import delong_test
from ..evaluate.summary import aggregate_seeds, censored_median, external_dip, paired_ttest, summarize
from . import figures as F
from ._io import RunFiles, atomic_write_bytes, load_run
from .costs import is_measured, params_table, pareto_front, strategy_costs, time_energy_table

__all__ = ["build_report", "DEFAULT_THRESHOLD"]

log = logging.getLogger(__name__)
DEFAULT_THRESHOLD = 0.9  # Mehmood et al.

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1200px;
     padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.2rem}h3{margin-top:1.4rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right;vertical-align:top;white-space:nowrap}
td.l{white-space:normal}.scroll{overflow-x:auto}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.total td{font-weight:600;background:#fafafa}
.estimate{color:#9a4d00}.measured{color:#1b6e20}.best{font-weight:700}
.missing{background:#fff4e5;border-left:4px solid #f0a020;padding:.4rem .8rem}
.note{color:#555;font-size:.85rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#444}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem}
.summary{background:#eef5ff;border-left:4px solid #3a78c2;padding:.5rem 1rem}
"""

# counts the <img> elements that decoded (naturalWidth > 0) and writes it into the page, so a
# headless browser's --dump-dom shows whether every figure rendered
_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  var el = document.getElementById('render-check');
  el.setAttribute('data-loaded', ok); el.setAttribute('data-total', imgs.length);
  el.textContent = ok + ' of ' + imgs.length + ' figures rendered in this browser.';
});
</script>
"""


def _e(x) -> str:
    return html.escape(str(x))


def _slug(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9_.-]+", "-", str(p)).strip("-") or "x" for p in parts)


def _fmt(v, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if float(v).is_integer() and abs(v) >= 1000:
            return f"{int(v):,}"
        if v == 0:
            return "0"
        if abs(v) < 10 ** -digits or abs(v) >= 1e6:
            return f"{v:.{digits}g}" if abs(v) < 1e6 else f"{v:.4g}"
        return f"{v:.{digits}f}"
    return str(v)


def _hms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "—"
    s = float(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{sec:05.2f}"


def _table(df: pd.DataFrame, left: tuple[str, ...] = (), fmt: dict | None = None, row_class=None,
           cell_class=None) -> str:
    fmt = fmt or {}
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in df.columns)
    body = []
    for i, (_, r) in enumerate(df.iterrows()):
        cls = row_class(r) if row_class else ""
        cells = []
        for c in df.columns:
            v = r[c]
            txt = fmt[c](v) if c in fmt else _e(_fmt(v))
            extra = cell_class(c, r) if cell_class else ""
            klass = " ".join(k for k in ("l" if c in left else "", extra) if k)
            cells.append(f'<td class="{klass}">{txt}</td>')
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _missing(msg: str) -> str:
    return f'<p class="missing">{_e(msg)}</p>'


class _Figures:
    """Writes each PNG atomically under ``figures/`` and returns its embedded <figure>."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[Path] = []

    def add(self, name: str, png: bytes, caption: str) -> str:
        path = self.folder / f"{name}.png"
        atomic_write_bytes(path, png)
        self.written.append(path)
        data = base64.b64encode(png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}" '
                f'data-file="figures/{_e(path.name)}"><figcaption>{_e(caption)}</figcaption></figure>')


def _threshold(config: dict | None) -> float:
    for section in ("evaluation", "downstream", "evaluate"):
        sec = (config or {}).get(section)
        if isinstance(sec, dict) and isinstance(sec.get("threshold"), (int, float)):
            return float(sec["threshold"])
    t = (config or {}).get("threshold")
    return float(t) if isinstance(t, (int, float)) else DEFAULT_THRESHOLD


def _energy_table(rf: RunFiles) -> tuple[str | None, str]:
    """The Green Algorithms constant table of the run's estimates, and where that was read.

    From ``cost.energy_table`` in ``config.yaml``; for a run directory written before that
    setting existed, from the ``(table …)`` its ``energy_note`` names.
    """
    cost = (rf.config or {}).get("cost")
    if isinstance(cost, dict) and cost.get("energy_table"):
        return str(cost["energy_table"]), "cost.energy_table in config.yaml"
    if rf.costs is not None and "energy_note" in rf.costs:
        found = sorted({m for n in rf.costs["energy_note"].astype(str) for m in re.findall(r"\(table ([\w.]+)\)", n)})
        if found:
            return ", ".join(found), "energy_note in costs.csv"
    return None, ""


def _table_sentence(rf: RunFiles) -> str:
    table, where = _energy_table(rf)
    if table is None:
        return "The Green Algorithms constant table of any estimate is not recorded in this run directory."
    paper = {"v1.1": " (the constants of Mehmood et al.'s Table B1)",
             "latest": " (the calculator's later constants, not those of Mehmood et al.'s Table B1)"}.get(table, "")
    return (f"Green Algorithms estimates (<code>estimated-green-algorithms</code>) use constant table "
            f"<b>{_e(table)}</b>{paper}, from {_e(where)}.")


def _slice_level_datasets(config: dict | None) -> list[str]:
    """Datasets of the run's ``config.yaml`` that are split without patient ids, in words.

    Only the datasets that get a train/test split (the source and each target's ``dataset``; an
    external set is never split). A MedMNIST file keeps its published split by default.
    """
    from ..data.spec import patient_id_source

    data = (config or {}).get("data")
    if not isinstance(data, dict):
        return []
    named = [("source", data.get("source"))]
    targets = data.get("targets")
    if isinstance(targets, dict):
        named += [(str(task), t.get("dataset")) for task, t in targets.items() if isinstance(t, dict)]
    out = []
    for name, spec in named:
        if not isinstance(spec, dict) or patient_id_source(spec) is not None:
            continue
        fmt = spec.get("format")
        if fmt == "medmnist" and spec.get("use_published_split", True):
            continue
        if fmt == "folder" and spec.get("use_published_split"):
            out.append(f"dataset <b>{_e(name)}</b> (format folder) keeps its published split, and has no patient ids "
                       "(no <code>patient_regex</code>) to check that the split does not put one patient's slices "
                       "on both sides.")
            continue
        fix = {"folder": "patient_regex", "csv": "patient_column or patient_regex"}.get(fmt)
        out.append(f"dataset <b>{_e(name)}</b> (format {_e(fmt)}) has no patient ids"
                   + (f" (no <code>{_e(fix)}</code> in config.yaml)" if fix else "")
                   + ": its train/test split is slice-level, so slices of one patient can be in both, and its test "
                     "AUCs may be optimistic.")
    return out


def _strategy_order(rf: RunFiles) -> list[str]:
    names: list[str] = []
    cfg_strats = (rf.config or {}).get("strategies")
    if isinstance(cfg_strats, list):
        names += [s if isinstance(s, str) else str(s.get("name", "")) if isinstance(s, dict) else str(s) for s in cfg_strats]
    for df in (rf.metrics, rf.costs, rf.inference):
        if df is not None and "strategy" in df:
            names += list(df["strategy"].astype(str))
    return [n for n in dict.fromkeys(names) if n]


#: resamples of the one-seed bootstrap CI over test images
N_BOOT = 2000


def _image_bootstrap(pred: pd.DataFrame | None) -> dict:
    """(strategy, head, task, split) → :func:`bootstrap_auc_ci` of the final-epoch predictions.

    For a run with one seed: the interval then comes from the test images (from the patients
    when ``predictions.csv`` has a ``patient`` column), not from seeds.
    """
    out: dict = {}
    if pred is None or pred.empty:
        return out
    score_cols = [c for c in pred.columns if c.startswith("score_")]
    label_cols = [c for c in pred.columns if re.fullmatch(r"label_\d+", c)]
    for key, g in pred.groupby(["strategy", "head", "task", "split"], sort=False):
        key = tuple(str(k) for k in key)
        cols = [c for c in score_cols if g[c].notna().all()]
        lcols = [c for c in label_cols if g[c].notna().any()]
        try:
            if lcols:
                y, task_type = g[lcols].to_numpy(float), "multilabel"
            else:
                y, task_type = g["label"].to_numpy(), "binary" if len(cols) == 2 else "multiclass"
            groups = g["patient"].to_numpy(dtype=object) if "patient" in g else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[key] = bootstrap_auc_ci(y, g[cols].to_numpy(float), task_type, groups=groups, n_boot=N_BOOT, seed=0)
        except (MedaptError, ValueError) as exc:
            log.info("report: no bootstrap CI for %s: %s", key, exc)
    return out


def _time_cell(median, reached, n, digits) -> str:
    """Censored median time to the threshold and how many seeds reached it."""
    txt = f"{median:.{digits}f}" if np.isfinite(median) else "not reached"
    return txt if n == 1 else f"{txt}<br><span class=note>reached {int(reached)} of {int(n)} seeds</span>"


def _cell(mean, std, lo, hi, n, digits=3) -> str:
    if not np.isfinite(mean):
        return "—"
    txt = f"{mean:.{digits}f}"
    if n > 1 and np.isfinite(std):
        txt += f" ± {std:.{digits}f}"
        if np.isfinite(lo):
            txt += f"<br><span class=note>[{lo:.{digits}f}, {hi:.{digits}f}]</span>"
    return txt


# ----------------------------------------------------------------------------- sections


def _summary_tables(rf: RunFiles, order: list[str], threshold: float) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """Per task and head: the summary table. Returns (html, summary, aggregated)."""
    summ = summarize(rf.metrics, threshold=threshold)
    if summ.empty:
        return _missing("metrics.csv has no AUC rows, so there is nothing to summarise."), summ, summ
    agg = aggregate_seeds(summ[["strategy", "seed", "head", "task", "split", "best_auc", "final_auc",
                                "epoch_to_threshold", "seconds_to_threshold"]])
    dip = external_dip(summ)
    dip_agg = aggregate_seeds(dip[["strategy", "seed", "head", "task", "dip_best", "dip_final"]]) if len(dip) else None
    n_seeds = int(summ["seed"].nunique())
    boot = _image_bootstrap(rf.predictions) if n_seeds == 1 else {}
    if n_seeds > 1:
        spread = (f"Mean ± s.d. over {n_seeds} seeds, [95% t-interval over seeds of the mean "
                  f"({n_seeds - 1} degrees of freedom)].")
    elif boot:
        unit = "patients" if any(b["unit"] == "patient" for b in boot.values()) else "test images"
        spread = (f"One seed: no spread over seeds is available; [95% CI] of the final AUC by percentile bootstrap "
                  f"over {unit} ({N_BOOT:,} class-stratified resamples of the final-epoch predictions), "
                  "i.e. the uncertainty of the test set only, not of training.")
    else:
        spread = "One seed: no spread over seeds is available."
    parts = [f'<p class="note">Threshold {threshold:g}. Best = highest AUC over epochs (chosen on the split '
             "itself, so optimistic); final = AUC after the last epoch. Dip = development − external "
             "(positive: worse on the external set). "
             + ("Epoch and seconds to the threshold: the median over seeds with the seeds that never reached it counted as censored (the first time by "
                "which at least half of the seeds had reached it; “not reached” when fewer than half did), "
                "and how many seeds reached it. " if n_seeds > 1 else "") + spread + "</p>"]
    for (task, head), _ in agg.groupby(["task", "head"], sort=True):
        rows = []
        a = agg[(agg["task"] == task) & (agg["head"] == head)]
        for s in [x for x in order if x in set(a["strategy"])]:
            row = {"strategy": _e(s)}
            for split, lab in (("test", "test"), ("external", "external")):
                r = a[(a["strategy"] == s) & (a["split"] == split)]
                if r.empty:
                    continue
                r = r.iloc[0]
                row[f"best AUC ({lab})"] = _cell(r.best_auc_mean, r.best_auc_std, r.best_auc_ci_low, r.best_auc_ci_high, r.n_seeds)
                row[f"final AUC ({lab})"] = _cell(r.final_auc_mean, r.final_auc_std, r.final_auc_ci_low, r.final_auc_ci_high, r.n_seeds)
                b = boot.get((str(s), str(head), str(task), split))
                if b is not None and np.isfinite(r.final_auc_mean) and np.isfinite(b["ci_low"]):
                    row[f"final AUC ({lab})"] += f"<br><span class=note>[{b['ci_low']:.3f}, {b['ci_high']:.3f}]</span>"
                row[f"epoch to {threshold:g} ({lab})"] = _time_cell(r.epoch_to_threshold_median,
                                                                     r.epoch_to_threshold_reached, r.n_seeds, 0)
                row[f"seconds to {threshold:g} ({lab})"] = _time_cell(r.seconds_to_threshold_median,
                                                                       r.seconds_to_threshold_reached, r.n_seeds, 2)
            if dip_agg is not None:
                d = dip_agg[(dip_agg["strategy"] == s) & (dip_agg["task"] == task) & (dip_agg["head"] == head)]
                if len(d):
                    d = d.iloc[0]
                    row["dip (best)"] = _cell(d.dip_best_mean, d.dip_best_std, d.dip_best_ci_low, d.dip_best_ci_high, d.n_seeds)
                    row["dip (final)"] = _cell(d.dip_final_mean, d.dip_final_std, d.dip_final_ci_low, d.dip_final_ci_high, d.n_seeds)
            rows.append(row)
        t = pd.DataFrame(rows).fillna("—")
        best_col = "final AUC (test)"
        if best_col in t:
            best_s = a[a["split"] == "test"].sort_values("final_auc_mean", ascending=False)["strategy"].iloc[0]
        else:
            best_s = None
        parts.append(f"<h3>{_e(task)} — head {_e(head)}</h3>")
        parts.append(_table(t, left=("strategy",), fmt={c: (lambda v: str(v)) for c in t.columns},
                            row_class=lambda r: "best" if best_s is not None and r["strategy"] == _e(best_s) else ""))
    return "\n".join(parts), summ, agg


def _comparisons(rf: RunFiles, summ: pd.DataFrame, agg: pd.DataFrame) -> str:
    """Best strategy (mean final test AUC) vs every other: DeLong on one seed, t-test over seeds."""
    if summ.empty:
        return ""
    parts = ['<p class="note">Reference = the strategy with the highest mean final AUC on the test split. '
             "DeLong's test (DeLong et al. 1988; macro one-vs-rest extension for several classes, see "
             "docs/report.md) compares the final-epoch scores of two strategies on the same test images of one "
             "seed; the paired t-test compares final AUCs over seeds (Hosseinzadeh Taher et al.). "
             "No correction for multiple comparisons.</p>"]
    if rf.predictions is None:
        parts.append(_missing("predictions.csv is missing from the run directory, so DeLong's test is not shown."))
    n_seeds = summ["seed"].nunique()
    for (task, head), a in agg[agg["split"] == "test"].groupby(["task", "head"], sort=True):
        a = a.sort_values("final_auc_mean", ascending=False)
        if len(a) < 2:
            continue
        ref = a["strategy"].iloc[0]
        rows = []
        for other in a["strategy"].iloc[1:]:
            row = {"reference": ref, "strategy": other}
            if rf.predictions is not None:
                row.update(_delong_row(rf.predictions, task, head, ref, other))
            if n_seeds > 1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t = paired_ttest(summ, ref, other, column="final_auc", head=head, task=task)
                row["t-test Δ final AUC"] = _fmt(t["mean_diff"])
                row["t-test p"] = _fmt(t["p_value"], 3)
                row["t-test seeds"] = str(t["n"])
            rows.append(row)
        parts.append(f"<h3>{_e(task)} — head {_e(head)}</h3>")
        parts.append(_table(pd.DataFrame(rows).fillna("—"), left=("reference", "strategy", "DeLong note")))
    return "\n".join(parts)


def _delong_row(pred: pd.DataFrame, task: str, head: str, a: str, b: str) -> dict:
    p = pred[(pred["task"].astype(str) == task) & (pred["head"].astype(str) == head) & (pred["split"].astype(str) == "test")]
    seeds = sorted(set(p[p["strategy"] == a]["seed"]) & set(p[p["strategy"] == b]["seed"]))
    if not seeds:
        return {"DeLong note": "no test predictions for both"}
    seed = seeds[0]
    score_cols = [c for c in p.columns if c.startswith("score_")]
    pa = p[(p["strategy"] == a) & (p["seed"] == seed)].set_index("index").sort_index()
    pb = p[(p["strategy"] == b) & (p["seed"] == seed)].set_index("index").sort_index()
    common = pa.index.intersection(pb.index)
    pa, pb = pa.loc[common], pb.loc[common]
    cols = [c for c in score_cols if pa[c].notna().all()]
    try:
        if not (pa["label"].to_numpy() == pb["label"].to_numpy()).all():
            return {"DeLong note": "labels differ between the two prediction sets"}
        r = delong_test(pa["label"].to_numpy(), pa[cols].to_numpy(float), pb[cols].to_numpy(float))
    except MedaptError as exc:
        return {"DeLong note": f"not computed: {exc}"}
    return {"DeLong seed": str(seed), "AUC ref": _fmt(r["auc_a"]), "AUC other": _fmt(r["auc_b"]),
            "Δ [95% CI]": f"{_fmt(r['diff'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
            "DeLong p": _fmt(r["p_value"], 3)}


def _pareto_points(summ: pd.DataFrame, costs: pd.DataFrame, task: str, splits: list[str]) -> pd.DataFrame:
    s = summ[summ["task"] == task]
    pts = costs.copy()
    for split in splits:
        m = s[s["split"] == split].groupby("strategy")["final_auc"].mean()
        pts[f"auc_{split}"] = pts["strategy"].map(m)
    keep = np.zeros(len(pts), bool)
    for split in splits:
        keep |= pts[f"auc_{split}"].notna().to_numpy()
    return pts[keep].reset_index(drop=True)


def _plain_summary(rf: RunFiles, summ: pd.DataFrame, dip: pd.DataFrame, sc: pd.DataFrame | None,
                   threshold: float) -> str:
    items = []
    for task in sorted(summ["task"].unique()):
        s = summ[summ["task"] == task]
        bits = []
        for split, word in (("test", "development test split"), ("external", "external set")):
            m = s[s["split"] == split].groupby("strategy")["final_auc"].mean().dropna()
            if len(m):
                bits.append(f"on the {word} <b>{_e(m.idxmax())}</b> has the highest final AUC ({m.max():.3f})")
        txt = f"<b>{_e(task)}</b>: " + ("; ".join(bits) if bits else "no AUC values on the test or external split") + "."
        d = dip[dip["task"] == task].groupby("strategy")["dip_final"].mean().dropna() if len(dip) else pd.Series(dtype=float)
        if len(d):
            txt += (f" The smallest development→external drop is {_e(d.idxmin())} ({d.min():+.3f}); "
                    f"the largest {_e(d.idxmax())} ({d.max():+.3f}).")
        # censored median over heads and seeds: a run that never reached it counts, as "later than all"
        reached = s[(s["split"] == "test")].groupby("strategy")["seconds_to_threshold"].agg(censored_median).dropna()
        if len(reached):
            txt += (f" Fastest to reach AUC {threshold:g} on the test split: {_e(reached.idxmin())} "
                    f"(median {reached.min():.2f} s of head training over its runs, those that never reached it "
                    "counted as censored).")
        if sc is not None:
            pts = _pareto_points(summ, sc, task, ["test"])
            fronts = []
            for cost, word in (("kwh", "energy"), ("seconds", "time"), ("params", "parameters")):
                if cost in pts and np.isfinite(pts[cost]).any():
                    mask = pareto_front(pts[cost], pts["auc_test"])
                    fronts.append(f"by {word}: " + ", ".join(_e(x) for x in pts["strategy"][mask]))
            if fronts:
                txt += (" Pareto-optimal strategies (no other is both cheaper and better on the test split) — "
                        + "; ".join(fronts) + ".")
        items.append(f"<li>{txt}</li>")
    notes = []
    n_seeds = summ["seed"].nunique()
    if n_seeds == 1:
        notes.append("All results come from one seed, so small differences between strategies may be noise.")
    if rf.costs is not None and len(rf.costs):
        src = set(rf.costs["energy_source"])
        est = sorted(x for x in src if not is_measured(x))
        if est:
            table, _ = _energy_table(rf)
            ga = (f" Green Algorithms figures use constant table {_e(table)}." if table and
                  any("green-algorithms" in x for x in est) else "")
            notes.append("Energy figures include estimates (" + ", ".join(_e(x) for x in est) + "), not measurements."
                         + ga)
    for line in _slice_level_datasets(rf.config):
        notes.append(line[0].upper() + line[1:])
    if rf.config_text and re.search(r"\bphantom\b", rf.config_text):
        notes.append("This run uses the built-in synthetic phantom data: it shows that the pipeline works, "
                     "not which strategy is best for real MRI.")
    return ('<div class="summary"><ul>' + "".join(items) + "</ul>"
            + "".join(f"<p>{n}</p>" for n in notes) + "</div>")


# ----------------------------------------------------------------------------- main


def build_report(run_dir: Path, out: Path | None = None, *, threshold: float | None = None) -> Path:
    """Write ``report.html`` (self-contained) and ``figures/*.png`` from a run directory.

    Args:
        run_dir: a run directory (docs/run-directory.md). Only its files are read:
            ``metrics.csv`` (or ``metrics.parquet``), ``predictions.csv``, ``costs.csv``,
            ``inference.csv``, ``config.yaml``, ``environment.json``; any may be missing, and the
            section that needs it then says so.
        out: the HTML file to write (default ``run_dir/report.html``); figures go to
            ``figures/`` beside it.
        threshold: AUC threshold for "epochs/seconds to threshold" (default: the config's
            ``evaluation.threshold`` if present, else 0.9 as in Mehmood et al.).

    Returns:
        The path of the written report. Every file is written atomically (temporary name in the
        same folder, then ``os.replace``). Figures are embedded as base64 PNG data URIs; the page
        loads no external CSS, script or image.

    Raises:
        RunDirError: ``run_dir`` is not a run directory. CorruptFileError / MissingFieldError:
        a table cannot be read or lacks columns (the message names the file).

    >>> build_report(Path("demo-run"))  # doctest: +SKIP
    PosixPath('demo-run/report.html')
    """
    rf = load_run(Path(run_dir))
    out = Path(out) if out is not None else rf.run_dir / "report.html"
    figs = _Figures(out.parent / "figures")
    thr = float(threshold) if threshold is not None else _threshold(rf.config)
    order = _strategy_order(rf)
    name = (rf.config or {}).get("name") or rf.run_dir.resolve().name
    body: list[str] = [f"<h1>medapt report — {_e(name)}</h1>",
                       f'<p class="note">Run directory <code>{_e(rf.run_dir)}</code>; report written '
                       f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')}. "
                       '<span id="render-check">Figures not yet checked.</span></p>']
    if rf.missing:
        body.append(f'<p class="note">Files not in this run directory: {_e(", ".join(rf.missing))}.</p>')

    sc = None
    if rf.costs is not None:
        sc = strategy_costs(rf.costs, rf.inference, order)

    # --- summary + tables that need metrics
    metrics_html: list[str] = []
    if rf.metrics is None:
        body.append("<h2>Summary</h2>")
        body.append(_missing("metrics.csv is missing from the run directory, so there are no downstream "
                             "results: no summary, curves, box plots or AUC-vs-cost plot. "
                             "Run `medapt run` to completion to produce it."))
        summ = dip = agg = None
    else:
        table_html, summ, agg = _summary_tables(rf, order, thr)
        dip = external_dip(summ) if len(summ) else pd.DataFrame()
        body.append("<h2>Summary</h2>")
        if len(summ):
            body.append(_plain_summary(rf, summ, dip, sc, thr))
        if rf.costs is None:
            body.append(_missing("costs.csv is missing from the run directory, so no costs, Pareto-optimal "
                                 "strategies or cost tables can be shown."))
        metrics_html.append("<h2>Downstream results</h2>" + table_html)

        auc = rf.metrics[rf.metrics["metric"] == "auc"]
        curves, boxes = [], []
        for (task, head), g in auc.groupby(["task", "head"], sort=True):
            strategies = [s for s in order if s in set(g["strategy"])]
            curves.append(figs.add(_slug("auc_curves", task, head),
                                   F.auc_curves(g, strategies, f"{task} — head {head}", thr),
                                   f"ROC-AUC per head-training epoch, task {task}, head {head} "
                                   f"(cf. Mehmood et al., Figs 5–10). Dashed line: threshold {thr:g}."))
            if {"test", "external"} <= set(g["split"]):
                boxes.append(figs.add(_slug("boxplot", task, head),
                                      F.robustness_boxplot(g, strategies, f"{task} — head {head}"),
                                      f"Per-epoch ROC-AUC on the development test split vs the external set, "
                                      f"task {task}, head {head}; whiskers at the 1st and 99th percentiles "
                                      "(cf. Mehmood et al., Figs 11–12)."))
        metrics_html.append("<h2>AUC vs epoch</h2>" + ("".join(curves) or _missing("No AUC rows in metrics.csv.")))
        metrics_html.append("<h2>Robustness: development vs external</h2>" + (
            "".join(boxes) or _missing("No task has both a test and an external split in metrics.csv, "
                                       "so there are no development-vs-external box plots.")))
        # Pareto
        par = []
        if sc is not None and len(summ):
            for task in sorted(summ["task"].unique()):
                splits = [s for s in F.SPLIT_ORDER if s in set(summ[summ["task"] == task]["split"]) and s != "val"]
                pts = _pareto_points(summ, sc, task, splits)
                if pts.empty:
                    continue
                par.append(figs.add(_slug("pareto", task),
                                    F.pareto_plot(pts, f"{task}: final AUC vs cost", splits),
                                    f"Final-epoch ROC-AUC (mean over heads and seeds) against the cost of each "
                                    f"strategy for task {task}: parameters of the final model, pre-training energy "
                                    "and time (sum of its pretrain rows in costs.csv, shared steps counted for "
                                    "every strategy that uses them). Outlined points and the dashed line: the "
                                    "Pareto front (cf. Mehmood et al., Fig. B1)."))
                pt = pts.copy()
                pt["pareto (test)"] = np.where(pareto_front(pt["kwh"], pt["auc_test"]), "yes", "") if "auc_test" in pt else ""
                par.append(_table(pt[[c for c in pt.columns if c not in ("n_seeds",)]], left=("strategy", "energy_sources", "pareto (test)")))
        metrics_html.append("<h2>AUC vs cost</h2>" + ("".join(par) or _missing(
            "costs.csv is missing from the run directory, so the AUC-vs-cost plot is not shown."
            if rf.costs is None else "No strategy has both costs and AUC values.")))
        metrics_html.append("<h2>Statistical comparisons</h2>" + _comparisons(rf, summ, agg))
    body += metrics_html

    # --- cost tables
    body.append("<h2>Parameters per phase (Table 1)</h2>")
    if rf.costs is None and rf.inference is None:
        body.append(_missing("costs.csv is missing from the run directory, so the parameter table is not shown."))
    else:
        pt = params_table(rf.costs, rf.inference, order)
        body.append('<p class="note">Total and trainable parameters of the model in each pre-training phase '
                    "(cf. Mehmood et al., Table 1). Strategies without pre-training show their total only. "
                    "Counted by PyTorch: the paper counts Keras's ResNet50, whose convolutions have biases and whose "
                    "BatchNorm moving statistics count as non-trainable parameters, so its figures are larger "
                    "(`medapt params --keras` counts that way).</p>")
        body.append(_table(pt, left=("strategy", "note")) if len(pt) else _missing("No pretrain rows in costs.csv."))

    body.append("<h2>Time and energy per phase (Table B1)</h2>")
    if rf.costs is None:
        body.append(_missing("costs.csv is missing from the run directory, so time and energy are not shown."))
    else:
        te = time_energy_table(rf.costs, order)
        shared_runs = rf.costs[rf.costs["step"].astype(str) == "pretrain"]
        body.append('<p class="note">Mean over seeds. A step shared by several strategies (shared by &gt; 1) ran '
                    "once but is counted in every strategy's total, i.e. the cost of that strategy run alone. "
                    f"Distinct pretrain steps of this run took {_hms(pd.to_numeric(shared_runs['seconds']).sum())} "
                    f"and {_fmt(pd.to_numeric(shared_runs['kwh']).sum(), 4)} kWh in total (all seeds). "
                    'Energy source: <span class="measured">measured</span> or '
                    '<span class="estimate">estimate</span>. ' + _table_sentence(rf) + "</p>")
        if len(te):
            te = te.copy()
            te.insert(3, "h:mm:ss", te["seconds"].map(_hms))
            te = te.rename(columns={"n_sharing": "shared by"})

            def src(v):
                parts = [x for x in str(v).split(";") if x]
                return ", ".join(
                    f'<span class="{"measured" if is_measured(x) else "estimate"}">{_e(x)}'
                    f'{"" if is_measured(x) else " (estimate)"}</span>' for x in parts) or "—"

            body.append(_table(te, left=("strategy", "phase", "energy_source", "energy_note"),
                               fmt={"energy_source": src, "kwh": lambda v: _e(_fmt(v, 4)),
                                    "seconds": lambda v: _e(_fmt(v, 2))},
                               row_class=lambda r: "total" if r["phase"] == "total" else ""))
        else:
            body.append(_missing("costs.csv has no pretrain rows (no strategy in this run pre-trains)."))
        other = rf.costs[rf.costs["step"].astype(str) != "pretrain"]
        if len(other):
            o = other.groupby("step")[["seconds", "kwh"]].sum(numeric_only=True).reset_index()
            body.append('<p class="note">Other steps (feature extraction, heads, …), summed over the run:</p>'
                        + _table(o, left=("step",), fmt={"kwh": lambda v: _e(_fmt(v, 4))}))

    body.append("<h2>Inference cost</h2>")
    if rf.inference is None:
        body.append(_missing("inference.csv is missing from the run directory, so the inference cost table is not shown."))
    else:
        inf = rf.inference.copy()
        inf["_o"] = inf["strategy"].map({s: i for i, s in enumerate(order)})
        inf = inf.sort_values("_o", kind="stable").drop(columns="_o")
        body.append(_table(inf, left=tuple(c for c in inf.columns if not pd.api.types.is_numeric_dtype(inf[c]))))

    body.append("<h2>Run</h2>")
    if rf.environment is None:
        body.append(_missing("environment.json is missing from the run directory."))
    else:
        env = pd.DataFrame([(k, v if not isinstance(v, (dict, list)) else _json(v)) for k, v in rf.environment.items()],
                           columns=["key", "value"])
        body.append(_table(env, left=("key", "value")))
    if rf.config_text is None:
        body.append(_missing("config.yaml is missing from the run directory."))
    else:
        body.append(f"<details><summary>Resolved configuration (config.yaml)</summary><pre>{_e(rf.config_text)}</pre></details>")

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>medapt report — {_e(name)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + _SCRIPT + "</body></html>\n")
    atomic_write_bytes(out, page.encode("utf-8"))
    log.info("report: %s (%d figures in %s)", out, len(figs.written), figs.folder)
    return out


def _json(v) -> str:
    import json

    return json.dumps(v, default=str)
