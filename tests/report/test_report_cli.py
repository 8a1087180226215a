"""`medapt report RUN_DIR [--out FILE]`."""

import json

from medapt.cli import main


def test_cli_writes_report(tmp_path, capsys, fake):
    run = fake.make(tmp_path / "run", seeds=(0,), predictions=False)
    out = tmp_path / "x" / "report.html"
    assert main(["report", str(run), "--out", str(out), "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["report"] == str(out) and out.exists()
    assert len(res["figures"]) == 8


def test_cli_error_is_clean(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medapt: error: run directory") and "Traceback" not in err
