"""Finding the checkpoint to use: ``--checkpoint``, ``PERSAM_CHECKPOINT``, folders.

:func:`find_checkpoint` looks, in order, at an explicit path, the
``PERSAM_CHECKPOINT`` variable, the project's ``checkpoints/`` folders and the
user data folder (:func:`~.registry.checkpoint_dirs`); with several files it
prefers the fastest model on a CPU. Failures are one-line
:class:`CheckpointError` messages naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from persam_studio.core.errors import CheckpointError
from persam_studio.core.models import registry
from persam_studio.core.models.checkpoints import checkpoint_type
from persam_studio.core.models.registry import CHECKPOINT_SUFFIXES, KNOWN_MODELS

_NO_CHECKPOINT_HINT = "run 'persam-studio download {t}' or pass --checkpoint PATH"


def _candidates(folder: Path) -> list[Path]:
    """Checkpoint files in ``folder``; hidden files (``.x.part``) are skipped."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries
            if p.suffix.lower() in CHECKPOINT_SUFFIXES and not p.name.startswith(".") and p.is_file()]


def _speed_rank(model_type: str | None) -> int:
    if model_type in KNOWN_MODELS:
        return KNOWN_MODELS[model_type].cpu_speed_rank
    return len(KNOWN_MODELS) + (0 if model_type else 1)


def _pick(files: list[Path], model_type: str | None) -> Path | None:
    """The file of ``model_type`` among ``files``, else the fastest on a CPU."""
    if not files:
        return None
    if model_type:
        known = KNOWN_MODELS.get(model_type)
        by_name = [f for f in files if known and f.name == known.filename]
        return (by_name or [f for f in files if checkpoint_type(f) == model_type] or [None])[0]
    # Unknown or unreadable files still count (last): loading one gives a clear error.
    return min(files, key=lambda f: (_speed_rank(checkpoint_type(f)), f.name))


def _explicit(path: str | Path, model_type: str | None, origin: str = "") -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        chosen = _pick(_candidates(path), model_type)
        if chosen is None:
            what = f"{model_type} checkpoint" if model_type else "checkpoint (.pth/.pt)"
            raise CheckpointError(path, f"no {what} in this folder{origin}")
        return chosen
    if not path.exists():
        raise CheckpointError(path, f"not found{origin}")
    return path


def find_checkpoint(explicit: str | Path | None = None, model_type: str | None = None) -> Path | None:
    """The checkpoint to use, or None when there is none.

    Order: ``explicit`` (``--checkpoint``, a file or a folder), the
    ``PERSAM_CHECKPOINT`` variable, then :func:`checkpoint_dirs`. Within a
    folder, the file of ``model_type`` (by known name, else by its shapes);
    with no ``model_type``, the fastest on a CPU (vit_t, vit_b, vit_l, vit_h).

    Raises:
        CheckpointError: ``explicit`` or ``PERSAM_CHECKPOINT`` names a missing path.
    """
    if explicit:
        return _explicit(explicit, model_type)
    env = os.environ.get("PERSAM_CHECKPOINT")
    if env:
        return _explicit(env, model_type, " (set in PERSAM_CHECKPOINT)")
    for folder in registry.checkpoint_dirs():
        chosen = _pick(_candidates(folder), model_type)
        if chosen is not None:
            return chosen
    return None


def require_checkpoint(explicit: str | Path | None = None, model_type: str | None = None) -> Path:
    """Like :func:`find_checkpoint` but raises a one-line CheckpointError when none is found."""
    path = find_checkpoint(explicit, model_type)
    if path is None:
        what = f"{model_type} checkpoint" if model_type else "SAM checkpoint"
        raise CheckpointError(None, f"no {what} found; " + _NO_CHECKPOINT_HINT.format(t=model_type or "vit_b"))
    return path


def found_checkpoints() -> list[tuple[Path, str | None]]:
    """Every checkpoint file discoverable now, in search order, with its type if known."""
    files: list[Path] = []
    env = Path(os.environ["PERSAM_CHECKPOINT"]).expanduser() if os.environ.get("PERSAM_CHECKPOINT") else None
    if env is not None:
        files += _candidates(env) if env.is_dir() else [env] if env.is_file() else []
    for folder in registry.checkpoint_dirs():
        files += _candidates(folder)
    seen: set[str] = set()
    found = []
    for f in files:
        key = os.path.normcase(os.path.abspath(f))
        if key not in seen:
            seen.add(key)
            found.append((f, checkpoint_type(f)))
    return found
