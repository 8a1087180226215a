"""Every name the CLI prints or validates comes from a registry; `medapt --help` stays light."""

import subprocess
import sys

from medapt.cli import build_parser, main


def _choices(parser, *path):
    sub = parser
    for name in path[:-1]:
        sub = next(a for a in sub._actions if a.dest in ("command", "phantom_command")).choices[name]
    return next(a for a in sub._actions if a.dest == path[-1]).choices


def test_cli_choices_are_the_registries():
    from medapt.data import READERS
    from medapt.data.spec import FORMATS, PHANTOM_CLASSES
    from medapt.strategies import BN_POLICIES
    from medapt.suite.executors import EXECUTORS

    p = build_parser()
    assert list(_choices(p, "run", "executor")) == EXECUTORS.names()
    assert list(_choices(p, "params", "bn")) == list(BN_POLICIES)
    assert list(_choices(p, "inspect-data", "source_format")) == READERS.names()
    assert list(_choices(p, "phantom", "preview", "task")) == list(PHANTOM_CLASSES)
    assert sorted(READERS.names()) == sorted(FORMATS)  # one spec model per reader


def test_unknown_choice_is_refused_with_the_registered_names(capsys):
    assert main(["run", "x.yaml", "--executor", "rey"]) == 2
    assert "Unknown executor 'rey'. Did you mean 'ray'" in capsys.readouterr().err


def test_top_level_help_imports_no_torch():
    code = ("import sys; from medapt.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'timm', 'medapt.data', 'medapt.suite.kinds') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
