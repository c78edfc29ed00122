"""Through the window: reference, propagate (to the end, and cancelled), export, restore."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from persam_studio.core.io.album import SIDECAR, Album, ImageState
from tests.gui.conftest import make_album, wait_idle
from tests.gui.test_canvas_prompts import click, drag

PROPAGATED = (ImageState.PROPAGATED, ImageState.NEEDS_REVIEW)


def _use_as_reference(window, qtbot, name="disc"):
    with qtbot.waitSignal(window.albums.references_changed, timeout=20000):
        window.side.name.setText(name)
        window.side.use_button.click()


def _propagate(window, qtbot, method="persam"):
    progress = []
    window.jobs.progressed.connect(lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(window.jobs.finished, timeout=120000) as finished:
        window.side.set_method(method)
        window.side.propagate_button.click()
    window.albums.saver.flush()  # saving runs in the I/O lane: wait for it before reading the disk
    return progress, finished.args


@pytest.fixture()
def album5(tmp_path, rgb_image):
    folder = tmp_path / "five"
    make_album(folder, rgb_image, 5)
    return folder


@pytest.mark.parametrize("method", ["persam", "persam_f"])
def test_propagate_through_the_gui_to_the_end(make_window, album5, qtbot, method):
    window = make_window()
    window.open_paths([album5])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    _use_as_reference(window, qtbot)
    assert window.targets.target_labels() == ["disc — 1 reference"]
    progress, (label, summary) = _propagate(window, qtbot, method)

    assert label == "Propagating" and summary.startswith("done"), summary
    assert progress[-1] == (4, 4)  # the four other images
    album = window.albums.album
    states = [r.state for r in album.records]
    assert states[0] == ImageState.MASKED  # the reference image is never overwritten
    assert all(s in PROPAGATED for s in states[1:]), states
    for row, record in enumerate(album.records[1:], start=1):
        assert window.panel.state(row) == record.state  # badges follow
        assert album.load_display_mask(record) is not None and record.base == "logits"
        assert (record.state == ImageState.NEEDS_REVIEW) == (record.confidence < 0.6)
    assert album.method == method


def test_review_fix_and_repropagate_skips_the_users_work(make_window, album5, qtbot):
    window = make_window()
    window.open_paths([album5])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    _use_as_reference(window, qtbot)
    _propagate(window, qtbot)
    # Fix image 3 by hand, accept image 2, then add the fix as a second reference.
    window.albums.show(2)
    wait_idle(qtbot, window)
    shown = window.canvas.current_mask
    assert shown is not None  # the propagated mask is on the canvas
    qtbot.keyClick(window, Qt.Key.Key_A)
    assert window.albums.album.records[2].state == ImageState.ACCEPTED
    window.albums.show(3)
    wait_idle(qtbot, window)
    click(qtbot, window, 245, 150)
    assert window.albums.album.records[3].state == ImageState.MASKED
    _use_as_reference(window, qtbot)
    qtbot.waitUntil(lambda: not window.albums.saver.pending)  # the files read below are saved
    masks_before = {i: window.albums.album.load_display_mask(window.albums.album.records[i]) for i in (2, 3)}
    progress, (label, summary) = _propagate(window, qtbot)
    assert progress[-1] == (2, 2)  # images 1 and 4 only
    album = window.albums.album
    assert [r.state for r in album.records][2:4] == [ImageState.ACCEPTED, ImageState.MASKED]
    for i, m in masks_before.items():
        np.testing.assert_array_equal(album.load_display_mask(album.records[i]), m)
    assert len(album.references) == 2


def test_cancel_propagation_part_way(make_window, make_engine, album5, qtbot):
    # Encodes: 1 for the open image (+ up to 1 ahead), 1 reference fit from the cache;
    # image 3 onwards waits at the gate, so the job is provably mid-way when cancelled.
    engine = make_engine(hold_after=3)
    window = make_window(engine)
    window.open_paths([album5])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    _use_as_reference(window, qtbot)
    with qtbot.waitSignal(window.jobs.finished, timeout=60000) as finished:
        window.side.propagate_button.click()
        qtbot.waitUntil(lambda: engine.waiting.is_set(), timeout=30000)
        window.status.cancel.click()
        engine.gate.set()
    assert finished.args == ["Propagating", "cancelled"]
    states = [r.state for r in window.albums.album.records]
    done = [s in PROPAGATED for s in states[1:]]
    assert any(done) and not all(done), states
    assert done == sorted(done, reverse=True)  # in order, then stopped
    assert not window.jobs.busy and window.status.cancel.isHidden()


def test_export_masks_and_cutouts_never_touches_originals(make_window, album_dir, qtbot, tmp_path):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    originals = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in album_dir.glob("*.png")}
    click(qtbot, window, 250, 140)
    window.actions_.tool_brush.trigger()
    drag(window, (20, 250), (120, 250))
    out = tmp_path / "out"
    progress = []
    window.jobs.progressed.connect(lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(window.jobs.finished, timeout=30000) as finished:
        assert window.jobs.export([0, 1, 2], out, masks=True, cutouts=True)
    assert finished.args[1] == "done"
    assert progress[-1] == (1, 1)  # only image 1 has a mask
    mask = np.asarray(Image.open(out / "photo1_mask.png"))
    cutout = np.asarray(Image.open(out / "photo1_cutout.png"))
    assert mask.shape == (300, 400) and cutout.shape == (300, 400, 4)
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(cutout[..., 3] > 0, mask > 0)
    assert mask[250, 20:120].all()  # the brush stroke, at full size
    assert sorted(p.name for p in out.iterdir()) == ["photo1_cutout.png", "photo1_mask.png"]
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in album_dir.glob("*.png")} == originals


def test_export_into_the_album_refuses_to_overwrite_an_image(make_window, tmp_path, rgb_image, qtbot):
    folder = tmp_path / "clash"
    make_album(folder, rgb_image, 1)
    Image.fromarray(rgb_image).save(folder / "photo1_mask.png")  # an album image with an output's name
    before = (folder / "photo1_mask.png").read_bytes()
    window = make_window()
    window.open_paths([folder / "photo1.png", folder / "photo1_mask.png"])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    with qtbot.waitSignal(window.jobs.finished, timeout=30000) as finished:
        window.jobs.export([0], folder, masks=True, cutouts=False)
    assert "error" in finished.args[1] and "not overwritten" in finished.args[1]
    assert (folder / "photo1_mask.png").read_bytes() == before


def test_saved_album_is_restored_on_reopening(make_window, album_dir, qtbot, settings):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    click(qtbot, window, 60, 40, Qt.MouseButton.RightButton)
    window.actions_.tool_brush.trigger()
    drag(window, (20, 250), (120, 250))
    mask = window.canvas.current_mask.copy()
    points = window.images.state.points
    strokes = window.images.state.strokes
    _use_as_reference(window, qtbot)
    window.close()  # no explicit save anywhere: every action was saved as it happened

    again = make_window()
    again.open_paths([album_dir])
    wait_idle(qtbot, again)
    state = again.images.state
    assert state.points == points and state.strokes == strokes
    restored = again.canvas.current_mask
    assert (restored != mask).mean() < 0.002  # re-rendered from the saved float16 logits
    assert again.panel.state(0) == ImageState.MASKED
    assert again.targets.target_labels() == ["disc — 1 reference"]
    assert (album_dir / SIDECAR / "album.json").is_file()
    # Undo history starts fresh, but editing goes on from the restored prompts.
    predicts = again.engine.predicts
    click(qtbot, again, 240, 150)
    assert len(again.images.state.points) == 3 and again.engine.predicts == predicts + 1


def test_loaded_mask_file_becomes_the_mask(make_window, album_dir, qtbot, tmp_path):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    m = np.zeros((300, 400), np.uint8)
    m[100:200, 150:300] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    window.albums.load_mask_file(tmp_path / "m.png")
    np.testing.assert_array_equal(window.canvas.current_mask, m > 0)
    window.albums.saver.flush()
    assert Album.open(sorted(album_dir.glob("*.png")), root=album_dir).records[0].base == "bitmap"
    window.images.undo_stack.undo()
    assert window.canvas.current_mask is None


def test_next_image_and_encode_ahead(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: not window.model_lane.busy, timeout=20000)
    encodes = window.engine.encodes
    assert encodes >= 2  # the image and its neighbour, ahead of time
    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    wait_idle(qtbot, window)
    assert window.albums.current == 1 and window.panel.currentRow() == 1
    assert window.engine.encode_count <= 3  # photo2 came from the cache, photo3 ahead


def test_prepare_album_encodes_every_image_once(make_window, album5, qtbot):
    window = make_window()
    window.open_paths([album5])
    wait_idle(qtbot, window)
    progress = []
    window.jobs.progressed.connect(lambda d, t: progress.append((d, t)))
    with qtbot.waitSignal(window.jobs.finished, timeout=60000) as finished:
        window.actions_.prepare.trigger()
    assert finished.args == ["Preparing album", "done"]
    assert progress[-1] == (5, 5)
    assert window.engine.encode_count == 5  # cache hits for what was encoded ahead
    with qtbot.waitSignal(window.jobs.finished, timeout=60000):
        window.actions_.prepare.trigger()
    assert window.engine.encode_count == 5  # a second run is all cache


def test_export_dialog_and_settings_dialog_give_plain_choices(qtbot, tmp_path):
    from persam_studio.gui.backend import ModelChoice
    from persam_studio.gui.dialogs.export_dialog import ALBUM, ExportDialog
    from persam_studio.gui.dialogs.settings_dialog import SettingsDialog

    d = ExportDialog(tmp_path / "out", n_selected=0, refine_available=False)
    qtbot.addWidget(d)
    d.scopes.button(2).setChecked(True)
    d.cutouts.setChecked(False)
    o = d.options()
    assert (o.scope, o.folder, o.masks, o.cutouts, o.refine) == (ALBUM, tmp_path / "out", True, False, False)
    assert not d.scopes.button(1).isEnabled()  # nothing selected
    choice = ModelChoice(checkpoint="/x/sam.pth", model_type="vit_b", device="cpu", cache_dir="/c")
    s = SettingsDialog(choice)
    qtbot.addWidget(s)
    assert s.choice() == choice


def test_export_with_refined_edges_writes_a_soft_alpha(make_window, album_dir, qtbot, tmp_path):
    from persam_studio.gui.backend import matting_available

    if not matting_available():
        pytest.skip("core.matting not available")
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    m = np.zeros((300, 400), np.uint8)
    yy, xx = np.mgrid[0:300, 0:400]
    m[(xx - 250) ** 2 + (yy - 140) ** 2 < 60**2] = 255  # the red disc of the test image
    Image.fromarray(m).save(tmp_path / "disc.png")
    window.albums.load_mask_file(tmp_path / "disc.png")
    with qtbot.waitSignal(window.jobs.finished, timeout=120000) as finished:
        window.jobs.export([0], tmp_path / "out", masks=False, cutouts=True, refine=True)
    assert finished.args[1] == "done"
    alpha = np.asarray(Image.open(tmp_path / "out" / "photo1_cutout.png"))[..., 3]
    assert alpha[140, 250] == 255 and alpha[10, 10] == 0
    assert ((alpha > 0) & (alpha < 255)).any()  # soft edge, not a hard cut


def test_unsaveable_album_warns_once_and_keeps_working(make_window, album_dir, qtbot):
    (album_dir / SIDECAR).write_text("a file where the sidecar folder should be")
    window = make_window()
    errors = []
    window.albums.error.connect(errors.append)
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    click(qtbot, window, 250, 140)
    click(qtbot, window, 60, 40, Qt.MouseButton.RightButton)
    window.albums.saver.flush()
    qtbot.wait(50)  # the drains' answers reach the GUI thread
    assert len(errors) == 1 and "cannot save album state" in errors[0]
    assert window.canvas.current_mask is not None and len(window.images.state.points) == 2


def test_export_right_after_an_edit_waits_for_the_background_save(make_window, album_dir, qtbot, tmp_path,
                                                                   monkeypatch):
    """The album is saved off the GUI thread; an export must not read the mask files before they exist."""
    import time as _time

    from persam_studio.core.io.album import Album

    slow = Album.save_bitmap

    def slow_save_bitmap(self, *args, **kwargs):
        _time.sleep(1.0)  # a slow disk: the export job starts while this save is still running
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(Album, "save_bitmap", slow_save_bitmap)
    window = make_window()
    window.open_paths([album_dir])
    wait_idle(qtbot, window)
    m = np.zeros((300, 400), np.uint8)
    m[100:200, 200:300] = 255
    Image.fromarray(m).save(tmp_path / "box.png")
    window.albums.load_mask_file(tmp_path / "box.png")
    with qtbot.waitSignal(window.jobs.finished, timeout=120000) as finished:
        window.jobs.export([0], tmp_path / "out", masks=True, cutouts=False)
    assert finished.args[1] == "done"
    exported = np.asarray(Image.open(tmp_path / "out" / "photo1_mask.png"))
    assert np.array_equal(exported > 0, m > 0)
