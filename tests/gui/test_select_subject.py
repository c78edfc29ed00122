"""Select subject in the app: no click, an ordinary editable mask, and the album job.

A tiny ONNX subject model (brightness = subject, built by tests/core/test_subject.py)
stands in for IS-Net; one test runs the real shared IS-Net model.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from persam_studio.core.io.album import ImageState
from tests.conftest import SHARED, shared_data
from tests.test_cli_select import model_dir  # noqa: F401  (the only model folder searched)
from tests.core.test_subject import tiny_model
from tests.gui.conftest import wait_idle
from tests.gui.test_canvas_prompts import click

pytest.importorskip("onnxruntime")
FOUND = (ImageState.PROPAGATED, ImageState.NEEDS_REVIEW)
RECT = (120, 80, 300, 220)  # x0, y0, x1, y1 of the bright subject


@pytest.fixture(autouse=True)
def _subject_cache(tmp_path, monkeypatch):
    """Subject maps cached under tmp_path, never in the user's cache."""
    monkeypatch.setenv("PERSAM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def subject_model(model_dir, monkeypatch) -> Path:
    path = tiny_model(model_dir / "u2netp.onnx", size=320)  # found in the model folders by its name
    return path


@pytest.fixture()
def rect_album(tmp_path) -> Path:
    """Four photos: a bright rectangle (the subject) on a dark textured background."""
    folder = tmp_path / "rects"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 40, (300, 400, 3), dtype=np.uint8)
        x0, y0, x1, y1 = RECT
        img[y0 + 5 * i:y1, x0:x1 - 5 * i] = (230, 220 - 20 * i, 200)
        Image.fromarray(img).save(folder / f"photo{i + 1}.png")
    return folder


def _rect_mask() -> np.ndarray:
    m = np.zeros((300, 400), bool)
    x0, y0, x1, y1 = RECT
    m[y0:y1, x0:x1] = True
    return m


def _iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _select(window, qtbot) -> None:
    with qtbot.waitSignal(window.subjects.selected, timeout=30000):
        window.actions_.select_subject.trigger()
        qtbot.waitUntil(lambda: window.error_box is not None or "finding" not in window.status.currentMessage(),
                        timeout=30000)
        assert window.error_box is None, window.error_box.text()
    wait_idle(qtbot, window)


def test_select_subject_makes_an_editable_mask_with_no_click(make_window, subject_model, rect_album, qtbot):
    window = make_window()
    window.open_paths([rect_album])
    wait_idle(qtbot, window)
    assert window.images.session.mask() is None
    _select(window, qtbot)
    subject = window.images.session.mask().copy()
    assert _iou(subject, _rect_mask()) > 0.9  # the bright rectangle, no click
    assert window.albums.record.state == ImageState.MASKED  # the user asked: the user's mask
    assert "subject selected" in window.status.currentMessage()

    # A background click inside the subject refines it through SAM (one candidate, not three).
    predicts = window.engine.predicts
    click(qtbot, window, 200, 150, Qt.MouseButton.RightButton)
    assert window.engine.predicts == predicts + 1
    refined = window.images.session.mask()
    assert not np.array_equal(refined, subject)
    assert len(window.images.state.prediction) == 1

    # Undo returns to the subject mask exactly; redo to the refined one.
    window.actions_.undo.trigger()
    wait_idle(qtbot, window)
    assert np.array_equal(window.images.session.mask(), subject)
    window.actions_.redo.trigger()
    wait_idle(qtbot, window)
    assert np.array_equal(window.images.session.mask(), refined)
    window.actions_.undo.trigger()
    wait_idle(qtbot, window)

    # The brush works on it, and it is a reference like any mask.
    window.actions_.tool_brush.trigger()
    from persam_studio.core.io.album import Stroke

    window.images.add_stroke(Stroke("add", 8.0, ((20.0, 20.0), (40.0, 20.0))))
    assert window.images.session.mask()[20, 30] and not subject[20, 30]
    with qtbot.waitSignal(window.albums.references_changed, timeout=20000):
        window.side.name.setText("box")
        window.side.use_button.click()
    assert window.albums.album.reference_names() == ["box"]


def test_saved_subject_mask_is_restored_as_a_bitmap(make_window, subject_model, rect_album, qtbot, settings):
    window = make_window()
    window.open_paths([rect_album])
    wait_idle(qtbot, window)
    _select(window, qtbot)
    subject = window.images.session.mask().copy()
    window.close()
    again = make_window()
    again.open_paths([rect_album])
    wait_idle(qtbot, again)
    assert again.albums.album.records[0].base == "bitmap"
    assert np.array_equal(again.images.session.mask(), subject)


def test_select_subject_in_all_photos_skips_the_users_masks(make_window, subject_model, rect_album, qtbot):
    window = make_window()
    window.open_paths([rect_album])
    wait_idle(qtbot, window)
    click(qtbot, window, 60, 40)  # photo 1: the user's own (odd) mask
    mine = window.images.session.mask().copy()
    window.albums.show(1)
    wait_idle(qtbot, window)
    click(qtbot, window, 60, 40)
    window.albums.accept_current()  # photo 2: accepted
    window.albums.show(2)
    wait_idle(qtbot, window)
    progress = []
    window.jobs.progressed.connect(lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(window.jobs.finished, timeout=60000) as finished:
        window.actions_.select_all.trigger()
    window.albums.saver.flush()
    label, summary = finished.args
    assert label == "Selecting subjects" and summary.startswith("done")
    assert progress[-1] == (2, 2)  # only the two photos the user has not masked or accepted
    records = window.albums.album.records
    assert records[0].state == ImageState.MASKED and records[1].state == ImageState.ACCEPTED
    assert records[2].state in FOUND and records[3].state in FOUND
    assert all(r.base == "bitmap" and r.confidence is not None for r in records[2:])
    # The photo on the canvas shows its subject at once and is refinable; the thumbnails got badges.
    assert _iou(window.images.session.mask(), _rect_mask()) > 0.8
    assert window.images.state.subject is not None
    assert [window.panel.state(row) for row in range(4)] == [r.state for r in records]  # badges
    window.albums.show(0)
    wait_idle(qtbot, window)
    assert np.array_equal(window.images.session.mask(), mine)


def test_doubtful_subject_is_flagged_for_review(make_window, subject_model, tmp_path, qtbot):
    folder = tmp_path / "flat"
    folder.mkdir()
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(folder / "grey.png")  # no subject at all
    window = make_window()
    window.open_paths([folder])
    wait_idle(qtbot, window)
    with qtbot.waitSignal(window.jobs.finished, timeout=60000):
        window.actions_.select_all.trigger()
    assert window.albums.album.records[0].state == ImageState.NEEDS_REVIEW
    assert window.albums.to_review() == [0]


class _GatedHolder:
    """A holder whose model waits at a gate after ``free`` photos (the job is provably mid-way)."""

    def __init__(self, holder, free: int) -> None:
        self.holder, self.free = holder, free
        self.calls = 0
        self.gate, self.waiting = threading.Event(), threading.Event()

    def get(self):
        self.calls += 1
        if self.calls > self.free:
            self.waiting.set()
            self.gate.wait(30)
        return self.holder.get()


def test_cancel_select_all_part_way(make_window, subject_model, rect_album, qtbot):
    window = make_window()
    window.open_paths([rect_album])
    wait_idle(qtbot, window)
    gated = _GatedHolder(window.subjects.holder, free=1)
    with qtbot.waitSignal(window.jobs.finished, timeout=60000) as finished:
        assert window.jobs.select_all(gated)
        qtbot.waitUntil(gated.waiting.is_set, timeout=30000)
        window.status.cancel.click()
        gated.gate.set()
    assert finished.args[0] == "Selecting subjects" and finished.args[1] == "cancelled"
    states = [r.state for r in window.albums.album.records]
    done = [s in FOUND for s in states]
    assert any(done) and not all(done), states
    assert not window.jobs.busy and window.status.cancel.isHidden()


def test_no_subject_model_says_how_to_get_one(make_window, model_dir, rect_album, qtbot):
    window = make_window()
    window.open_paths([rect_album])
    wait_idle(qtbot, window)
    window.actions_.select_subject.trigger()
    qtbot.waitUntil(lambda: window.error_box is not None and window.error_box.isVisible(), timeout=20000)
    text = window.error_box.text()
    assert "persam-studio download isnet-general-use" in text and "Settings" in text
    assert window.images.session.mask() is None  # nothing changed


def test_settings_choose_the_subject_model_file(make_window, model_dir, rect_album, qtbot, tmp_path):
    elsewhere = tiny_model(tmp_path / "mine.onnx")  # not in the model folders
    window = make_window()
    window.settings.subject_model = str(elsewhere)
    window.open_paths([rect_album])
    wait_idle(qtbot, window)
    _select(window, qtbot)
    assert window.subjects.holder.model.path == elsewhere

    from persam_studio.gui.dialogs.settings_dialog import SettingsDialog

    dialog = SettingsDialog(window.settings.model_choice, window, str(elsewhere))
    assert dialog.subject_model_file() == str(elsewhere)
    dialog.subject_model.setText("  /x/other.onnx ")
    assert dialog.subject_model_file() == "/x/other.onnx"


def test_real_isnet_selects_a_perseg_subject_and_a_click_refines_it(make_window, model_dir, qtbot, tmp_path,
                                                                     monkeypatch):
    from persam_studio.core.io.imageio import load_mask

    isnet = SHARED / "models" / "isnet-medium.onnx"
    if not isnet.is_file():
        pytest.skip(f"the trained subject model is not available: {isnet}")
    src = shared_data("perseg-examples")
    monkeypatch.setenv("PERSAM_SUBJECT_MODEL", str(isnet))
    folder = tmp_path / "duck"
    folder.mkdir()
    (folder / "duck_toy_01.jpg").symlink_to(src / "duck_toy_01.jpg")
    window = make_window()
    window.open_paths([folder])
    wait_idle(qtbot, window, timeout=60000)
    with qtbot.waitSignal(window.subjects.selected, timeout=120000) as got:
        window.actions_.select_subject.trigger()
    wait_idle(qtbot, window)
    full = window.images.state.bitmap.mask  # the photo's own size
    truth = load_mask(src / "duck_toy_01.png", size=full.shape)
    assert _iou(full, truth) >= 0.9 and not got.args[0].doubtful
    subject = window.images.session.mask().copy()
    h, w = window.images.session.original_size
    click(qtbot, window, w // 20, h // 20)  # an object click far outside: SAM answers on top of the subject
    assert window.images.state.prediction is not None and window.images.state.subject is not None
    window.actions_.undo.trigger()
    wait_idle(qtbot, window)
    assert np.array_equal(window.images.session.mask(), subject)
