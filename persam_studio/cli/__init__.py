"""The ``persam-studio`` command: subcommands for batch work, or the app.

``persam-studio [FOLDER|IMAGES...]`` (no subcommand) opens the desktop app.
Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers, common)`` and ``run(args) -> int``.

Exit codes: 0 success, 1 input errors (``error: <file>: <problem>`` on
stderr, one line each, no traceback), 2 usage errors, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Sequence

from persam_studio.core.errors import Cancelled, PersamError

# Subcommand name -> module (imported lazily so `--help` and the GUI start fast).
COMMANDS: dict[str, str] = {
    "segment": "persam_studio.cli.segment",
    "embed": "persam_studio.cli.embed",
    "models": "persam_studio.cli.model_cmds",
    "download": "persam_studio.cli.model_cmds",
    "propagate": "persam_studio.cli.propagate",
    "select": "persam_studio.cli.select_subject",
    "eval-perseg": "persam_studio.cli.eval_perseg",
    "cutout": "persam_studio.cli.cutout",
    "export-dataset": "persam_studio.cli.export_dataset",
    "bench": "persam_studio.cli.bench",
}


def common_parser() -> argparse.ArgumentParser:
    """Options every model-using subcommand takes."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", metavar="PATH", help="SAM checkpoint file (else PERSAM_CHECKPOINT, checkpoints/, user data dir)")
    g.add_argument("--model", type=_model_type, metavar="TYPE",
                   help="model type (vit_b, vit_l, vit_h, vit_t); default: read from the checkpoint")
    g.add_argument("--device", type=_device, metavar="DEV", help="cpu or cuda (default: cuda when available)")
    g.add_argument("--cache-dir", metavar="DIR", help="embedding cache folder (else PERSAM_CACHE_DIR, user cache dir)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persam-studio",
        description="Segment photos with a click, personalise SAM with one reference, export masks and cutouts. "
        "With no subcommand, opens the app on the given folder or images.",
    )
    from persam_studio import __version__

    parser.add_argument("--version", action="version", version=f"persam-studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_parser()
    seen: set[str] = set()
    for module_name in COMMANDS.values():
        if module_name in seen:
            continue
        seen.add(module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != module_name:
                raise
            continue
        module.add_parser(sub, common)
    return parser


def _model_type(text: str) -> str:
    """``--model``: a known model type (a usage error otherwise, exit 2)."""
    from persam_studio.core.models import KNOWN_MODELS

    known = list(KNOWN_MODELS)
    if text in known:
        return text
    from persam_studio.core.models.sam_build import model_types  # torch: only for an unusual name

    if text in model_types():
        return text
    raise argparse.ArgumentTypeError(f"unknown model type {text!r}; known: {', '.join(known)}")


def _device(text: str) -> str:
    """``--device``: cpu, cuda, cuda:N or mps (whether this machine has it is checked later, exit 1)."""
    if re.fullmatch(r"cpu|cuda(:\d+)?|mps", text.strip()):
        return text.strip()
    raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps")


#: Options of the app itself (``persam-studio --checkpoint X --model vit_b FOLDER``).
APP_OPTIONS = ("--checkpoint", "--model")


def _starts_app(argv: list[str]) -> bool:
    """No subcommand: the app, with its own options first or a folder / photos."""
    if not argv:
        return True
    first = argv[0]
    if first in APP_OPTIONS or first.startswith(tuple(o + "=" for o in APP_OPTIONS)):
        return not any(a in COMMANDS for a in argv)  # `--model x segment ...` is a misplaced option
    return first not in COMMANDS and not first.startswith("-")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``persam-studio`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if _starts_app(argv):
        if argv and not argv[0].startswith("-") and not os.path.lexists(argv[0]):
            # A typo of a command must not open the app on a "photo" that does not exist.
            build_parser().error(
                f"{argv[0]!r} is neither a command nor an existing file or folder; "
                f"commands: {', '.join(COMMANDS)}"
            )
        return _run_app(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PersamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: not enough memory for this command", file=sys.stderr)
        return 1
    except OSError as exc:
        # A write or read the command did not foresee (full disk, lost
        # mount): still one line, never a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run_app(paths: list[str]) -> int:
    """Open the desktop app on ``paths`` (a folder or images, may be empty)."""
    from persam_studio.gui.display import display_problem

    problem = display_problem()
    if problem:  # Qt would abort the process (SIGABRT) instead of saying so
        print(f"error: cannot open the app: {problem}", file=sys.stderr)
        return 1
    from persam_studio.gui.app import run_app

    return run_app(paths)
