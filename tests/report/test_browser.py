"""Open report.html in a real headless Chromium and check that every figure renders.

Debian's ``chromium`` is installed by the session fixture when missing (apt-get, under a file
lock and a time limit); the test is skipped, with the reason, only if that is impossible.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from medapt.report import build_report

pytestmark = pytest.mark.browser

INSTALL_TIMEOUT_S = 900
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    found = _find_browser()
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and apt-get is not available to install it")
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and installing it with apt-get needs root")
    # one installer at a time across concurrent pytest processes; the lock is only a lock file
    lock_path = Path(tempfile.gettempdir()) / "medapt-test-chromium-install.lock"
    with open(lock_path, "w") as lock:
        deadline = time.monotonic() + INSTALL_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"waited {INSTALL_TIMEOUT_S} s for another chromium installation to finish")
                time.sleep(2)
        try:
            found = _find_browser()  # another process may have installed it meanwhile
            if found:
                return found
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            log = []
            for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
                left = max(30.0, deadline - time.monotonic())
                try:
                    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=left)
                except subprocess.TimeoutExpired:
                    pytest.skip(f"installing chromium timed out: {' '.join(cmd)} ran longer than {left:.0f} s")
                log.append(r.stdout[-1500:] + r.stderr[-1500:])
                if r.returncode != 0:
                    pytest.skip(f"installing chromium failed: {' '.join(cmd)} exited {r.returncode}: {log[-1][-600:]}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    found = _find_browser()
    if not found:
        pytest.skip("apt-get installed chromium but no chromium executable is on PATH")
    return found


def _headless(browser: str, profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def html_figures(report: Path) -> int:
    return len(re.findall(r'<figure class="medapt-fig"', report.read_text()))


def test_every_figure_renders_in_chromium(chromium, tmp_path, fake):
    run = fake.make(tmp_path / "run")
    report = build_report(run)
    n_figures = len(list((run / "figures").glob("*.png")))
    assert n_figures == 8
    assert html_figures(report) == n_figures  # each PNG is shown once, inline as SVG
    # the page's own script counts the figures that rendered (an inline <svg> laid out with a size
    # and drawn content, or an <img> with naturalWidth > 0) after the load event and writes the
    # count into #render-check; --virtual-time-budget lets the load event fire before the dump
    r = _headless(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", report.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r'id="render-check"[^>]*>', r.stdout)
    assert m, f"render-check element not in the dumped DOM: {r.stdout[:500]!r} {r.stderr[-800:]!r}"
    loaded = re.search(r'data-loaded="(\d+)"', m.group(0))
    total = re.search(r'data-total="(\d+)"', m.group(0))
    assert loaded and total, f"the page's check script did not run: {m.group(0)}"
    assert int(total.group(1)) == n_figures
    assert int(loaded.group(1)) == n_figures, f"only {loaded.group(1)} of {n_figures} figures decoded"
    assert f"{n_figures} of {n_figures} figures rendered" in r.stdout

    # negative control: the same check reports a figure whose SVG is damaged (not an <svg> any more)
    broken = tmp_path / "broken.html"
    html = report.read_text()
    assert "<svg" in html
    broken.write_text(html.replace("<svg", "<svgx", 1))
    r = _headless(chromium, tmp_path / "profile3", "--virtual-time-budget=10000", "--dump-dom", broken.as_uri())
    assert f'data-loaded="{n_figures - 1}"' in r.stdout

    # and a screenshot of the page is a real, non-blank image
    shot = tmp_path / "page.png"
    r = _headless(chromium, tmp_path / "profile2", "--virtual-time-budget=10000", "--window-size=1280,2400",
                  f"--screenshot={shot}", report.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    from PIL import Image

    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert img.size == (1280, 2400) and hi - lo > 100  # text and plots, not a blank page
