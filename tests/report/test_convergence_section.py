"""The report's convergence-speed section, from the convergence rows of metrics.csv."""

import pandas as pd

from medapt.evaluate.convergence import write_convergence
from medapt.report import build_report

from .conftest import make_run_dir


def test_convergence_section_and_figure(tmp_path):
    run = make_run_dir(tmp_path / "run", seeds=(0,))
    m = pd.read_csv(run / "metrics.csv")
    curves = []
    for strategy, aucs in {"Scratch": [.55, .65, .72, .81], "FTL": [.75, .85, .9, .9], "MeanVar": [.5] * 4}.items():
        curves.append(pd.DataFrame({"strategy": strategy, "seed": 0, "head": "own", "task": "tumor_type",
                                    "split": "val", "epoch": range(1, 5), "seconds": [2.0, 4.0, 6.0, 8.0],
                                    "metric": "auc", "value": aucs}))
    pd.concat([m, *curves], ignore_index=True).to_csv(run / "metrics.csv", index=False)
    assert write_convergence(run, [0.7, 0.8], "Scratch") == 24
    html = build_report(run).read_text()
    assert "<h2>Convergence speed</h2>" in html and "speed-up (epochs)" in html
    section = html[html.index("<h2>Convergence speed</h2>"):]
    section = section[:section.index("<h2>", 10)]
    table = section[section.index("<table"):]
    assert "3.00" in table  # FTL's speed-up at 0.7: Scratch needs 3 epochs, FTL 1
    assert "MeanVar" in table and "0/1" in table  # never reached: counted, not hidden
    assert (run / "figures" / "convergence_tumor_type.png").stat().st_size > 1000
