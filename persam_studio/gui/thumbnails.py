"""Album thumbnails, decoded in the I/O lane as numpy arrays. No Qt here.

Worker threads never touch Qt's image classes (QImage, QImageReader,
QPixmap, QIcon): they decode with the core's PIL reader and hand back numpy
arrays; the GUI thread makes the Qt images. Why: a PySide6 call keeps the
GIL while Qt works, and Qt's image I/O takes process-wide locks (the plugin
loader's mutex, in ``QFactoryLoader::instance``). The GUI thread holds such
locks too, and while holding them it can need the GIL (any virtual call on
an object made from Python asks Python whether it is overridden). A worker
in ``QImageReader.size()`` (GIL held, waiting for the loader's mutex) and
the GUI thread (mutex held, waiting for the GIL) then wait for each other
forever: the app hung at start-up about once in 15 starts. PIL releases the
GIL while decoding and takes no Qt lock, so the cycle cannot form.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from persam_studio.core.io.album import Album, ImageRecord, ImageState
from persam_studio.core.errors import PersamError
from persam_studio.core.io.imageio import load_image


def load_thumbnail(path: Path, side: int) -> np.ndarray:
    """The photo at ``path`` scaled so its long side is at most ``side``.

    Returns:
        uint8 (h, w, 3) RGB, EXIF-oriented, C-contiguous.

    Raises:
        ImageReadError: missing, empty, truncated or not an image (one line).
    """
    # The whole file is decoded (and so validated): a damaged photo shows as
    # unreadable here, not later when the user opens it.
    pixels = load_image(path).pixels
    h, w = pixels.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(pixels)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # INTER_AREA averages the pixels each thumbnail pixel covers: no aliasing.
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def thumbnail_job(path: Path, side: int, album: Album, record: ImageRecord) -> tuple[np.ndarray, np.ndarray | None]:
    """I/O lane: (thumbnail pixels, the saved display mask or None) of one photo."""
    pixels = load_thumbnail(path, side)
    mask = album.load_display_mask(record) if record.state != ImageState.UNTOUCHED else None
    return pixels, mask


def unreadable_reason(exc: BaseException) -> str:
    """One line for a thumbnail's tooltip: the problem, without the path."""
    if isinstance(exc, PersamError):
        return exc.problem
    # Not a user error (a bug, out of memory): still one line, never a trace.
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
