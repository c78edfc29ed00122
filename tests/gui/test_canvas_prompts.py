"""Clicking on the canvas gives the engine's mask; undo, redo, Tab, Esc, box, brush."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from tests.gui.conftest import wait_idle


def click(qtbot, window, x: float, y: float, button=Qt.MouseButton.LeftButton) -> None:
    """Click image pixel (x, y) on the canvas viewport and wait for the mask."""
    pos = window.canvas.view_point(x, y)
    qtbot.mouseClick(window.canvas.viewport(), button, pos=pos)
    wait_idle(qtbot, window)


def drag(window, start, end, button=Qt.MouseButton.LeftButton, steps: int = 6) -> None:
    """Press at image pixel ``start``, move in steps, release at ``end``."""
    vp = window.canvas.viewport()

    def send(kind, xy, buttons):
        p = QPointF(window.canvas.view_point(*xy))
        ev = QMouseEvent(kind, p, vp.mapToGlobal(p), button if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton,
                         buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)

    send(QEvent.Type.MouseButtonPress, start, button)
    for t in np.linspace(0, 1, steps)[1:]:
        send(QEvent.Type.MouseMove, (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])), button)
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def engine_mask(window, coords, labels, box=None, index=None):
    """What the engine itself answers, at the canvas's display size."""
    s = window.images.session
    multimask = len(coords) + (box is not None) == 1
    result = window.engine.predict(
        s.embedding,
        point_coords=None if not coords else np.array(coords, float),
        point_labels=None if not labels else np.array(labels),
        box=box,
        multimask_output=multimask,
    )
    return result.mask(result.best_index if index is None else index, s.display_size), result


@pytest.fixture()
def window(make_window, album_dir, qtbot):
    w = make_window()
    assert w.open_paths([album_dir])
    wait_idle(qtbot, w)
    return w


def test_click_gives_the_engines_mask_at_display_size(window, qtbot):
    click(qtbot, window, 250, 140)
    state = window.images.state
    assert len(state.points) == 1
    p = state.points[0]
    assert abs(p.x - 250) <= 1 and abs(p.y - 140) <= 1 and p.label == 1
    expected, result = engine_mask(window, [(p.x, p.y)], [1])
    shown = window.canvas.current_mask
    assert shown is not None and shown.shape == window.images.session.display_size
    # The app upsamples with OpenCV (4x faster than torch): only pixels whose logit is ~0 may differ.
    assert (shown != expected).mean() <= 1e-4
    assert len(result) == 3  # one click: three candidates to cycle through


def test_tab_cycles_candidates_and_is_undoable(window, qtbot):
    click(qtbot, window, 250, 140)
    p = window.images.state.points[0]
    _, result = engine_mask(window, [(p.x, p.y)], [1])
    first = window.images.state.candidate_index
    qtbot.keyClick(window.canvas, Qt.Key.Key_Tab)
    second = window.images.state.candidate_index
    assert second == (first + 1) % 3
    assert (window.canvas.current_mask != result.mask(second, window.images.session.display_size)).mean() <= 1e-4
    window.images.undo_stack.undo()
    assert window.images.state.candidate_index == first


def test_background_click_undo_redo_and_escape(window, qtbot):
    click(qtbot, window, 250, 140)
    one_point = window.canvas.current_mask.copy()
    click(qtbot, window, 60, 40, Qt.MouseButton.RightButton)
    pts = window.images.state.points
    assert [q.label for q in pts] == [1, 0]
    expected, _ = engine_mask(window, [(q.x, q.y) for q in pts], [1, 0])
    # OpenCV display upsampling: only pixels whose logit is ~0 may differ from the engine's.
    assert (window.canvas.current_mask != expected).mean() <= 1e-4
    two_points = window.canvas.current_mask.copy()  # undo/redo must give back exactly what was shown

    predicts = window.engine.predicts
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(window.images.state.points) == 1
    np.testing.assert_array_equal(window.canvas.current_mask, one_point)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(window.images.state.points) == 2
    np.testing.assert_array_equal(window.canvas.current_mask, two_points)
    assert window.engine.predicts == predicts, "undo/redo must not ask the model again"

    qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert window.images.state.is_empty and window.canvas.current_mask is None
    window.images.undo_stack.undo()
    np.testing.assert_array_equal(window.canvas.current_mask, two_points)


def test_drag_draws_a_box_prompt(window, qtbot):
    drag(window, (190, 80), (310, 200))
    wait_idle(qtbot, window)
    box = window.images.state.box
    assert box is not None and not window.images.state.points
    assert abs(box.x0 - 190) <= 1 and abs(box.y1 - 200) <= 1
    expected, _ = engine_mask(window, [], [], box=box.as_array())
    np.testing.assert_array_equal(window.canvas.current_mask, expected)


def test_brush_and_eraser_touch_up_the_mask(window, qtbot):
    window.actions_.tool_brush.trigger()
    window.canvas.brush_px = 20
    drag(window, (20, 250), (120, 250))
    mask = window.canvas.current_mask
    assert mask is not None and mask[250, 20:120].all()
    assert window.images.state.strokes[0].mode == "add"
    window.actions_.tool_eraser.trigger()
    drag(window, (40, 250), (60, 250))
    mask = window.canvas.current_mask
    assert not mask[250, 45:55].any() and mask[250, 80:110].all()
    window.images.undo_stack.undo()
    assert window.canvas.current_mask[250, 45:55].all()


def test_clicks_while_encoding_are_queued_then_applied_once(make_window, make_engine, album_dir, qtbot):
    engine = make_engine(hold_after=0)  # every encode waits at the gate
    window = make_window(engine)
    window.open_paths([album_dir])
    qtbot.waitUntil(lambda: window.images.session is not None and engine.waiting.is_set(), timeout=20000)
    assert window.images.busy
    for x in (240, 250, 260):
        qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=window.canvas.view_point(x, 140))
    assert len(window.images.state.points) == 3  # shown at once as markers
    assert window.canvas.current_mask is None and engine.predicts == 0
    engine.gate.set()
    wait_idle(qtbot, window)
    assert engine.predicts == 1, "queued clicks are sent as one request"
    pts = window.images.state.points
    expected, _ = engine_mask(window, [(q.x, q.y) for q in pts], [1, 1, 1])
    np.testing.assert_array_equal(window.canvas.current_mask, expected)


def test_zoom_fit_and_100_percent(window, qtbot):
    c = window.canvas
    window.actions_.zoom_100.trigger()
    assert c.zoom == pytest.approx(1.0)
    window.actions_.zoom_in.trigger()
    assert c.zoom == pytest.approx(1.25)
    window.actions_.fit.trigger()
    view = c.viewport().size()
    h, w = c.image_size
    assert c.zoom == pytest.approx(min(view.width() / w, view.height() / h), rel=0.05)
    assert "%" in window.status.zoom_label.text()


def test_masks_are_computed_at_display_size_not_full_size(make_window, album_dir, qtbot):
    window = make_window()
    window.images.display_cap = 200  # a small screen: 400x300 photos show at 200x150
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    assert window.images.session.display_size == (150, 200)
    click(qtbot, window, 250, 140)
    p = window.images.state.points[0]
    expected, _ = engine_mask(window, [(p.x, p.y)], [1])
    assert expected.shape == (150, 200)
    np.testing.assert_array_equal(window.canvas.current_mask, expected)
    assert window.images.state.prediction.display_size == (150, 200)
