"""GUI fixtures: an isolated window over a tiny random SAM, a small album.

Every test gets its own settings file and embedding cache under tmp_path,
and fails if a worker thread is still running after its windows closed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")


@pytest.fixture(autouse=True)
def _no_threads_left(qtbot):
    """Close every window after the test; fail if a lane still runs a job.

    Requests qtbot so that it runs before qtbot deletes the widgets.
    """
    yield
    from PySide6.QtWidgets import QApplication

    from persam_studio.gui.workers import live_lanes

    for widget in QApplication.topLevelWidgets():
        widget.close()
    busy = [lane.name for lane in live_lanes() if lane.pool.activeThreadCount() > 0 or lane.busy]
    for lane in live_lanes():
        lane.shutdown()  # make sure nothing leaks into the next test
    assert not busy, f"worker threads still running after the test: {busy}"


@pytest.fixture()
def settings(tmp_path):
    from persam_studio.gui.settings import AppSettings

    return AppSettings(tmp_path / "settings.ini")


def make_album(folder: Path, rgb_image: np.ndarray, n: int = 3) -> list[Path]:
    """``n`` PNG photos in ``folder``: the test image, shifted and recoloured."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.roll(rgb_image, 17 * i, axis=1).copy()
        img[..., 2] = (img[..., 2].astype(int) + 40 * i) % 256
        path = folder / f"photo{i + 1}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def album_dir(tmp_path, rgb_image):
    folder = tmp_path / "album"
    make_album(folder, rgb_image, 3)
    return folder


class CountingEngine:
    """Wraps the real Engine: counts calls; encodes can be held at a gate.

    ``hold_after``: encodes beyond this many wait until ``gate`` is set
    (lets a test act while the model lane is provably busy).
    """

    def __init__(self, engine, hold_after: int | None = None) -> None:
        self._engine = engine
        self.encodes = 0
        self.predicts = 0
        self.hold_after = hold_after
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def encode(self, image, key=None):
        self.encodes += 1
        if self.hold_after is not None and self.encodes > self.hold_after:
            self.waiting.set()
            self.gate.wait(30)
        return self._engine.encode(image, key)

    def predict(self, *args, **kwargs):
        self.predicts += 1
        return self._engine.predict(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._engine, name)


@pytest.fixture()
def make_engine(tiny_sam, tmp_path):
    """Build a (counting) Engine over the tiny SAM with a cache in tmp_path."""
    from persam_studio.core.segment.cache import EmbeddingCache
    from persam_studio.core.segment.engine import Engine

    def make(hold_after: int | None = None) -> CountingEngine:
        return CountingEngine(Engine(tiny_sam, "tiny-test", EmbeddingCache(tmp_path / "cache")), hold_after)

    return make


@pytest.fixture()
def make_window(qtbot, settings, make_engine):
    """A shown MainWindow whose model is the tiny random SAM (or ``engine``)."""
    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.main_window import MainWindow

    def make(engine=None, window_settings=None):
        engine = engine or make_engine()
        window = MainWindow(
            window_settings or settings,
            engine_factory=lambda choice: (engine, EngineInfo("tiny", "cpu", "random weights")),
        )
        qtbot.addWidget(window)
        with qtbot.waitSignal(window.model.engine_ready, timeout=20000):
            window.show()
        window.engine = engine
        return window

    return make


def wait_idle(qtbot, window, timeout: int = 20000) -> None:
    """Until the image is loaded, encoded and its mask computed."""
    qtbot.waitUntil(
        lambda: window.images.session is not None
        and window.images.session.embedding is not None
        and not window.images.busy,
        timeout=timeout,
    )
