"""*Select subject*'s model-side work, run in the model lane (no Qt).

The subject model (:class:`~persam_studio.core.models.subject.SubjectModel`,
ONNX) is opened once, on first use, by the worker that uses it
(:class:`SubjectModelHolder`); the core modules that import onnxruntime are
imported inside the functions, so the window never loads it. What crosses
back to the GUI is plain data: bool masks and the subject's SAM prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from persam_studio.gui.backend import load_pixels
from persam_studio.gui.editing import Bitmap, SubjectBase, display_size

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.models.subject import SubjectModel

#: What the app says when no subject model is found (with the core's own line first).
HOW_TO_GET = ("Get one with 'persam-studio download isnet-general-use' (179 MB, finest edges) or "
              "'persam-studio download u2netp' (5 MB, fast), or choose an ONNX file in "
              "File > Settings… > Subject model.")


class SubjectModelHolder:
    """The subject model of one Settings choice, opened on first :meth:`get`.

    Only the model lane calls :meth:`get` (one thread), so it is opened once.

    Args:
        choice: Settings' subject model (a file or a catalogue name); empty:
            ``$PERSAM_SUBJECT_MODEL``, then the model folders
            (:func:`~persam_studio.core.models.subject.find_subject_model`).
        cache_dir: the subject-map cache folder; empty: the default one.
    """

    def __init__(self, choice: str = "", cache_dir: str = "") -> None:
        self.choice = choice
        self.cache_dir = cache_dir
        self.model: SubjectModel | None = None

    def get(self) -> SubjectModel:
        """The opened model.

        Raises:
            SubjectModelError: none found, or the file is not a usable model.
        """
        if self.model is None:
            from persam_studio.core.models.subject import SubjectModel, find_subject_model
            from persam_studio.core.models.subject_cache import SubjectMapCache, default_subject_cache_dir

            path = find_subject_model(self.choice or None)
            cache = SubjectMapCache(Path(self.cache_dir) if self.cache_dir else default_subject_cache_dir())
            self.model = SubjectModel(path, cache=cache)
        return self.model


def open_model(holder: SubjectModelHolder) -> str:
    """Open the model now (before an album job); returns its file name."""
    return holder.get().path.name


@dataclass(frozen=True, eq=False)
class Selected:
    """The subject of one photo, ready for the canvas and the album.

    Attributes:
        path: the photo; ``done`` of ``total`` for album jobs.
        original_size: (H, W) of the oriented photo; None on error.
        bitmap: the mask, bool (H, W) full size.
        base: the subject as SAM prompt and its confidence.
        display: bool (h, w) mask at the album's display size (thumbnail).
        doubtful: :meth:`~persam_studio.core.segment.selection.Selection.is_doubtful`.
        coverage: fraction of the photo that is subject.
    """

    path: Path
    done: int
    total: int
    original_size: tuple[int, int] | None = None
    bitmap: Bitmap | None = None
    base: SubjectBase | None = None
    display: np.ndarray | None = None
    doubtful: bool = False
    coverage: float = 0.0
    error: str | None = None


def select(holder: SubjectModelHolder, path: Path, pixels: np.ndarray, display_cap: int,
           done: int = 1, total: int = 1) -> Selected:
    """Select the subject of ``pixels`` (uint8 (H, W, 3) RGB, the oriented photo ``path``)."""
    from persam_studio.core.segment.selection import select_subject

    sel = select_subject(holder.get(), pixels)
    size = tuple(pixels.shape[:2])
    bitmap = Bitmap(sel.mask)
    return Selected(Path(path), done, total, size, bitmap, SubjectBase(sel.prompt(), sel.confidence),
                    bitmap.display_mask(display_size(size, display_cap)), sel.is_doubtful(), sel.coverage)


def select_steps(holder: SubjectModelHolder, paths: Sequence[Path], display_cap: int,
                 should_cancel: Callable[[], bool] = lambda: False) -> Iterator[Selected]:
    """The subject of every photo, one item per photo (a photo that fails is an error item)."""
    from persam_studio.core.errors import PersamError

    total = len(paths)
    for i, path in enumerate(paths):
        if should_cancel():
            return
        try:
            yield select(holder, path, load_pixels(path).pixels, display_cap, i + 1, total)
        except (PersamError, OSError, ValueError) as exc:
            yield Selected(Path(path), i + 1, total, error=str(exc))
