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
    g.add_argument("--model", metavar="TYPE", help="model type (vit_b, vit_l, vit_h, vit_t); default: read from the checkpoint")
    g.add_argument("--device", metavar="DEV", help="cpu or cuda (default: cuda when available)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``persam-studio`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
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
        # A photo or model too large for this machine is the user's problem
        # to solve (smaller model, fewer images), not a traceback to read.
        print("error: not enough memory for this job", file=sys.stderr)
        return 1
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run_app(paths: list[str]) -> int:
    """Open the desktop app on ``paths`` (a folder or images, may be empty)."""
    from persam_studio.gui.app import run_app

    return run_app(paths)
