"""``persam-studio models`` and ``persam-studio download MODEL``.

``models`` shows the model types, which checkpoints were found, the folders
searched and the checkpoint a command would use. ``download`` fetches an
official checkpoint (resumable, SHA-256 verified), or a subject model for
``select`` (rembg's catalogue, MD5 verified), and prints its path.
"""

from __future__ import annotations

import argparse
import os
import sys

# The registry and the subject catalogue are plain data (no torch, no
# onnxruntime import): cheap enough for the parser.
from persam_studio.core.models import KNOWN_MODELS
from persam_studio.core.models.subject import CATALOGUE


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register both ``models`` and ``download`` (one module, two subcommands)."""
    p = subparsers.add_parser(
        "models", parents=[common], help="list model types, checkpoints found and where they are searched",
        description="List the SAM model types, the checkpoints found, the folders searched and the "
        "checkpoint that would be used (--checkpoint and --model change that choice).",
    )
    p.set_defaults(func=run_models)

    names = sorted(KNOWN_MODELS, key=lambda n: KNOWN_MODELS[n].cpu_speed_rank)
    subjects = sorted(CATALOGUE, key=lambda n: CATALOGUE[n].file.cpu_speed_rank)
    p = subparsers.add_parser(
        "download", help="download a SAM checkpoint or a subject model (resumable, checksum verified)",
        description="Download a SAM checkpoint: " + "; ".join(
            f"{n} ({_size(KNOWN_MODELS[n].size_bytes)}): {KNOWN_MODELS[n].description}" for n in names)
        + ". Or a subject model for 'select': " + "; ".join(
            f"{n} ({_size(CATALOGUE[n].file.size_bytes)}): {CATALOGUE[n].file.description}" for n in subjects) + ".",
    )
    names = names + subjects
    p.add_argument("model", choices=names, metavar="MODEL", help="one of: " + ", ".join(names))
    p.add_argument("--dest", metavar="DIR", help="folder to save into (default: checkpoints/ of a source "
                   "checkout, else the user data folder)")
    p.set_defaults(func=run_download)


def run(args: argparse.Namespace) -> int:
    """Dispatch on the subcommand name (both are registered by this module)."""
    return run_download(args) if args.command == "download" else run_models(args)


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def run_models(args: argparse.Namespace) -> int:
    from persam_studio.core import models

    found = models.found_checkpoints()
    rows = [("MODEL", "FILE", "SIZE", "FOUND")]
    for info in sorted(KNOWN_MODELS.values(), key=lambda i: i.cpu_speed_rank):
        path = next((str(p) for p, t in found if t == info.name), "-")
        rows.append((info.name, info.filename, _size(info.size_bytes), path))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
    others = [(p, t) for p, t in found if not any(p.name == i.filename for i in KNOWN_MODELS.values())]
    if others:
        print("\nother checkpoints:")
        for p, t in others:
            print(f"  {p}  ({t or 'type unknown'})")
    env = os.environ.get("PERSAM_CHECKPOINT")
    print("\nsearch order: --checkpoint, PERSAM_CHECKPOINT" + (f" ({env})" if env else " (not set)") + ", then:")
    for folder in models.checkpoint_dirs():
        print(f"  {folder}" + ("" if folder.is_dir() else "  (does not exist)"))
    chosen = models.find_checkpoint(getattr(args, "checkpoint", None), getattr(args, "model", None))
    if chosen is None:
        what = args.model or "vit_b"
        print(f"\nwould use: none; run 'persam-studio download {what}' or pass --checkpoint PATH")
    else:
        kind = models.checkpoint_type(chosen)
        print(f"\nwould use: {chosen}" + (f" ({kind})" if kind else ""))
    _list_subject_models()
    return 0


def _list_subject_models() -> None:
    """The subject models for ``select``: catalogue, files found, the one ``select`` would use."""
    from persam_studio.core import models
    from persam_studio.core.errors import SubjectModelError
    from persam_studio.core.models.subject import SEARCH_ORDER, SUBJECT_MODEL_ENV, find_subject_model

    folders = models.checkpoint_dirs()
    rows = [("SUBJECT MODEL", "FILE", "SIZE", "FOUND")]
    for info in sorted((e.file for e in CATALOGUE.values()), key=lambda i: i.cpu_speed_rank):
        path = next((str(f / info.filename) for f in folders if (f / info.filename).is_file()), "-")
        rows.append((info.name, info.filename, _size(info.size_bytes), path))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print()
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
    others = [f / n for n in SEARCH_ORDER for f in folders
              if (f / n).is_file() and n not in {e.file.filename for e in CATALOGUE.values()}]
    for path in others:
        print(f"  also found: {path}")
    env = os.environ.get(SUBJECT_MODEL_ENV)
    try:
        chosen = f"{find_subject_model()}"
    except SubjectModelError as exc:
        chosen = f"none ({exc})"
    print(f"select would use: {chosen}" + (f" ({SUBJECT_MODEL_ENV}={env})" if env else ""))


def run_download(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import ProgressBar
    from persam_studio.core import models

    subject = args.model in CATALOGUE
    info = CATALOGUE[args.model].file if subject else models.KNOWN_MODELS[args.model]
    bar = ProgressBar(info.size_bytes >> 20, label=f"{info.name} MB")

    def progress(done: int, total: int) -> None:
        bar.update(done >> 20, total >> 20)

    try:
        if subject:
            from persam_studio.core.models.subject import download_subject_model

            path = download_subject_model(args.model, args.dest, progress=progress)
        else:
            path = models.download(info, args.dest, progress=progress)
    finally:
        if bar.done:
            bar.close()
    if info.sha256 is None and info.md5 is None:
        print(f"warning: {path}: not checksum-verified (no known SHA-256 for {info.name})", file=sys.stderr)
    print(path)
    return 0
