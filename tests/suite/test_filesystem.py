"""Filesystem errors end in a named error with the path and the fix (exit 2, no traceback, nothing
half-written); SIGTERM ends like Ctrl-C; files get the umask's mode; small messages of `medapt run`."""

import errno
import os
import signal
import stat

import numpy as np
import pytest

import medapt.atomic
from medapt.cli import main
from medapt.errors import FileSystemError, filesystem_error


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err and err.startswith("medapt: error: ")


def test_out_naming_a_file_is_a_named_error(write_config, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["run", str(write_config()), "--out", str(f)]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert str(f) in err and "not a folder" in err and "--out" in err


def test_out_below_a_file_is_not_a_directory(write_config, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["run", str(write_config()), "--out", str(f / "run")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "not a directory" in err and str(f) in err


def test_name_too_long_is_a_named_error(write_config, tmp_path, capsys):
    out = tmp_path / ("r" * 300)
    assert main(["run", str(write_config()), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "file name too long" in err and "255 bytes" in err


class _Failing:
    """A file object whose writes fail with ``code`` after a few bytes (a disk that fills up)."""

    def __init__(self, path, mode, code):
        self.fh, self.code, self.path = open(path, mode), code, path

    def write(self, data):
        self.fh.write(data[:3])
        raise OSError(self.code, os.strerror(self.code), str(self.path))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


@pytest.mark.parametrize("code,words", [
    (errno.ENOSPC, "disk full while writing"),
    (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied"),
])
def test_write_errors_are_named_and_leave_nothing_half_written(write_config, tmp_path, capsys, monkeypatch, code,
                                                               words):
    out = tmp_path / "run"
    monkeypatch.setattr(medapt.atomic, "open", lambda p, mode="r", *a, **k: _Failing(p, mode, code), raising=False)
    assert main(["run", str(write_config()), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert words in err and str(out) in err
    leftovers = [p for p in out.rglob("*") if medapt.atomic.is_temporary(p)]
    assert not leftovers and not (out / "config.yaml").exists()  # nothing under a final name, no temporaries


def test_read_only_data_folder(write_config, tmp_path, capsys, monkeypatch):
    """The data root cannot be created (a read-only disk): named with its path."""
    from pathlib import Path

    data = tmp_path / "data"
    real = Path.mkdir

    def mkdir(self, *a, **k):
        if self == data:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(["run", str(write_config()), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "read-only file system" in err and str(data) in err and "data.root" in err


def test_filesystem_error_keeps_errno_and_path():
    e = filesystem_error(PermissionError(errno.EACCES, "Permission denied", "/x/y"))
    assert isinstance(e, FileSystemError) and isinstance(e, OSError) and e.errno == errno.EACCES
    assert "/x/y" in str(e) and "chmod" in str(e)


def test_sigterm_is_handled_like_ctrl_c(monkeypatch, capsys):
    from medapt.cli import suite

    def killed(args):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM should have stopped the command")

    monkeypatch.setattr(suite, "_run", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", "whatever.yaml"]) == 143
    err = capsys.readouterr().err
    assert "terminated (SIGTERM)" in err and "resume" in err
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_files_get_the_umask_mode(tmp_path):
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        with medapt.atomic.atomic_path(tmp_path / "weights.safetensors") as tmp:
            save_file({"a": torch.zeros(2)}, str(tmp))  # safetensors creates its file with mode 600
        medapt.atomic.atomic_write_text(tmp_path / "costs.csv", "a\n1\n")
    finally:
        os.umask(old)
    for name in ("weights.safetensors", "costs.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_one_class_dataset_error_names_the_dataset(write_config, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "oneclass" / "glioma"
    folder.mkdir(parents=True)
    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((16, 16)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    cfg = write_config(**{"data.targets.tumor_type": {"dataset": {"format": "folder", "path": str(tmp_path / "oneclass")}}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "tumor_type" in err and "only 1 class" in err and str(tmp_path / "oneclass") in err


def test_interrupted_head_says_restarting(write_config, tmp_path):
    from medapt.suite import run_experiment
    from medapt.suite.kinds import head

    out = tmp_path / "run"
    cfg = write_config(strategies=["ImageNet"], **{"cost.inference": False})
    real = head.train_head

    def crash(*a, **k):
        raise KeyboardInterrupt

    head.train_head = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, out=out, report=False)
    finally:
        head.train_head = real
    run_experiment(cfg, out=out, report=False)
    log = (out / "log.txt").read_text()
    assert "restarting: an earlier try was interrupted before a checkpoint" in log
    assert "resuming" not in log.split("restarting")[1].split("\n")[0]
