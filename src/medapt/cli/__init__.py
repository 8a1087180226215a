"""The ``medapt`` command line: a thin layer over the Python API.

Each command group lives in its own module with a ``register(subparsers)`` function that adds
its sub-commands; a sub-command stores its handler as ``func`` (``args -> int``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import MedaptError

# one module per command group; each adds its sub-commands
_GROUPS = ("core", "data", "cost", "report", "suite", "verify", "search", "deploy")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="medapt",
        description="Resource-efficient domain-adaptive pre-training for medical images: "
        "run DAPT strategies side by side, evaluate them downstream, account for their cost.",
    )
    parser.add_argument("--version", action="version", version=f"medapt {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        importlib.import_module(f"{__name__}.{group}").register(sub)
    return parser


class _ConsoleFilter(logging.Filter):
    """Step lines and warnings on the console; phase and cost details only in log.txt (or with -v)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name in ("medapt.suite", "medapt.data.prepare")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's kill, ``kill PID``), raised like Ctrl-C so that the same clean-up runs:
    temporary files removed, the partial step folder and its checkpoint kept for a resume."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _catch_sigterm():
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _restore_sigterm(old) -> None:
    import signal

    if old is not None:
        signal.signal(signal.SIGTERM, old)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except MedaptError as exc:  # an unknown registry name, with the closest ones
        print(f"medapt: error: {exc}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    root, medapt_log = logging.getLogger(), logging.getLogger("medapt")
    had, old_level = list(root.handlers), medapt_log.level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ours = [h for h in root.handlers if h not in had]  # never touch an embedding program's handlers
    if getattr(args, "log_info", False) and args.verbose == 0:
        # long commands show one line per step on the console; every detail goes to the run's log.txt
        medapt_log.setLevel(logging.INFO)
        for h in ours:
            h.addFilter(_ConsoleFilter())
    old_term = _catch_sigterm()
    try:
        return int(args.func(args) or 0)
    except MedaptError as exc:
        print(f"medapt: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `medapt … | head`: the reader left; stop quietly, as cat does
        _silence_stdout()
        return 141
    except OSError as exc:  # the file system said no: the path and the fix, no traceback
        from ..errors import filesystem_error

        print(f"medapt: error: {filesystem_error(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("medapt: terminated (SIGTERM); completed steps and the last epoch's checkpoint are kept: run the same "
              "command again to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("medapt: interrupted", file=sys.stderr)
        return 130
    finally:
        _restore_sigterm(old_term)
        medapt_log.setLevel(old_level)
        for h in ours:
            root.removeHandler(h)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush raises no second BrokenPipeError."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
