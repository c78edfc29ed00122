"""Smooth editing: the old mask stays until the new one arrives; each photo keeps its undo history."""

from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import Qt

from tests.gui.conftest import CountingEngine, wait_idle
from tests.gui.test_canvas_prompts import click


class HeldPredictions(CountingEngine):
    """Predictions wait at ``predict_gate`` while ``hold`` is set."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.hold = False
        self.predict_gate = threading.Event()
        self.predicting = threading.Event()

    def predict(self, *args, **kwargs):
        if self.hold:
            self.predicting.set()
            self.predict_gate.wait(30)
        return super().predict(*args, **kwargs)


def test_previous_mask_stays_until_the_new_one_arrives(make_window, make_engine, album_dir, qtbot):
    engine = HeldPredictions(make_engine()._engine)
    window = make_window(engine)
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    first = window.canvas.current_mask
    assert first is not None and first.any()

    engine.hold = True
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.RightButton, pos=window.canvas.view_point(60, 40))
    qtbot.waitUntil(engine.predicting.is_set, timeout=20000)
    qtbot.wait(50)  # events of the click all handled; the answer is provably not there
    assert window.images.busy and len(window.images.state.points) == 2  # the new click is shown...
    assert window.canvas.current_mask is first  # ...over the previous mask, not an empty photo
    assert window.canvas._overlay_item.pixmap().isNull() is False

    engine.predict_gate.set()
    wait_idle(qtbot, window)
    assert window.canvas.current_mask is not first  # replaced only by the answer
    engine.hold = False


def test_each_photo_keeps_its_undo_history_while_the_album_is_open(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    one_point = window.canvas.current_mask.copy()
    click(qtbot, window, 60, 40, Qt.MouseButton.RightButton)
    two_points = window.canvas.current_mask.copy()

    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    wait_idle(qtbot, window)
    click(qtbot, window, 200, 100)
    assert window.images.undo_stack.count() == 1  # photo 2's own history

    qtbot.keyClick(window, Qt.Key.Key_PageUp)
    wait_idle(qtbot, window)
    assert window.albums.current == 0
    np.testing.assert_array_equal(window.canvas.current_mask, two_points)
    assert window.actions_.undo.isEnabled()
    window.actions_.undo.trigger()  # Ctrl+Z on photo 1 takes back its last click
    assert len(window.images.state.points) == 1
    np.testing.assert_array_equal(window.canvas.current_mask, one_point)
    window.actions_.redo.trigger()
    np.testing.assert_array_equal(window.canvas.current_mask, two_points)

    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    wait_idle(qtbot, window)
    assert window.images.undo_stack.count() == 1  # photo 2 still has its click
    window.actions_.undo.trigger()
    assert window.images.state.is_empty and window.canvas.current_mask is None
