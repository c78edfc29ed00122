"""``persam-studio export-dataset``: COCO, YOLO and labelme files from mask folders or the album."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from persam_studio.cli import main

H, W = 48, 64


@pytest.fixture()
def album(tmp_path):
    """Three photos; masks/ holds a disc for a.png, an empty mask for b.png, none for c.png."""
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (yy - 20) ** 2 + (xx - 30) ** 2 < 12**2
    for name in ("a", "b", "c"):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(photos / f"{name}.png")
    Image.fromarray((disc * 255).astype(np.uint8)).save(masks / "a.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(masks / "b.png")
    return photos, masks, disc


def _run(*args) -> int:
    return main(["export-dataset", *map(str, args)])


def test_coco_lists_masked_photos_and_loads_in_pycocotools(album, tmp_path, capsys):
    coco_api = pytest.importorskip("pycocotools.coco")
    photos, masks, disc = album
    out = tmp_path / "out"
    assert _run(photos, "--masks", f"dog={masks}", "-o", out, "--format", "coco") == 0
    coco = coco_api.COCO(str(out / "annotations.json"))
    images = coco.loadImgs(coco.getImgIds())
    assert [(i["file_name"], i["width"], i["height"]) for i in images] == [("a.png", W, H), ("b.png", W, H)]
    (ann,) = coco.loadAnns(coco.getAnnIds())  # b is an empty (negative) example, c has no mask
    assert coco.loadCats(ann["category_id"])[0]["name"] == "dog"
    assert np.array_equal(coco.annToMask(ann).astype(bool), disc)
    assert "1 without a mask skipped" in capsys.readouterr().out


def test_coco_rle(album, tmp_path):
    photos, masks, disc = album
    out = tmp_path / "out"
    assert _run(photos, "--masks", masks, "-o", out, "--format", "coco", "--segmentation", "rle") == 0
    doc = json.loads((out / "annotations.json").read_text())
    (ann,) = doc["annotations"]
    assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
    assert doc["categories"] == [{"id": 1, "name": "masks", "supercategory": ""}]  # the folder's name


def test_yolo_labels_data_yaml_and_copied_images(album, tmp_path):
    photos, masks, disc = album
    out = tmp_path / "out"
    assert _run(photos, "--masks", f"dog={masks}", "-o", out, "--format", "yolo", "--copy-images") == 0
    (line,) = (out / "labels" / "a.txt").read_text().splitlines()
    values = [float(v) for v in line.split()[1:]]
    assert line.split()[0] == "0" and min(values) >= 0 and max(values) <= 1
    assert (out / "labels" / "b.txt").read_text() == ""  # a background image
    assert not (out / "labels" / "c.txt").exists()
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.png", "b.png"]
    yaml = (out / "data.yaml").read_text()
    assert 'names:\n  0: "dog"' in yaml and "train: images" in yaml


def test_polygons_are_labelme_files_beside_nothing_else(album, tmp_path):
    photos, masks, disc = album
    out = tmp_path / "out"
    assert _run(photos, "--masks", f"dog={masks}", "-o", out, "--format", "polygons") == 0
    doc = json.loads((out / "a.json").read_text())
    assert doc["imagePath"] == "../photos/a.png" and (doc["imageHeight"], doc["imageWidth"]) == (H, W)
    assert [s["label"] for s in doc["shapes"]] == ["dog"]
    assert json.loads((out / "b.json").read_text())["shapes"] == []
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]


def test_bad_mask_is_one_error_line_and_the_others_are_written(album, tmp_path, capsys):
    photos, masks, disc = album
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "c.png")  # wrong size
    out = tmp_path / "out"
    assert _run(photos, "--masks", masks, "-o", out, "--format", "polygons") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert err == [f"error: {masks / 'c.png'}: mask is 10x10 but the image is {W}x{H}"]
    assert (out / "a.json").exists() and (out / "b.json").exists() and not (out / "c.json").exists()


def test_missing_masks_folder(album, tmp_path, capsys):
    photos, _, _ = album
    assert _run(photos, "--masks", tmp_path / "nope", "-o", tmp_path / "out", "--format", "coco") == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: masks folder not found"
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(album, tmp_path, capsys):
    photos, masks, _ = album
    with pytest.raises(SystemExit) as usage:
        _run(photos, "--masks", masks, "-o", tmp_path / "out", "--format", "voc")
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as usage:
        _run(photos, "--masks", masks, "--masks", masks, "-o", tmp_path / "out", "--format", "coco")
    assert usage.value.code == 2 and "class names must differ" in capsys.readouterr().err


def test_album_masks_without_masks_option(album, tmp_path):
    """Without --masks the album's saved state is exported (here a bitmap base plus a stroke)."""
    from persam_studio.core.io.album import Album, ImageState, Stroke

    photos, _, disc = album
    state = Album.open(sorted(photos.iterdir()), root=photos)
    record = state.records[0]
    state.save_bitmap(record, disc)
    record.base, record.state = "bitmap", ImageState.MASKED
    record.strokes = (Stroke("add", 2.0, ((5.0, 40.0),)),)
    state.add_reference("dog", record, disc)
    state.save()
    out = tmp_path / "out"
    assert _run(photos, "-o", out, "--format", "coco", "--segmentation", "rle") == 0
    doc = json.loads((out / "annotations.json").read_text())
    assert [i["file_name"] for i in doc["images"]] == ["a.png"]
    assert doc["categories"][0]["name"] == "dog"
    (ann,) = doc["annotations"]
    assert ann["area"] > int(disc.sum())  # the stroke is in


def test_subprocess_never_shows_a_traceback(album, tmp_path):
    photos, _, _ = album
    proc = subprocess.run([sys.executable, "-m", "persam_studio", "export-dataset", str(photos), "--masks",
                           str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--format", "yolo"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_no_mask_for_any_photo_is_an_error_and_writes_nothing(album, tmp_path, capsys, fmt):
    """It used to write an empty annotations.json (or data.yaml) and exit 0."""
    photos, _, _ = album
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(other / "zz.png")  # a mask for no photo here
    out = tmp_path / "out"
    assert _run(photos, "--masks", other, "-o", out, "--format", fmt) == 1
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last == f"error: {out}: no photo was exported (3 without a mask); nothing written"
    assert "Traceback" not in captured.err and "wrote" not in captured.out
    assert not out.exists()
