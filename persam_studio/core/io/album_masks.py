"""A saved album mask at full image size: the saved base plus brush strokes.

The album keeps each mask as its *base* (SAM's low-res logits, or a bitmap
loaded from a file) and the strokes painted on top (see
:mod:`persam_studio.core.io.album`). Exports, references and datasets all need
the same full-size mask, so it is rebuilt in one place, here. No Qt; torch
is imported only to upsample logits (the engine's post-processing is the
reference, so an exported mask equals the one the model gave).

Sizes and coordinates: (H, W) of the EXIF-oriented image; strokes are in its
pixels, x = column, y = row.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from persam_studio.core.io.album import Album, ImageRecord, Stroke
from persam_studio.core.errors import MaskError
from persam_studio.core.geometry import sam_input_size, upscale_logits


def render_strokes(
    mask: np.ndarray, strokes: tuple[Stroke, ...] | list[Stroke], original_size: tuple[int, int]
) -> np.ndarray:
    """Paint ``strokes`` (original-image coordinates) onto a copy of ``mask``.

    Args:
        mask: bool (h, w) at any size; strokes are scaled from
            ``original_size`` (H, W) to it.

    Returns:
        bool (h, w).
    """
    h, w = mask.shape
    sy, sx = h / original_size[0], w / original_size[1]
    out = mask.astype(np.uint8)
    shift = 4  # sub-pixel precision for cv2 drawing
    for s in strokes:
        value = 1 if s.mode == "add" else 0
        r = max(1, int(round(s.radius * (sx + sy) / 2 * (1 << shift))))
        pts = np.round(np.array(s.points, float).reshape(-1, 2) * (sx, sy) * (1 << shift)).astype(np.int32)
        if len(pts) == 1:
            cv2.circle(out, tuple(int(v) for v in pts[0]), r, value, -1, cv2.LINE_8, shift)
        else:
            # Thick polylines get round joins and caps from the circles.
            for p in pts:
                cv2.circle(out, (int(p[0]), int(p[1])), r, value, -1, cv2.LINE_8, shift)
            thickness = max(1, int(round(2 * r / (1 << shift))))
            cv2.polylines(out, [pts], False, value, thickness, cv2.LINE_8, shift)
    return out.astype(bool)


def full_size_mask(
    original_size: tuple[int, int],
    logits: np.ndarray | None = None,
    bitmap: np.ndarray | None = None,
    strokes: Sequence[Stroke] = (),
) -> np.ndarray:
    """The mask at full image size, for export and references.

    Args:
        original_size: (H, W) of the oriented image.
        logits: float (256, 256) low-res logits of the base, or None.
        bitmap: bool (H, W) base given as pixels, or None.
        strokes: brush/eraser strokes in image pixels.

    Returns:
        bool (H, W). Upsampled once, here, never on a click.
    """
    if logits is not None:
        mask = full_size_logits(original_size, logits) > 0.0
    elif bitmap is not None:
        mask = np.asarray(bitmap, bool)
    else:
        mask = np.zeros(original_size, bool)
    if strokes:
        mask = render_strokes(mask, tuple(strokes), original_size)
    return mask


def full_size_logits(original_size: tuple[int, int], logits: np.ndarray) -> np.ndarray:
    """float32 (H, W) SAM logits at full size from the album's (256, 256) low-res logits.

    SAM's own post-processing (:func:`~persam_studio.core.geometry.upscale_logits`,
    torch imported only here); for a refined export's edge band.
    """
    low = np.asarray(logits, np.float32).reshape(1, 1, 256, 256)
    return upscale_logits(low, sam_input_size(original_size), tuple(original_size))[0, 0]


def has_saved_mask(record: ImageRecord) -> bool:
    """Does the album hold a mask for this image (a base, or strokes alone)?"""
    return record.base != "none" or bool(record.strokes)


def saved_mask(album: Album, record: ImageRecord, original_size: tuple[int, int]) -> np.ndarray | None:
    """The record's mask at full size, bool (H, W); None when it has none.

    Raises:
        MaskError: the saved base file is missing or damaged (the app
            recomputes it from the prompts when the image is opened).
    """
    if not has_saved_mask(record):
        return None
    logits = bitmap = None
    if record.base == "logits":
        logits = album.load_logits(record)
        if logits is None:
            raise MaskError(album.mask_file(record, "logits"), "saved mask is missing or damaged; "
                            "open the album in the app to recompute it")
    elif record.base == "bitmap":
        bitmap = album.load_bitmap(record)
        if bitmap is None or bitmap.shape != tuple(original_size):
            raise MaskError(album.mask_file(record, "bitmap"), "saved mask is missing, damaged "
                            "or not the image's size")
    return full_size_mask(original_size, logits, bitmap, record.strokes)
