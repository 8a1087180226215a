"""`python -m build` makes a wheel that carries its data files and runs `medapt demo` once installed."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    src = tmp_path_factory.mktemp("src")  # build from a copy: no build/ or egg-info in the checkout
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 and ("Could not find a version" in proc.stdout + proc.stderr
                                 or "No matching distribution" in proc.stdout + proc.stderr):
        pytest.skip("no package index or cache to set up the isolated build environment (setuptools, wheel)")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whl,) = out.glob("medapt-*.whl")
    return whl


def test_wheel_carries_examples_tables_and_entry_point(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("medapt/examples/quickstart.yaml", "medapt/cost/tables/green_algorithms_v1.1.json",
                     "medapt/cost/tables/green_algorithms_latest.json", "medapt/py.typed", "medapt/__main__.py"):
        assert required in names, required
    # every data file of the source tree is in the wheel (a new template or table needs package-data)
    data = [p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "medapt").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert not [d for d in data if d not in names]
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "medapt = medapt.cli:main" in entry
    # the packaged quickstart is the one the README points at
    assert (ROOT / "examples" / "quickstart.yaml").read_text() == \
        zipfile.ZipFile(wheel).read("medapt/examples/quickstart.yaml").decode()


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_runs_the_demo(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # the heavy dependencies (torch, timm …) come from this interpreter's site-packages through a .pth
    # file instead of a second multi-GB download; medapt itself comes only from the wheel
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    where = subprocess.run([str(py), "-c", "import medapt; print(medapt.__file__)"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, check=True).stdout
    assert where.startswith(purelib)
    tiny = ["-o", "strategies=[DA]", "-o", "data.image_size=32", "-o", "data.source.n_per_class=6",
            "-o", "data.targets.tumor_type.dataset.n_per_class=6", "-o", "data.targets.tumor_type.external.n_per_class=3",
            "-o", "data.targets.disease.dataset.n_per_class=4", "-o", "schedule.epochs={phase1: 1, phase2: 1}",
            "-o", "downstream.epochs=2", "-o", "downstream.heads=[model1]", "-o", "cost.track_energy=false",
            "-o", "cost.inference_repeats=1"]
    proc = subprocess.run([str(venv / "bin" / "medapt"), "demo", "--out", "run", *tiny], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report:" in proc.stdout and (tmp_path / "run" / "report.html").is_file()
