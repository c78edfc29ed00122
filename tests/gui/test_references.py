"""References are safe: the subject's name is kept, targets are listed, Forget asks and is undoable."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from persam_studio.core.io.album import SIDECAR, TRASH
from tests.gui.conftest import wait_idle
from tests.gui.test_canvas_prompts import click


def _reference(window, qtbot, name: str) -> None:
    with qtbot.waitSignal(window.albums.references_changed, timeout=20000):
        window.side.name.setText(name)
        window.side.name.editingFinished.emit()
        window.side.use_button.click()


def _answer_next_box(button: QMessageBox.StandardButton, seen: list[str]) -> None:
    """Click ``button`` of the next modal message box (polls until it is open)."""

    def poll() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            box.button(button).click()
        else:
            QTimer.singleShot(20, poll)

    QTimer.singleShot(0, poll)


def _clicked(make_window, album_dir, qtbot):
    """A window on the album with a mask made by one click on the first photo."""
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    return window


def test_subject_name_is_restored_and_a_second_reference_joins_its_target(make_window, album_dir, qtbot):
    window = _clicked(make_window, album_dir, qtbot)
    _reference(window, qtbot, "my cat")
    window.close()

    again = make_window()
    again.open_paths([album_dir])
    wait_idle(qtbot, again)
    assert again.side.name.text() == "my cat"  # not back to "subject"
    again.albums.show(1)
    wait_idle(qtbot, again)
    click(qtbot, again, 240, 150)
    with qtbot.waitSignal(again.albums.references_changed, timeout=20000):
        again.side.use_button.click()  # the restored name, untouched
    assert again.albums.album.reference_names() == ["my cat"]
    assert again.targets.target_labels() == ["my cat — 2 references"]
    qtbot.waitUntil(lambda: again.targets.thumbnails_shown() == 2, timeout=20000)


def test_blank_subject_name_is_refused_with_a_message(make_window, album_dir, qtbot):
    window = _clicked(make_window, album_dir, qtbot)
    window.side.name.setText("   ")
    window.side.use_button.click()
    qtbot.wait(100)
    assert window.albums.album.references == []
    assert "subject's name" in window.status.currentMessage()
    assert "subject's name" in window.log.entries[-1]
    assert window.targets.target_labels() == ["No reference yet"]


def test_forget_asks_says_what_it_removed_and_undo_restores(make_window, album_dir, qtbot):
    window = _clicked(make_window, album_dir, qtbot)
    _reference(window, qtbot, "my cat")
    _reference(window, qtbot, "my cat")
    click(qtbot, window, 60, 40)
    _reference(window, qtbot, "dog")
    album = window.albums.album
    refs_dir, trash = album.sidecar / "references", album.sidecar / TRASH
    files = sorted(r.mask for r in album.references)
    assert window.targets.target_labels() == ["my cat — 2 references", "dog — 1 reference"]

    asked: list[str] = []
    _answer_next_box(QMessageBox.StandardButton.Cancel, asked)
    window.side.clear_button.click()
    assert asked and "3 references: 'my cat' (2), 'dog' (1)" in asked[0]
    assert len(album.references) == 3  # Cancel keeps them

    _answer_next_box(QMessageBox.StandardButton.Yes, asked)
    window.side.clear_button.click()
    assert len(asked) == 2 and album.references == []
    assert window.targets.target_labels() == ["No reference yet"]
    assert "Forgot 3 references: 'my cat' (2), 'dog' (1)" in window.log.entries[-1]
    window.albums.saver.flush()
    assert sorted(p.name for p in trash.iterdir()) == files and not any(refs_dir.iterdir())

    undo = window.actions_.undo  # Edit > Undo (Ctrl+Z)
    assert undo.isEnabled() and undo.text() == "Undo Forget references"
    undo.trigger()
    assert len(album.references) == 3
    assert window.targets.target_labels() == ["my cat — 2 references", "dog — 1 reference"]
    assert "Restored 3 references" in window.log.entries[-1]
    window.albums.saver.flush()
    assert sorted(p.name for p in refs_dir.iterdir()) == files

    # Forget again for good: closing the album empties the trash; reopening has no reference.
    _answer_next_box(QMessageBox.StandardButton.Yes, asked)
    window.side.clear_button.click()
    window.close()
    assert not trash.exists() and not any(refs_dir.iterdir())
    again = make_window()
    again.open_paths([album_dir])
    wait_idle(qtbot, again)
    assert again.albums.album.references == [] and (album_dir / SIDECAR / "album.json").is_file()

