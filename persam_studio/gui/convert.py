"""numpy arrays to Qt images and paths, and back. GUI thread only.

Workers decode to numpy and never build Qt images: Qt's image code takes
process-wide locks while PySide6 holds the GIL, which deadlocked the app
(see :mod:`persam_studio.gui.thumbnails`). Everything here runs on the GUI
thread, after the decoding is done.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QImage, QPainterPath, QPolygonF


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


def mask_to_qimage(mask: np.ndarray, color: QColor) -> QImage:
    """bool (h, w) -> indexed QImage: transparent outside, ``color`` inside."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    h, w = m.shape
    image = QImage(m.data, w, h, w, QImage.Format.Format_Indexed8).copy()
    image.setColorTable([QColor(0, 0, 0, 0).rgba(), color.rgba()])
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
            (use :func:`outline_image`).
    """
    path = QPainterPath()
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    # A mask whose edge is far longer than max_points pixels would fail the test
    # below anyway; counting edge pixels (~2 ms) spares findContours (~25 ms) on it.
    if max_points is not None and np.count_nonzero(m[:, 1:] != m[:, :-1]) > 8 * max_points:
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


def outline_image(mask: np.ndarray, color: QColor) -> QImage:
    """The mask's boundary as an indexed QImage of the mask's size: ``color`` on its edge pixels.

    Two pixels wide (inside and outside the edge), so it stays visible when
    the display mask is drawn at half size.
    """
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    edges = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    h, w = edges.shape
    image = QImage(edges.data, w, h, w, QImage.Format.Format_Indexed8).copy()
    image.setColorTable([QColor(0, 0, 0, 0).rgba(), color.rgba()])
    return image


def tint_thumbnail(thumb: np.ndarray, mask: np.ndarray | None, color: QColor) -> QImage:
    """uint8 (h, w, 3) RGB ``thumb`` with ``mask`` (bool, any size) blended in ``color`` (50 %)."""
    if mask is None:
        return rgb_to_qimage(thumb)
    rgb = np.array(thumb, dtype=np.uint8)  # a copy: the stored thumbnail stays untinted
    h, w = rgb.shape[:2]
    # Nearest is plenty for a tint, and ~10x cheaper than area averaging a
    # display-size mask (this runs on every mask change, before the repaint).
    m = cv2.resize(np.ascontiguousarray(mask, dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    tint = np.array([color.red(), color.green(), color.blue()], np.float32)
    rgb[m] = (rgb[m] * 0.5 + tint * 0.5).astype(np.uint8)
    return rgb_to_qimage(rgb)
