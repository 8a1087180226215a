"""One spelling per option, --out as a folder, hours as 2.5 or 2:30, quiet closed pipes, ViT errors."""

import sys

import pytest

from medapt.cli import build_parser, main
from medapt.cost.green import get_hardware


def _sub(name):
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == name)[1]


@pytest.mark.parametrize("command", ["run", "pretrain", "demo", "inspect-data"])
def test_set_is_the_one_spelling_and_old_ones_are_hidden_aliases(command):
    help_text = _sub(command).format_help()
    assert "-o KEY=VALUE, --set KEY=VALUE" in help_text
    assert "--override" not in help_text and "--opt" not in help_text


def test_old_spellings_still_parse():
    p = build_parser()
    a = p.parse_args(["run", "x.yaml", "-o", "a=1", "--set", "b=2", "--override", "c=3"])
    assert a.override == ["a=1", "b=2", "c=3"]
    b = p.parse_args(["inspect-data", "phantom", "--opt", "task=grade", "-o", "n_per_class=2"])
    assert b.opt == ["task=grade", "n_per_class=2"]


def test_resume_is_gone_and_every_out_is_a_folder():
    assert "--resume" not in _sub("run").format_help()
    for name in ("run", "prepare", "report", "export", "predict"):
        h = _sub(name).format_help()
        if "--out " in h:
            assert "--out DIR" in h or "--out OUT" in h, name
        assert "--out FILE" not in h, name


@pytest.mark.parametrize("runtime", ["2.5", "2:30"])
def test_energy_accepts_decimal_hours(runtime, capsys):
    assert main(["energy", "--hardware", "nvidia-l4", "--runtime", runtime, "--table", "latest", "--format", "json"]) == 0
    assert '"runtime_h": 2.5' in capsys.readouterr().out


@pytest.mark.parametrize("name, watts", [("nvidia-h100-sxm", 700), ("nvidia-h100-pcie", 350),
                                         ("nvidia-a100-sxm4-80gb", 400), ("nvidia-l4", 72), ("apple-m1", 39),
                                         ("apple-m2", 50)])
@pytest.mark.parametrize("table", ["v1.1", "latest"])
def test_new_hardware_profiles_have_published_tdps_and_sources(name, watts, table):
    # TDPs from the manufacturers' datasheets (NVIDIA H100/A100/L4) and Apple's Mac mini power article
    hw = get_hardware(name, table)
    assert hw.tdp_per_core_w == watts and hw.source.startswith("added by medapt")
    assert "datasheet" in hw.source or "support.apple.com" in hw.source


class _ClosedPipe:
    """A stdout whose reader has gone (`medapt … | head`): every write raises BrokenPipeError."""

    def write(self, s):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass

    def fileno(self):
        raise ValueError("no descriptor")


def test_closed_pipe_exits_quietly(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["energy", "--list"]) == 141
    assert capsys.readouterr().err == ""


def test_transformer_backbone_names_the_supported_families(capsys):
    assert main(["params", "--backbone", "vit_tiny_patch16_224", "--strategy", "DA"]) == 2
    err = capsys.readouterr().err
    assert "transformer" in err and "resnet" in err and "efficientnet" in err and "Traceback" not in err
