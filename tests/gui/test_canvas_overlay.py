"""The mask overlay: drawn at the view's resolution, rebuilt on zoom, opacity and outline as set."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QColor

from persam_studio.gui.canvas import Canvas
from persam_studio.gui.convert import FILL_LEVELS, OUTLINE_IN, overlay_index, qimage_to_rgb, rgb_to_qimage


def test_overlay_index_marks_fill_coverage_and_the_border():
    mask = np.zeros((40, 60), bool)
    mask[10:30, 20:50] = True
    index = overlay_index(mask, 1.0, outline=True)
    assert index[20, 35] == FILL_LEVELS and index[0, 0] == 0
    assert index[10, 35] == OUTLINE_IN and index[20, 20] == OUTLINE_IN and index[29, 49] == OUTLINE_IN
    assert index[9, 35] == 0 and index[11, 35] == FILL_LEVELS  # one pixel wide, inside the mask
    assert (overlay_index(mask, 1.0, outline=False) == mask * FILL_LEVELS).all()
    # Half size: each overlay pixel averages 2 x 2 mask pixels; an edge that
    # cuts a pixel in half gives half coverage.
    half = overlay_index(mask, 0.5, outline=False)
    assert half.shape == (20, 30)
    odd = np.zeros((40, 60), bool)
    odd[:, 21:] = True
    assert abs(int(overlay_index(odd, 0.5, outline=False)[5, 10]) - FILL_LEVELS // 2) <= 1


@pytest.fixture()
def canvas(qtbot):
    c = Canvas()
    c.resize(500, 400)
    qtbot.addWidget(c)
    c.show()
    qtbot.waitExposed(c)
    gray = np.full((1500, 2000, 3), 128, np.uint8)
    c.set_image(rgb_to_qimage(gray))
    return c


def _screen(canvas, x: float, y: float) -> np.ndarray:
    """RGB of image pixel (x, y) as painted on the viewport."""
    rgb = qimage_to_rgb(canvas.viewport().grab().toImage())
    p = canvas.view_point(x, y)
    return rgb[p.y(), p.x()].astype(int)


def test_overlay_is_drawn_at_the_views_resolution_and_rebuilt_when_zooming(canvas, qtbot):
    mask = np.zeros((750, 1000), bool)  # a display mask at half the photo's size
    mask[200:500, 300:700] = True
    canvas.set_mask(mask)
    fit = canvas.zoom  # ~0.24: the view shows about 480 of the photo's 2000 columns
    assert canvas._overlay.width() == round(1000 * min(1.0, fit * 2))  # not the mask's 1000
    inside, outside = _screen(canvas, 1000, 700), _screen(canvas, 200, 200)
    assert (outside == 128).all()
    assert inside[2] > 128 + 40 and inside[0] < 128 - 20  # blue over gray
    canvas.zoom_by(4.0)
    assert canvas._overlay.width() == round(1000 * min(1.0, canvas.zoom * 2))  # finer now
    canvas.zoom_by(4.0)
    assert canvas._overlay.width() == 1000  # never more than the mask itself
    canvas.fit()
    assert canvas._overlay.width() == round(1000 * min(1.0, fit * 2))


def test_opacity_and_outline_change_what_is_painted(canvas, qtbot):
    rng = np.random.default_rng(0)
    ragged = rng.random((750, 1000)) < 0.5  # too ragged for a vector outline: the raster one
    canvas.set_mask(ragged)
    assert canvas._raster_outline
    index = overlay_index(ragged, canvas._overlay_scale, True)
    assert (index == OUTLINE_IN).any()
    colors = canvas._overlay.colorTable()
    assert QColor.fromRgba(colors[OUTLINE_IN]).name() == "#ffffff"
    canvas.set_outline(False)
    assert canvas._overlay.colorTable()[OUTLINE_IN] == canvas._overlay.colorTable()[FILL_LEVELS]
    canvas.set_opacity(0.0)
    assert QColor.fromRgba(canvas._overlay.colorTable()[FILL_LEVELS]).alpha() == 0
    solid = np.zeros((750, 1000), bool)
    solid[200:500, 300:700] = True
    canvas.set_mask(solid)
    assert (_screen(canvas, 1000, 700) == 128).all()  # opacity 0: nothing drawn
    canvas.set_opacity(1.0)
    px = _screen(canvas, 1000, 700)
    assert abs(px[2] - 255) <= 2 and abs(px[0] - 30) <= 2  # the mask colour itself
