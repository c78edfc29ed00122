"""numpy arrays to Qt images and paths, and back. GUI thread only.

Workers decode to numpy and never build Qt images: Qt's image code takes
process-wide locks while PySide6 holds the GIL, which deadlocked the app
(see :mod:`persam_studio.gui.thumbnails`). Everything here runs on the GUI
thread, after the decoding is done.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage, QPainterPath, QPolygonF


def mask_u8(mask: np.ndarray) -> np.ndarray:
    """A bool (h, w) mask as uint8 0/1 for OpenCV: a view when it can be (no 2.7 MB copy
    per click at 1920x1440), else a contiguous copy."""
    mask = np.asarray(mask)
    if mask.dtype == bool and mask.flags.c_contiguous:
        return mask.view(np.uint8)
    return np.ascontiguousarray(mask, dtype=np.uint8)


def rgb_to_qimage(pixels: np.ndarray, copy: bool = True) -> QImage:
    """uint8 (H, W, 3) RGB -> QImage.

    ``copy=False`` wraps ``pixels`` without copying: the QImage is valid only
    while ``pixels`` lives, so use it at once (``QPixmap.fromImage`` copies).
    That spares the GUI thread a second copy of a large photo.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w, _ = pixels.shape
    image = QImage(pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return image.copy() if copy else image


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """A QImage -> uint8 (H, W, 3) RGB copy (tests, screenshots)."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h = image.width(), image.height()
    buf = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h)
    return buf.reshape(h, image.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()


#: Palette of the overlay image (:func:`overlay_index`): indices 0..FILL_LEVELS
#: are the fill's coverage (0 none, FILL_LEVELS all), OUTLINE_IN the raster
#: outline (the mask's border pixels); 255 is unused (transparent).
FILL_LEVELS = 253
OUTLINE_IN = 254


def overlay_index(mask: np.ndarray, scale: float, outline: bool) -> np.ndarray:
    """Palette indices of the mask overlay, at ``scale`` x the mask's size.

    Args:
        mask: bool (h, w) display mask.
        scale: overlay pixels per mask pixel, <= 1 (the view's resolution:
            drawing a smaller image is cheaper than scaling a bigger one at
            every repaint). Coverage is area-averaged, so edges stay smooth.
        outline: mark the mask's border pixels with OUTLINE_IN: masks too
            ragged for a vector outline.

    Returns:
        uint8 (round(h * scale), round(w * scale)): see :data:`FILL_LEVELS`.
    """
    m = mask_u8(mask)
    h, w = m.shape
    index = m * np.uint8(FILL_LEVELS)
    if scale < 1.0:
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        # Exact halvings by area averaging while the target is at most half
        # the size, then bilinear (within 2x every source pixel still counts).
        # cv2's area averaging at a non-integer ratio costs 6x as much
        # (7.7 vs 1.2 ms from 1920x1440), a third of the click budget.
        while index.shape[1] >= 2 * size[0] and index.shape[0] >= 2 * size[1]:
            index = cv2.resize(index, (index.shape[1] // 2, index.shape[0] // 2), interpolation=cv2.INTER_AREA)
        if (index.shape[1], index.shape[0]) != size:
            index = cv2.resize(index, size, interpolation=cv2.INTER_LINEAR)
    if outline:
        # The mask's own border pixels at this resolution: a 1-pixel line on
        # screen, like the vector outline's cosmetic pen.
        inside = (index > FILL_LEVELS // 2).view(np.uint8)
        edge = cv2.subtract(inside, cv2.erode(inside, np.ones((3, 3), np.uint8)))
        # cv2.copyTo with a mask: numpy's masked copies are ~20x slower on a
        # ragged mask's many edge pixels.
        index = cv2.copyTo(np.full_like(index, OUTLINE_IN), edge, index)
    return index


def overlay_colors(fill: QColor, opacity: float, outline: QColor | None) -> list[int]:
    """The 256 QRgb entries for :func:`overlay_index`'s image.

    ``opacity`` scales the fill only; ``outline`` None hides the outline
    (its pixels then show the fill).
    """
    return list(_overlay_colors(fill.rgba(), round(max(0.0, min(1.0, opacity)), 4),
                                None if outline is None else outline.rgba()))


@functools.lru_cache(maxsize=16)
def _overlay_colors(fill: int, opacity: float, outline: int | None) -> tuple[int, ...]:
    # 256 QColors in Python cost ~1.5 ms: made once per (colour, opacity, outline).
    rgb = fill & 0xFFFFFF
    colors = [(int(round(255 * opacity * level / FILL_LEVELS)) << 24) | rgb for level in range(FILL_LEVELS + 1)]
    colors.append(outline if outline is not None else colors[FILL_LEVELS])
    colors.append(colors[0])
    return tuple(colors)


def indexed_qimage(index: np.ndarray, colors: list[int]) -> QImage:
    """uint8 (h, w) palette indices -> an Indexed8 QImage (a copy) with ``colors``."""
    index = np.ascontiguousarray(index, dtype=np.uint8)
    h, w = index.shape
    image = QImage(index.data, w, h, w, QImage.Format.Format_Indexed8).copy()
    image.setColorTable(colors)
    return image


#: Above this many outline points a vector path costs more than the decoder
#: (a speckled 1920x1440 mask: ~50,000 points in 3,000 contours took ~0.5 s to
#: build and ~0.2 s to stroke per repaint); such masks get a raster outline.
MAX_PATH_POINTS = 4000


def outline_path(mask: np.ndarray, scale_x: float = 1.0, scale_y: float = 1.0,
                 max_points: int | None = None) -> QPainterPath | None:
    """The mask's boundary as a path, scaled into image coordinates.

    Args:
        mask: bool (h, w) display mask.
        scale_x, scale_y: image pixels per mask pixel.
        max_points: return None instead when the contours have more points
            (use :func:`overlay_index`'s raster outline).
    """
    path = QPainterPath()
    m = mask_u8(mask)
    # A mask whose edge is far longer than max_points pixels would fail the test
    # below anyway; counting edge pixels (on every other row: a threshold, not a
    # measure; ~0.5 ms) spares findContours (~25 ms) on it.
    if max_points is not None and 2 * np.count_nonzero(m[::2, 1:] != m[::2, :-1]) > 8 * max_points:
        return None
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    if max_points is not None and sum(len(c) for c in contours) > max_points:
        return None
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64)
        if len(pts) < 2:
            continue
        # Contour points are pixel centres; +0.5 puts the line on the mask's edge cells.
        # Python floats: numpy scalars handed to Qt have crashed PySide6.
        pts = ((pts + 0.5) * (scale_x, scale_y)).tolist()
        path.addPolygon(QPolygonF([QPointF(x, y) for x, y in pts]))
        path.closeSubpath()
    return path


def tint_thumbnail(thumb: np.ndarray, mask: np.ndarray | None, color: QColor) -> QImage:
    """uint8 (h, w, 3) RGB ``thumb`` with ``mask`` (bool, any size) blended in ``color`` (50 %)."""
    if mask is None:
        return rgb_to_qimage(thumb)
    rgb = np.array(thumb, dtype=np.uint8)  # a copy: the stored thumbnail stays untinted
    h, w = rgb.shape[:2]
    # Nearest is plenty for a tint, and ~10x cheaper than area averaging a
    # display-size mask (this runs on every mask change, before the repaint).
    m = cv2.resize(mask_u8(mask), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    tint = np.array([color.red(), color.green(), color.blue()], np.float32)
    rgb[m] = (rgb[m] * 0.5 + tint * 0.5).astype(np.uint8)
    return rgb_to_qimage(rgb)
