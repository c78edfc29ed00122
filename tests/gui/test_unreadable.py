"""Albums with unreadable files: marked thumbnails, and starts that never hang (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QColor

from persam_studio.gui.backend import EngineInfo
from tests.gui.startup_stress import UNREADABLE, make_unreadable_album

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def bad_album(tmp_path) -> Path:
    folder = tmp_path / "album"
    make_unreadable_album(folder)
    return folder


def _window_without_model(qtbot, settings):
    from persam_studio.gui.main_window import MainWindow

    window = MainWindow(settings, engine_factory=lambda choice: (None, EngineInfo("none", "cpu", "")))
    qtbot.addWidget(window)
    window.show()
    return window


def _badge_color(panel, row: int) -> QColor:
    """The colour a user sees in the badge of thumbnail ``row``, off its centre line."""
    from persam_studio.gui.album_panel import badge_rect

    shot = panel.viewport().grab().toImage()
    centre = badge_rect(panel.visualItemRect(panel.item(row))).center()
    return shot.pixelColor(centre.x(), centre.y() - 5)


def test_load_thumbnail_scales_to_the_long_side_and_names_the_problem(bad_album):
    from persam_studio.core.errors import ImageReadError
    from persam_studio.gui.thumbnails import load_thumbnail, unreadable_reason

    thumb = load_thumbnail(bad_album / "photo1.jpg", 112)
    assert thumb.shape == (84, 112, 3) and thumb.dtype == np.uint8
    for name, reason in UNREADABLE.items():
        with pytest.raises(ImageReadError) as err:
            load_thumbnail(bad_album / name, 112)
        assert reason in unreadable_reason(err.value) and name not in unreadable_reason(err.value)


def test_unreadable_photos_get_an_error_badge_and_their_reason(qtbot, settings, bad_album):
    from persam_studio.gui.album_panel import ERROR_COLOR, STATE_COLORS
    from persam_studio.core.io.album import ImageState

    window = _window_without_model(qtbot, settings)
    window.resize(1280, 820)
    assert window.open_paths([bad_album])
    panel = window.panel
    qtbot.waitUntil(lambda: panel.thumbnails_pending == 0, timeout=20000)
    rows = {panel.item(r).text(): r for r in range(panel.count())}
    assert set(UNREADABLE) < set(rows) and len(rows) == len(UNREADABLE) + 4
    for name, reason in UNREADABLE.items():
        row = rows[name]
        assert reason in panel.unreadable_reason(row)
        tip = panel.item(row).toolTip()
        assert tip.startswith(name) and "cannot be read" in tip and reason in tip and "\n" not in tip
        panel.scrollToItem(panel.item(row))
        assert _badge_color(panel, row) == ERROR_COLOR
    good = rows["photo2.png"]
    panel.scrollToItem(panel.item(good))
    assert panel.unreadable_reason(good) is None and "cannot be read" not in panel.item(good).toolTip()
    assert _badge_color(panel, good) == STATE_COLORS[ImageState.UNTOUCHED]
    # The window opened on the first photo, a bad one: it says why, and does not wait forever.
    qtbot.waitUntil(lambda: not window.images.busy, timeout=20000)
    assert "truncated or corrupt" in window.status.currentMessage()


def _starts(album: Path, starts: int) -> tuple[int, str, float]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.gui.startup_stress", str(album), str(starts)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
    except subprocess.TimeoutExpired as exc:
        return -1, f"timed out: {(exc.stderr or b'')[-4000:]!r}", time.monotonic() - t0
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


PROCESSES, STARTS = 20, 20


@pytest.mark.slow
def test_four_hundred_starts_on_an_album_with_unreadable_files_never_hang(bad_album):
    """20 fresh processes x 20 starts, two processes at a time (2 cores): ~20 s.

    Fresh processes, because the deadlock needed Qt's image plugins to be
    loading, which happens in a process's first start; a hung start is
    ended by the child's watchdog (with every thread's stack) or by the
    timeout here, and fails the test.
    """
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _starts(bad_album, STARTS), range(PROCESSES)))
    failed = [out for rc, out, _ in results if rc != 0]
    assert not failed, f"{len(failed)} of {PROCESSES} processes hung or failed; first:\n{failed[0][-6000:]}"
    assert all(f"{STARTS} starts, none hung" in out for _, out, _ in results)
