"""Typed errors of the core.

Every error a user can cause (a bad file, a wrong checkpoint, a mask of the
wrong size) is one of these. Their ``str()`` is a single line that names the
file and the problem; the CLI prints it as ``error: <message>`` and the GUI
shows it in a dialog. Nothing in the core uses ``assert`` for user input.
"""

from __future__ import annotations

from pathlib import Path


class PersamError(Exception):
    """Base class of all user-facing errors; ``str()`` is one line."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        # Keep the message on one line whatever the underlying library said.
        self.problem = " ".join(str(problem).split())
        super().__init__(self.path, self.problem)

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


class ImageReadError(PersamError):
    """An image file cannot be read or decoded."""


class MaskError(PersamError):
    """A mask file is unreadable, empty, or does not fit its image."""


class CheckpointError(PersamError):
    """A checkpoint is missing, truncated, corrupt or not a SAM model."""


class SubjectModelError(PersamError):
    """A subject (salient object) model is missing, truncated, not ONNX or of the wrong shape."""


class DownloadError(PersamError):
    """A model download failed (offline, interrupted, checksum mismatch)."""


class TargetError(PersamError):
    """Target names or the grouping of references into targets are invalid."""


class OutputError(PersamError):
    """An output cannot be written (e.g. it would overwrite an input)."""


class Cancelled(Exception):
    """A long job was cancelled by the user; not an error to report."""
