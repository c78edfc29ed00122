"""Saving the album off the GUI thread: 50 quick clicks never stall the window; close loses nothing."""

from __future__ import annotations

import os
import time

import numpy as np
from PySide6.QtCore import Qt, QTimer

from persam_studio.core.io.album import Album
from tests.gui.conftest import wait_idle

CLICKS = 50
MAX_GAP_S = 0.050  # the target, held on a machine with a free core
#: On a shared machine with more runnable threads than cores (load average
#: 7-8 on 2 cores here), the window stalls 83-92 ms during these clicks with
#: saving switched off altogether: the OS, not the app. There the test holds
#: p99 to the target and the worst gap to this bound.
LOADED_MAX_GAP_S = 0.150


def _machine_busy() -> bool:
    return os.getloadavg()[0] > (os.cpu_count() or 1)


def test_fifty_quick_clicks_with_saving_keep_the_event_loop_moving(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    rng = np.random.default_rng(0)
    spots = [(float(x), float(y)) for x, y in zip(rng.uniform(20, 380, CLICKS), rng.uniform(20, 280, CLICKS))]

    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(5)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    clicks = QTimer()
    clicks.setInterval(15)  # a quick user: a click every 15 ms

    def click_next() -> None:
        x, y = spots[len(window.images.state.points)]
        button = Qt.MouseButton.LeftButton if len(window.images.state.points) % 3 else Qt.MouseButton.RightButton
        qtbot.mouseClick(window.canvas.viewport(), button, pos=window.canvas.view_point(x, y))
        if len(window.images.state.points) == CLICKS:
            clicks.stop()

    clicks.timeout.connect(click_next)
    heartbeat.start()
    clicks.start()
    qtbot.waitUntil(lambda: len(window.images.state.points) == CLICKS, timeout=30000)
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: not window.albums.saver.pending, timeout=30000)
    heartbeat.stop()

    gaps = np.diff(beats)
    assert len(beats) > 100
    worst, p99 = gaps.max(), np.percentile(gaps, 99)
    report = f"event loop stalled {worst * 1000:.0f} ms (p99 {p99 * 1000:.0f} ms, load {os.getloadavg()[0]:.1f})"
    if _machine_busy():
        assert p99 < MAX_GAP_S and worst < LOADED_MAX_GAP_S, report
    else:
        assert worst < MAX_GAP_S, report
    assert window.albums.saver.json_writes < CLICKS  # bursts coalesced, not one save per click

    state, mask = window.images.state, window.canvas.current_mask.copy()
    window.close()  # flushes the pending save
    record = Album.open(sorted(album_dir.glob("*.png")), root=album_dir).records[0]
    assert record.points == state.points and len(record.points) == CLICKS
    album = Album.open(sorted(album_dir.glob("*.png")), root=album_dir)
    np.testing.assert_array_equal(album.load_display_mask(album.records[0]), mask)


def test_close_waits_for_the_pending_save(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    qtbot.mouseClick(window.canvas.viewport(), Qt.MouseButton.LeftButton, pos=window.canvas.view_point(250, 140))
    wait_idle(qtbot, window)
    window.images.clear()  # the last edit, closed at once
    window.close()
    album = Album.open(sorted(album_dir.glob("*.png")), root=album_dir)
    assert album.records[0].points == () and album.load_display_mask(album.records[0]) is None


def test_flush_right_after_a_save_is_queued_never_waits_on_the_gui_thread(album_dir, qtbot):
    """Flush at the instant a worker takes the queued save: written at once, never a 60 s stall.

    (Flush used to cancel the queued save; a worker taking it at that instant
    sent its "cancelled" notice to the GUI thread, blocked in flush: the save
    waited out the 60 s timeout and was not written. CI met it once.)
    """
    from persam_studio.gui.autosave import AlbumSaver
    from persam_studio.gui.workers import Lane

    album = Album.open(sorted(album_dir.glob("*.png")), root=album_dir)
    lane = Lane("io", 1)
    saver = AlbumSaver(lane)
    written: list[int] = []
    try:
        for n in range(300):
            saver.schedule(album, {"mark": lambda n=n: written.append(n)})
            start = time.perf_counter()
            saver.flush(timeout_s=5.0)
            assert time.perf_counter() - start < 2.0, f"flush {n} stalled"
            assert written[-1] == n and not saver.pending
    finally:
        lane.shutdown()


def test_a_save_starts_after_the_edits_repaint_and_flush_does_not_wait_for_it(album_dir, qtbot):
    from persam_studio.gui.autosave import DELAY_MS, AlbumSaver
    from persam_studio.gui.workers import Lane

    album = Album.open(sorted(album_dir.glob("*.png")), root=album_dir)
    lane = Lane("io", 1)
    saver = AlbumSaver(lane)
    written: list[float] = []
    try:
        start = time.perf_counter()
        saver.schedule(album, {"mark": lambda: written.append(time.perf_counter())})
        assert saver.pending and not written  # not at once: the edit's repaint comes first
        qtbot.waitUntil(lambda: not saver.pending, timeout=5000)
        assert written[0] - start >= DELAY_MS / 1000 * 0.9  # the timer's delay, whatever the load
        saver.schedule(album, {"mark": lambda: written.append(time.perf_counter())})
        saver.flush()  # closing: written now, not after the delay
        assert len(written) == 2 and not saver.pending
    finally:
        lane.shutdown()
