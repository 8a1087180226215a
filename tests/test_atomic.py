"""One atomic-write helper for every writer: nothing half-written under the final name, the umask's mode."""

import os

import pytest

from medapt.atomic import atomic_path, atomic_write_json, atomic_write_text, is_temporary


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_json_numbers_from_numpy(tmp_path):
    import json

    import numpy as np

    p = atomic_write_json(tmp_path / "a.json", {"a": np.float32(1.5), "b": np.arange(2)})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [0, 1]}


def test_temporary_names_are_recognisable(tmp_path):
    with atomic_path(tmp_path / "w.safetensors") as tmp:
        assert is_temporary(tmp) and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert not is_temporary(tmp_path / "w.safetensors")
