"""New backgrounds (canvas preview and Export) and dataset export from the app, as a user sees them."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from PySide6.QtGui import QColor

from persam_studio.gui.convert import qimage_to_rgb
from tests.gui.conftest import wait_idle
from tests.gui.test_canvas_prompts import drag


def _brushed(window, qtbot, row: int = 0):
    """Show album photo ``row`` with a brushed band (a mask whatever the random model says)."""
    window.albums.show(row)
    wait_idle(qtbot, window)
    window.actions_.tool_brush.trigger()
    drag(window, (20, 250), (220, 250))
    wait_idle(qtbot, window)


def test_background_colour_preview_shows_the_object_on_that_colour(make_window, album_dir, qtbot):
    window = make_window()
    window.open_paths([album_dir])
    _brushed(window, qtbot)
    with qtbot.waitSignal(window.preview.shown, timeout=20000):
        window.background.set_colour(QColor(255, 0, 0))
    mask = window.images.session.mask()
    shown = qimage_to_rgb(window.canvas.preview_image)
    assert shown.shape[:2] == mask.shape == window.images.session.display_size
    assert mask.any() and (~mask).any()
    assert (shown[~mask] == (255, 0, 0)).all()  # outside the object: the new background
    assert not (shown[mask] == (255, 0, 0)).all(axis=1).all()  # inside: the photo
    assert not window.canvas._overlay_item.isVisible()  # no blue tint over the preview

    # A new stroke: the preview follows the mask.
    with qtbot.waitSignal(window.preview.shown, timeout=20000):
        drag(window, (20, 60), (220, 60))
    assert (qimage_to_rgb(window.canvas.preview_image)[window.images.session.mask()] != (255, 0, 0)).any(axis=1).any()

    window.background.kind.setCurrentIndex(0)  # None: the photo and its overlay again
    assert window.canvas.preview_image is None and window.canvas._overlay_item.isVisible()


def test_background_blur_and_picture_preview(make_window, album_dir, qtbot, tmp_path):
    window = make_window()
    window.open_paths([album_dir])
    _brushed(window, qtbot)
    picture = tmp_path / "bg.png"
    Image.fromarray(np.full((50, 80, 3), (10, 200, 30), np.uint8)).save(picture)
    with qtbot.waitSignal(window.preview.shown, timeout=20000):
        window.background.set_picture(picture)
    mask = window.images.session.mask()
    assert (qimage_to_rgb(window.canvas.preview_image)[~mask] == (10, 200, 30)).all()
    with qtbot.waitSignal(window.preview.shown, timeout=20000):
        window.background.kind.setCurrentIndex(3)  # blur
    assert window.preview.spec == "blur" and window.canvas.preview_image is not None


def test_the_next_session_offers_the_last_colour_and_picture_without_starting_a_preview(
        make_window, album_dir, qtbot, tmp_path, monkeypatch):
    from persam_studio.gui.background import COLOUR, NONE, PICTURE
    from persam_studio.gui.dialogs.export_dialog import ExportDialog

    window = make_window()
    picture = tmp_path / "beach.png"
    Image.fromarray(np.full((50, 80, 3), (10, 200, 30), np.uint8)).save(picture)
    window.background.set_colour(QColor("#123456"))
    window.background.set_picture(picture)
    window.close()

    again = make_window()
    again.open_paths([album_dir])
    _brushed(again, qtbot)
    picker = again.background
    assert picker.kind.currentData() == NONE and again.canvas.preview_image is None  # as every session starts
    with qtbot.waitSignal(again.preview.shown, timeout=20000):
        picker.kind.setCurrentIndex(picker.kind.findData(PICTURE))  # no file dialog: the last picture
    assert picker.spec == str(picture)
    assert (qimage_to_rgb(again.canvas.preview_image)[~again.images.session.mask()] == (10, 200, 30)).all()
    picker.kind.setCurrentIndex(picker.kind.findData(COLOUR))
    assert picker.spec == "#123456" and picker.what.text() == "#123456"
    picker.kind.setCurrentIndex(picker.kind.findData(NONE))
    seen = []  # the Export dialog's own picker offers the same colour and picture

    def exec_(dialog):
        offered = dialog.background
        seen.append((offered.kind.currentData(), offered.colour.name(), offered.picture))
        return 0

    monkeypatch.setattr(ExportDialog, "exec", exec_)
    again._ask_export()
    assert seen == [(NONE, "#123456", str(picture))]
    again.close()

    picture.unlink()  # gone since: picking it says so once, and shows no preview
    third = make_window()
    with qtbot.waitSignal(third.preview.failed, timeout=20000) as said:
        third.background.kind.setCurrentIndex(third.background.kind.findData(PICTURE))
    assert said.args[0].startswith("background: ") and "beach.png" in said.args[0]
    assert third.canvas.preview_image is None


def test_export_with_a_background_writes_the_composite(make_window, album_dir, qtbot, tmp_path):
    window = make_window()
    window.open_paths([album_dir])
    _brushed(window, qtbot)
    out = tmp_path / "out"
    with qtbot.waitSignal(window.jobs.finished, timeout=30000) as finished:
        assert window.jobs.export([0], out, masks=True, cutouts=True, background="#00ff00")
    assert finished.args[1] == "done"
    mask = np.asarray(Image.open(out / "photo1_mask.png")) > 0
    cutout = np.asarray(Image.open(out / "photo1_cutout.png"))
    photo = np.asarray(Image.open(album_dir / "photo1.png").convert("RGB"))
    assert cutout.shape == (300, 400, 3)  # opaque: the object on its background
    assert (cutout[~mask] == (0, 255, 0)).all()
    np.testing.assert_array_equal(cutout[mask], photo[mask])

    with qtbot.waitSignal(window.jobs.finished, timeout=30000):
        assert window.jobs.export([0], out, masks=False, cutouts=True, background="blur", cutout_suffix=".jpg")
    assert Image.open(out / "photo1_cutout.jpg").format == "JPEG"


def test_dataset_export_writes_coco_that_pycocotools_loads(make_window, album_dir, qtbot, tmp_path):
    from pycocotools.coco import COCO

    window = make_window()
    window.open_paths([album_dir])
    _brushed(window, qtbot, 0)
    _brushed(window, qtbot, 2)  # photo2 stays without a mask
    out = tmp_path / "out"
    for kind in ("coco-polygon", "coco-rle"):
        with qtbot.waitSignal(window.jobs.finished, timeout=30000) as finished:
            assert window.jobs.export([0, 1, 2], out, masks=False, cutouts=False, dataset=kind)
        assert finished.args[1] == "done"
        coco = COCO(str(out / "coco" / "annotations.json"))
        anns = coco.loadAnns(coco.getAnnIds())
        names = {coco.imgs[a["image_id"]]["file_name"] for a in anns}
        assert len(anns) == 2 and names == {"photo1.png", "photo3.png"}
        rle = coco.annToMask(anns[0])
        assert rle.shape == (300, 400) and rle[250, 30:200].all()  # the brushed band

    with qtbot.waitSignal(window.jobs.finished, timeout=30000):
        assert window.jobs.export([0, 1, 2], out, masks=True, cutouts=False, dataset="yolo")
    assert (out / "yolo" / "data.yaml").exists() and (out / "photo1_mask.png").exists()
    assert sorted(p.name for p in (out / "yolo" / "labels").iterdir()) == ["photo1.txt", "photo3.txt"]
    with qtbot.waitSignal(window.jobs.finished, timeout=30000):
        assert window.jobs.export([0], out, masks=False, cutouts=False, dataset="polygons")
    assert json.loads((out / "labelme" / "photo1.json").read_text())["shapes"]


def test_dataset_export_of_photos_without_masks_says_so_and_writes_nothing(make_window, album_dir, qtbot, tmp_path):
    """It used to run and write an empty annotations.json, then say "done"."""
    window = make_window()
    window.open_paths([album_dir])
    _brushed(window, qtbot, 0)
    out = tmp_path / "out"
    for masks, dataset in ((False, "coco-polygon"), (True, "yolo"), (False, "polygons")):
        with qtbot.waitSignal(window.jobs.message, timeout=5000) as said:
            assert not window.jobs.export([1, 2], out, masks=masks, cutouts=False, dataset=dataset)
        assert said.args[0] == "nothing to export: no mask in the chosen images"
    assert not out.exists() and not window.jobs.busy


def test_dataset_export_can_be_cancelled(make_window, album_dir, qtbot, tmp_path):
    window = make_window()
    window.open_paths([album_dir])
    _brushed(window, qtbot, 0)
    out = tmp_path / "out"
    with qtbot.waitSignal(window.jobs.finished, timeout=30000) as finished:
        assert window.jobs.export([0, 1, 2], out, masks=False, cutouts=False, dataset="coco-polygon")
        window.status.cancel.click()
    assert finished.args[1] == "cancelled"
    assert not (out / "coco" / "annotations.json").exists()  # a cancelled COCO export writes no JSON
    assert not window.jobs.busy


def test_export_dialog_offers_backgrounds_and_datasets(qtbot, tmp_path):
    from persam_studio.gui.dialogs.export_dialog import ExportDialog

    dialog = ExportDialog(tmp_path, 0, True, None, "blur")
    qtbot.addWidget(dialog)
    labels = [dialog.dataset.itemText(i) for i in range(dialog.dataset.count())]
    assert any("COCO" in t and "RLE" in t for t in labels) and any("YOLO" in t for t in labels)
    assert any("labelme" in t for t in labels)
    dialog.dataset.setCurrentIndex(labels.index(next(t for t in labels if "RLE" in t)))
    dialog.cutout_format.setCurrentIndex(1)
    o = dialog.options()
    assert (o.background, o.cutout_suffix, o.dataset) == ("blur", ".jpg", "coco-rle")
    dialog.cutouts.setChecked(False)
    assert dialog.options().background == "" and not dialog.background.isEnabled()
