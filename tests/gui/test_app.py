"""Starting the app: no checkpoint, download/cancel, settings, drop, title, no torch at start."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from persam_studio.core.io.album import ImageState
from persam_studio.core.types import Point
from persam_studio.core.errors import Cancelled
from tests.gui.conftest import wait_idle


@pytest.fixture()
def no_checkpoints(monkeypatch, tmp_path):
    """Checkpoint discovery looks only at an empty folder."""
    from persam_studio.core.models import registry

    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    monkeypatch.setattr(registry, "checkpoint_dirs", lambda: [empty])
    return empty


def _window_without_model(qtbot, settings):
    from persam_studio.gui.main_window import MainWindow

    window = MainWindow(settings)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.model.checkpoint_missing, timeout=20000):
        window.show()
    return window


def test_without_a_checkpoint_the_app_stays_open_and_asks_for_a_model(qtbot, settings, no_checkpoints, album_dir):
    window = _window_without_model(qtbot, settings)
    assert window.isVisible()
    assert window.model_dialog is not None and window.model_dialog.isVisible()
    assert not window.model_dialog.isModal()  # the album can still be browsed
    assert window.status.model_label.text() == "no model"
    assert window.model_dialog.models.count() >= 3
    # Browsing works without a model; the image shows and nothing waits forever.
    assert window.open_paths([album_dir])
    qtbot.waitUntil(lambda: window.images.session is not None, timeout=20000)
    assert window.canvas.image_size == (300, 400) and not window.images.busy


def test_download_reports_progress_and_can_be_cancelled(qtbot, settings, no_checkpoints, monkeypatch):
    import persam_studio.core.models as models

    calls = {}

    def fake_download(model, dest_dir=None, progress=None, should_cancel=None, timeout=30):
        calls["model"] = model
        for i in range(1, 10_000):
            progress(i * 1_000_000, 375_000_000)
            if should_cancel():
                raise Cancelled()
            time.sleep(0.002)  # a network read
        raise AssertionError("never cancelled")

    monkeypatch.setattr(models, "download", fake_download)
    window = _window_without_model(qtbot, settings)
    d = window.model_dialog
    with qtbot.waitSignal(window.model.download_progressed, timeout=10000):
        d.download_button.click()
    assert d.progress.isVisible() and d.cancel_button.isVisible()
    qtbot.waitUntil(lambda: d.progress.value() > 0, timeout=10000)
    with qtbot.waitSignal(window.model.download_finished, timeout=10000) as finished:
        d.cancel_button.click()
    assert finished.args == [None]
    assert "cancelled" in d.status.text().lower() and d.download_button.isVisible()
    assert calls["model"] == d.models.currentData()


def test_choosing_a_broken_checkpoint_reports_it_and_keeps_asking(qtbot, settings, no_checkpoints, tmp_path):
    window = _window_without_model(qtbot, settings)
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with qtbot.waitSignal(window.model.load_failed, timeout=20000) as failed:
        window.model_dialog.file_chosen.emit(str(bad))
    assert "broken.pth" in failed.args[0]
    assert settings.model_choice.checkpoint == str(bad)  # remembered for next time
    assert window.model_dialog.isVisible()


def test_geometry_and_last_folder_are_remembered(make_window, qtbot, album_dir, settings):
    window = make_window()
    window.resize(700, 520)
    size = (window.width(), window.height())
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    window.close()
    assert settings.last_folder == str(album_dir)
    again = make_window()
    assert (again.width(), again.height()) == size != (1280, 820)


def test_dropping_a_folder_opens_it(make_window, qtbot, album_dir):
    window = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(album_dir))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.albums.album is not None and len(window.albums.album.records) == 3
    assert "album" in window.windowTitle() and "PerSAM Studio" in window.windowTitle()
    wait_idle(qtbot, window)


def test_run_app_opens_the_paths_in_a_titled_window(qtbot, settings, no_checkpoints, album_dir):
    from persam_studio.gui.app import run_app
    from persam_studio.gui.main_window import MainWindow

    seen = {}

    def check_and_quit():
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if not windows or windows[0].albums.album is None or windows[0].images.session is None:
            QTimer.singleShot(20, check_and_quit)
            return
        seen["title"] = windows[0].windowTitle()
        seen["records"] = len(windows[0].albums.album.records)
        windows[0].close()  # closing the last window ends the app, as for a user

    QTimer.singleShot(0, check_and_quit)
    assert run_app([str(album_dir)], settings=settings) == 0
    assert "PerSAM Studio" in seen["title"] and seen["records"] == 3


def test_the_window_opens_without_loading_torch():
    code = (
        "import sys; from persam_studio.gui.app import create_application; "
        "from persam_studio.gui.main_window import MainWindow; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_help_lists_the_shortcuts(make_window):
    from persam_studio.gui.dialogs.shortcuts import SHORTCUTS

    window = make_window()
    keys = " ".join(k for k, _ in SHORTCUTS)
    a = window.actions_
    for action, text in [(a.cycle, "Tab"), (a.clear, "Esc"), (a.undo, "Ctrl+Z"), (a.redo, "Ctrl+Shift+Z"),
                         (a.shortcuts, "F1"), (a.export, "Ctrl+E"), (a.accept, "A")]:
        assert action.shortcut().toString() == text and text in keys


def test_the_qt_binding_does_not_leak_references_to_none():
    """PySide6 6.12.0 on Python < 3.12 decrefs None on each void call: the app aborts
    at random after a few thousand calls ("none_dealloc"); pyproject excludes it."""
    from PySide6.QtCore import QObject

    obj = QObject()
    before = sys.getrefcount(None)
    for _ in range(100):
        obj.setObjectName("x")
    assert sys.getrefcount(None) >= before - 5, "this PySide6 build leaks None references"


def test_typing_a_subject_name_does_not_trigger_single_key_shortcuts(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    window.images.add_point(Point(250.0, 140.0, 1))
    wait_idle(qtbot, window)
    field = window.side.name
    field.clear()
    field.setFocus()
    qtbot.keyClicks(field, "Rabbit")  # R = use as reference, A = accept, B = brush
    assert field.text() == "Rabbit"  # every key reached the field
    assert window.albums.record.state == ImageState.MASKED
    assert window.canvas.tool == "prompt"
