"""medapt.integrity: file records and the three verification modes."""

import os

import pytest

from medapt.errors import ConfigError
from medapt.integrity import check_files, combined_digest, file_digest, record_files, verify_mode


def test_modes_find_what_they_promise(tmp_path):
    f = tmp_path / "features.npy"
    f.write_bytes(b"a" * 5000)
    rec = record_files({"features.npy": f})
    assert check_files(rec, tmp_path, "full") == [] and check_files(rec, tmp_path, "stat") == []
    st = f.stat()
    f.write_bytes(b"b" * 5000)  # same size, other content
    assert "content changed" in check_files(rec, tmp_path, "full")[0].problem
    assert "content changed" in check_files(rec, tmp_path, "stat")[0].problem  # the mtime moved: hashed
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # an in-place change that restored the mtime
    assert check_files(rec, tmp_path, "stat") == [] and check_files(rec, tmp_path, "full")
    assert check_files(rec, tmp_path, "off") == []
    f.write_bytes(b"a" * 10)
    assert "size changed" in check_files(rec, tmp_path, "stat")[0].problem
    f.unlink()
    assert check_files(rec, tmp_path, "full")[0].problem == "missing"


def test_a_copy_without_times_passes_stat_by_its_hash(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(3 << 20))  # more than one 1 MiB block
    rec = record_files({"w.bin": f})
    os.utime(f, ns=(0, 0))
    assert check_files(rec, tmp_path, "stat") == []
    assert rec["w.bin"]["blake2b"] == file_digest(f)


def test_combined_digest_ignores_where_the_files_are_and_their_times(tmp_path):
    a = {"/x/data/images.npy": {"size": 3, "mtime_ns": 1, "blake2b": "ab"}}
    b = {"/y/images.npy": {"size": 3, "mtime_ns": 2, "blake2b": "ab"}}
    assert combined_digest(a) == combined_digest(b)
    assert combined_digest(a) != combined_digest({"/y/images.npy": {"size": 3, "mtime_ns": 2, "blake2b": "ac"}})


def test_unknown_mode_is_a_config_error(monkeypatch):
    monkeypatch.setenv("MEDAPT_VERIFY", "sometimes")
    with pytest.raises(ConfigError, match="MEDAPT_VERIFY"):
        verify_mode()
