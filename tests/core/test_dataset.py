"""Dataset annotations: our RLE equals pycocotools', polygons rasterise back to the mask."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from persam_studio.core.io.dataset import (
    coco_annotation,
    labelme_document,
    labelme_shapes,
    mask_bbox,
    mask_to_polygons,
    mask_to_rle,
    yolo_line,
)
from persam_studio.core.io.dataset_export import Category, export_dataset
from tests.conftest import shared_data

mask_api = pytest.importorskip("pycocotools.mask")
coco_api = pytest.importorskip("pycocotools.coco")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _coco_raster(polygons, h: int, w: int) -> np.ndarray:
    rles = mask_api.frPyObjects([p.ravel().tolist() for p in polygons], h, w)
    return mask_api.decode(mask_api.merge(rles)).astype(bool)


@pytest.fixture()
def holed() -> np.ndarray:
    """A 60x80 ring-shaped object with an island in its hole, a one-pixel hole, and a corner blob."""
    m = np.zeros((60, 80), bool)
    m[5:50, 5:60] = True
    m[15:35, 15:40] = False  # the hole
    m[20:25, 20:25] = True  # an island inside it
    m[42, 50] = False  # a one-pixel hole
    m[0:4, 74:80] = True  # touches the top and right borders
    return m


def _perseg_masks():
    from persam_studio.core.io.imageio import load_mask

    folder = shared_data("perseg-examples")
    files = sorted(folder.glob("*.png"))
    assert files, f"no PerSeg masks in {folder}"
    return [(f, load_mask(f)) for f in files]


@pytest.mark.parametrize("compressed", [True, False])
def test_rle_decodes_to_the_same_mask_with_pycocotools(holed, compressed):
    rle = mask_to_rle(holed, compressed=compressed)
    ours = rle if compressed else mask_api.frPyObjects(rle, *rle["size"])
    assert np.array_equal(mask_api.decode(ours).astype(bool), holed)
    if compressed:  # byte for byte what pycocotools itself writes
        theirs = mask_api.encode(np.asfortranarray(holed.astype(np.uint8)))
        assert rle["counts"] == theirs["counts"].decode()


def test_rle_of_empty_and_full_masks():
    assert mask_to_rle(np.zeros((3, 4), bool), compressed=False)["counts"] == [12]
    assert mask_to_rle(np.ones((3, 4), bool), compressed=False)["counts"] == [0, 12]


def test_rle_matches_pycocotools_on_perseg_masks():
    for path, mask in _perseg_masks():
        theirs = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        assert mask_to_rle(mask)["counts"] == theirs, path.name


def test_polygons_keep_holes_and_islands(holed):
    polygons = mask_to_polygons(holed)
    assert len(polygons) == 3  # the ring (holes cut in), the island, the corner blob
    back = _coco_raster(polygons, *holed.shape)
    assert not back[25:30, 30:38].any()  # inside the hole stays empty
    assert back[20:25, 20:25].all()  # the island is there
    assert np.array_equal(back, holed)  # exact: the outline follows the pixel edges
    for p in polygons:  # inside the image, including the border blob
        assert p.min() >= 0 and p[:, 0].max() <= 80 and p[:, 1].max() <= 60


def test_empty_mask_has_no_polygons_and_no_annotation():
    empty = np.zeros((10, 10), bool)
    assert mask_to_polygons(empty) == []
    assert mask_bbox(empty) is None
    assert coco_annotation(empty, 1, 1, 1) is None
    assert yolo_line([], 0, (10, 10)) is None


def test_single_pixel_is_a_unit_square():
    m = np.zeros((8, 8), bool)
    m[5, 3] = True
    (poly,) = mask_to_polygons(m)
    assert poly.min(axis=0).tolist() == [2.5, 4.5] and poly.max(axis=0).tolist() == [3.5, 5.5]
    assert np.array_equal(_coco_raster([poly], 8, 8), m)


def test_polygon_round_trip_on_every_perseg_mask(tmp_path):
    """Write a COCO file for the PerSeg masks, load it with pycocotools, compare masks."""
    items = _perseg_masks()
    photos = [p.with_suffix(".jpg") for p, _ in items]
    masks = {p: m for p, (_, m) in zip(photos, items)}
    category = Category("subject", lambda photo, size: masks[photo])
    steps = list(export_dataset(photos, [category], tmp_path, "coco"))
    assert [s.status for s in steps] == ["written"] * len(items)
    coco = coco_api.COCO(str(tmp_path / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["subject"]
    for img in coco.loadImgs(coco.getImgIds()):
        truth = masks[photos[img["id"] - 1]]
        assert (img["height"], img["width"]) == truth.shape
        (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert isinstance(ann["segmentation"], list)  # polygons
        back = coco.annToMask(ann).astype(bool)
        assert _iou(back, truth) >= 0.99, img["file_name"]
        assert ann["area"] == int(truth.sum())
        assert ann["bbox"] == mask_bbox(truth)


@pytest.mark.parametrize("fmt", ["coco", "yolo", "polygons"])
def test_an_export_with_no_mask_writes_nothing_and_says_so(tmp_path, fmt):
    """An empty annotations.json or data.yaml looks like a finished dataset; it is an error instead."""
    from persam_studio.core.errors import PersamError

    photo = tmp_path / "a.png"
    Image.new("RGB", (40, 30)).save(photo)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "ds"
    steps = export_dataset([photo, bad], [Category("x", lambda p, size: None)], out, fmt, copy_images=True)
    with pytest.raises(PersamError, match=r"no photo was exported \(1 without a mask, 1 failed\)"):
        for _ in steps:
            pass
    assert not out.exists()


def test_simplified_polygons_are_smaller_and_still_close():
    _, mask = _perseg_masks()[0]
    exact, simple = mask_to_polygons(mask), mask_to_polygons(mask, tolerance=1.0)
    assert sum(map(len, simple)) < sum(map(len, exact)) / 2
    assert _iou(_coco_raster(simple, *mask.shape), mask) >= 0.99


def test_yolo_line_is_normalised_and_parseable(holed):
    h, w = holed.shape
    line = yolo_line(mask_to_polygons(holed), 3, (h, w))
    fields = line.split()
    assert fields[0] == "3"
    xy = np.array([float(v) for v in fields[1:]]).reshape(-1, 2)
    assert len(fields[1:]) % 2 == 0 and len(xy) >= 3
    assert xy.min() >= 0.0 and xy.max() <= 1.0
    # One row per object: the parts are joined, and rasterise back to the mask.
    back = _coco_raster([xy * (w, h)], h, w)
    assert _iou(back, holed) >= 0.99


def test_labelme_document_round_trip(holed):
    """Read back as labelme does (PIL polygons, outline drawn) and as JSON."""
    h, w = holed.shape
    doc = json.loads(json.dumps(labelme_document(labelme_shapes(mask_to_polygons(holed), "dog", 1), "a.jpg", (h, w))))
    assert (doc["imageHeight"], doc["imageWidth"], doc["imagePath"]) == (h, w, "a.jpg")
    assert {s["label"] for s in doc["shapes"]} == {"dog"} and {s["group_id"] for s in doc["shapes"]} == {1}
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for shape in doc["shapes"]:
        assert shape["shape_type"] == "polygon"
        draw.polygon([tuple(p) for p in shape["points"]], outline=1, fill=1)  # as labelme's shape_to_mask
    back = np.asarray(im).astype(bool)
    assert not back[27, 33]  # the hole stays open
    # PIL fills pixels the outline touches: at most a one-pixel rim more, nothing less.
    rim = cv2.dilate(holed.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (holed & ~back).any() and not (back & ~rim).any()
