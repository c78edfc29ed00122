"""The synchronous switch: the same window with every job run inline (logic tests)."""

from __future__ import annotations

import numpy as np

from persam_studio.core.io.album import ImageState
from persam_studio.core.types import Point
from persam_studio.gui.backend import EngineInfo
from persam_studio.gui.main_window import MainWindow


def test_synchronous_window_answers_without_an_event_loop(qtbot, settings, make_engine, album_dir):
    engine = make_engine()
    window = MainWindow(settings, engine_factory=lambda c: (engine, EngineInfo("tiny", "cpu", "random")),
                        synchronous=True)
    qtbot.addWidget(window)
    assert window.model.engine is engine  # loaded inline, no waiting
    window.open_paths([album_dir])
    session = window.images.session
    assert session is not None and session.embedding is not None
    window.images.add_point(Point(250.0, 140.0, 1))
    result = engine.predict(session.embedding, np.array([[250.0, 140.0]]), np.array([1]))
    np.testing.assert_array_equal(window.canvas.current_mask, result.mask(result.best_index, session.display_size))
    assert window.albums.record.state == ImageState.MASKED and not window.images.busy
