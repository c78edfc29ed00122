"""The app's command line and which model choice wins (no Qt).

``persam-studio [--checkpoint PATH] [--model TYPE] [FOLDER | IMAGES...]``.
The checkpoint comes from, in order: the ``--checkpoint`` flag, the
``PERSAM_CHECKPOINT`` environment variable, *Settings* (also where a file
chosen in the model dialog is kept), else the first one found in the
checkpoint folders. The model type: ``--model``, then *Settings*, else read
from the checkpoint. :func:`effective_choice` says which won, and the status
bar shows it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from persam_studio.gui.backend import ModelChoice

FLAG, ENV, SETTINGS, FOUND = "--checkpoint", "PERSAM_CHECKPOINT", "Settings", "found"
MODEL_FLAG, FROM_CHECKPOINT = "--model", "from the checkpoint"


@dataclass(frozen=True)
class LaunchOptions:
    """What the app was started with; empty strings: not given."""

    paths: tuple[str, ...] = ()
    checkpoint: str = ""
    model_type: str = ""


@dataclass(frozen=True)
class ModelOrigin:
    """Where the checkpoint and the model type of a :class:`ModelChoice` came from."""

    checkpoint: str  # FLAG, ENV, SETTINGS or FOUND
    model_type: str  # MODEL_FLAG, SETTINGS or FROM_CHECKPOINT
    overridden: str = ""  # the Settings checkpoint not used because a flag or PERSAM_CHECKPOINT won


def app_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="persam-studio", description="Open PerSAM Studio on a folder or photos.")
    p.add_argument("--checkpoint", metavar="PATH", default="",
                   help="SAM checkpoint file (wins over PERSAM_CHECKPOINT and Settings)")
    p.add_argument("--model", metavar="TYPE", default="",
                   help="model type (vit_b, vit_l, vit_h, vit_t); default: Settings, else read from the checkpoint")
    p.add_argument("paths", nargs="*", metavar="FOLDER|IMAGE", help="a folder, or photos, to open as the album")
    return p


def parse_app_args(argv: Sequence[str]) -> LaunchOptions:
    """Parse the app's arguments (flags before or after the paths).

    Raises:
        SystemExit: ``--help`` (code 0) or a usage error (code 2, message on stderr).
    """
    args = app_parser().parse_intermixed_args(list(argv))
    return LaunchOptions(tuple(args.paths), args.checkpoint, args.model)


def effective_choice(
    setting: ModelChoice, options: LaunchOptions = LaunchOptions(), environ: Mapping[str, str] | None = None
) -> tuple[ModelChoice, ModelOrigin]:
    """The model choice to load and where its parts came from (flag > environment > Settings)."""
    environ = os.environ if environ is None else environ
    env = environ.get("PERSAM_CHECKPOINT", "")
    if options.checkpoint:
        checkpoint, origin = options.checkpoint, FLAG
    elif env:
        checkpoint, origin = env, ENV
    elif setting.checkpoint:
        checkpoint, origin = setting.checkpoint, SETTINGS
    else:
        checkpoint, origin = "", FOUND
    overridden = setting.checkpoint if origin in (FLAG, ENV) and setting.checkpoint != checkpoint else ""
    if options.model_type:
        model_type, type_origin = options.model_type, MODEL_FLAG
    elif setting.model_type:
        model_type, type_origin = setting.model_type, SETTINGS
    else:
        model_type, type_origin = "", FROM_CHECKPOINT
    choice = replace(setting, checkpoint=checkpoint, model_type=model_type)
    return choice, ModelOrigin(origin, type_origin, overridden)


def describe_model(model_type: str, device: str, path: str, origin: ModelOrigin) -> tuple[str, str]:
    """(status bar text, its tooltip) for a loaded model."""
    name = os.path.basename(path) or path
    where = f"found in {os.path.dirname(path)}" if origin.checkpoint == FOUND else f"from {origin.checkpoint}"
    text = f"{model_type} ({device}) · {name} · {'found' if origin.checkpoint == FOUND else origin.checkpoint}"
    tip = [f"Checkpoint: {path}", f"  {where}", f"Model type {model_type}: {'from ' if origin.model_type != FROM_CHECKPOINT else ''}"
           f"{origin.model_type}", "Order: --checkpoint flag, then PERSAM_CHECKPOINT, then Settings, then the checkpoint folders."]
    if origin.overridden:
        tip.append(f"Not used: {origin.overridden} (Settings), because {origin.checkpoint} wins.")
    return text, "\n".join(tip)
