"""State in view: confidence on thumbnails and in the panel, review navigation and filter, the Log."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from persam_studio.core.io.album import Album, ImageState
from tests.gui.conftest import make_album, wait_idle


@pytest.fixture()
def flagged_album(tmp_path, rgb_image):
    """Five photos; 2 and 4 (rows 1 and 3) flagged needs review, 3 propagated confidently."""
    folder = tmp_path / "flagged"
    paths = make_album(folder, rgb_image, 5)
    album = Album.open(paths, root=folder)
    for row, state, conf in ((1, ImageState.NEEDS_REVIEW, 0.31), (2, ImageState.PROPAGATED, 0.87),
                             (3, ImageState.NEEDS_REVIEW, 0.45)):
        album.records[row].state, album.records[row].confidence = state, conf
    album.save()
    return folder


def test_confidence_in_thumbnail_tooltips_and_the_side_panel(make_window, flagged_album, qtbot):
    window = make_window()
    window.open_paths([flagged_album])
    wait_idle(qtbot, window)
    assert window.panel.item(1).toolTip() == "photo2.png: needs review (confidence 0.31)"
    assert window.panel.item(2).toolTip() == "photo3.png: propagated (confidence 0.87)"
    assert window.panel.item(0).toolTip() == "photo1.png: untouched"
    assert "not a propagated mask" in window.side.confidence.text()
    window.albums.show(3)
    assert window.side.confidence.text() == "Confidence: 0.45 (below 0.6) — needs review"
    assert window.side.review_count.text() == "2 photos to review"
    wait_idle(qtbot, window)


def test_next_and_previous_to_review_visit_only_flagged_photos_and_wrap(make_window, flagged_album, qtbot):
    window = make_window()
    window.open_paths([flagged_album])
    wait_idle(qtbot, window)
    window.canvas.setFocus()
    visited = []
    for _ in range(3):
        qtbot.keyClick(window.canvas, Qt.Key.Key_N)
        visited.append(window.albums.current)
    assert visited == [1, 3, 1]  # wraps around after the last
    assert "wrapped around" in window.status.currentMessage()
    qtbot.keyClick(window.canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert window.albums.current == 3  # from the first flagged, back round to the last
    window.side.previous_review.click()
    assert window.albums.current == 1 and window.status.currentMessage() == "1 of 2 to review"
    window.side.next_review.click()
    assert window.albums.current == 3
    wait_idle(qtbot, window)


def test_review_filter_shows_only_flagged_photos(make_window, flagged_album, qtbot):
    window = make_window()
    window.open_paths([flagged_album])
    wait_idle(qtbot, window)
    window.side.next_review.click()  # on photo 2 (row 1)
    window.side.review_only.setChecked(True)
    assert window.actions_.review_only.isChecked()
    assert [r for r in range(5) if not window.panel.isRowHidden(r)] == [1, 3]
    window.side.review_only.setChecked(False)
    assert not any(window.panel.isRowHidden(r) for r in range(5))
    wait_idle(qtbot, window)


def test_job_summaries_stay_in_the_log_panel(make_window, album_dir, qtbot):
    for i in range(3):  # three photos that cannot be read, with long names
        (album_dir / f"z-photo-with-a-rather-long-file-name-that-is-broken-{i}.jpg").write_bytes(b"not a jpeg")
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    with qtbot.waitSignal(window.jobs.finished, timeout=60000) as finished:
        window.actions_.prepare.trigger()
    summary = finished.args[1]
    assert summary.startswith("done; 3 error(s)")
    assert all(f"broken-{i}.jpg: not an image" in summary for i in range(3))  # every error, not the first few
    shown = window.status.currentMessage()
    assert len(shown) <= 90 and "see Log" in shown  # never cut at the window's edge
    window.status.clearMessage()  # the status bar's message fades...
    assert f"Preparing album: {summary}" in window.log.entries  # ...the Log keeps it, whole
    assert "broken-2" in window.log.toPlainText()
