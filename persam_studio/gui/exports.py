"""Worker-side work of the background preview and the dataset export. No Qt here.

The background preview is computed at display size (the size of the
display mask), so a new mask costs a few milliseconds of blending, never a
12 MP composite; the GUI thread only wraps the returned array in a QImage.
The dataset export is :func:`persam_studio.core.io.dataset_export.export_dataset`
over the album's saved masks, its steps turned into the app's
:class:`~persam_studio.gui.backend.Step`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from persam_studio.core.edges.composite import composite
from persam_studio.core.edges.cutout import Background, parse_background
from persam_studio.core.io.album import Album
from persam_studio.gui.backend import Step

#: The Export dialog's dataset choices: key -> (export_dataset format, COCO segmentation, sub-folder).
DATASETS: dict[str, tuple[str, str, str]] = {
    "coco-polygon": ("coco", "polygon", "coco"),
    "coco-rle": ("coco", "rle", "coco"),
    "yolo": ("yolo", "polygon", "yolo"),
    "polygons": ("polygons", "polygon", "labelme"),
}


def load_background(spec: str) -> tuple[Background, str]:
    """A background from the picker's text (colour, ``blur`` or a picture file); see ``parse_background``."""
    return parse_background(spec)


def preview_composite(pixels: np.ndarray, mask: np.ndarray, background: Background,
                      small: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The photo's object on ``background`` at the display mask's size.

    Args:
        pixels: uint8 (H, W, 3) RGB photo, full size.
        mask: bool (h, w) display mask.
        background: an RGB colour, ``"blur"`` or a uint8 RGB picture.
        small: ``pixels`` already reduced to (h, w), when the caller kept it.

    Returns:
        (small, composite): the reduced photo (to keep for the next mask) and
        uint8 (h, w, 3) RGB.
    """
    h, w = mask.shape
    if small is None or small.shape[:2] != (h, w):
        small = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA) if pixels.shape[:2] != (h, w) else pixels
    return small, composite(small, mask, background)


def dataset_steps(album: Album, photos: Sequence[Path], folder: Path, kind: str, name: str,
                  should_cancel: Callable[[], bool], done: int = 0, total: int | None = None,
                  saved: Callable[[], object] | None = None) -> Iterator[Step]:
    """Write the album's masks of ``photos`` as a dataset into ``folder/<coco|yolo|labelme>``.

    Steps count from ``done`` to ``total`` (another export may run before it
    in the same job). The COCO JSON and YOLO's data.yaml are written after
    the last step: a job cancelled before then writes none. ``saved()``
    blocks until the album's pending saves are on disk (the masks are read
    from there); called here, in the worker.
    """
    from persam_studio.core.io.dataset_export import album_masks, export_dataset

    fmt, segmentation, sub = DATASETS[kind]
    if saved is not None:
        saved()
    total = len(photos) + done if total is None else total
    for step in export_dataset(list(photos), [album_masks(album, name)], folder / sub, fmt,
                               segmentation=segmentation, protected=[album.path_of(r) for r in album.records],
                               should_cancel=should_cancel):
        yield Step(done + step.index + 1, total, step.path, error=step.error)
