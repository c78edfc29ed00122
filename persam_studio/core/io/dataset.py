"""Masks as dataset annotations: polygons, COCO RLE, COCO / YOLO / labelme records.

No Qt, no torch: numpy and OpenCV only. Writing files and walking an album
is in :mod:`persam_studio.core.io.dataset_export`.

Coordinate frame: pixels of the *oriented* image (EXIF rotation applied),
x = column, y = row, and the centre of pixel (col, row) is the point
(col, row). That is the frame the common rasterisers use (pycocotools'
``frPyObjects``, OpenCV's ``fillPoly``, PIL's ``ImageDraw.polygon``):
pycocotools and OpenCV fill a pixel when its centre is inside the polygon;
PIL (and so labelme) also fills the pixels the outline runs through, one
pixel more all around.

Polygons follow the mask's pixel edges exactly (vertices at half-integer
coordinates, e.g. a one-pixel mask at (3, 5) is the square (2.5, 4.5) to
(3.5, 5.5)), so rasterising them gives the mask back (pycocotools: pixel
for pixel on the PerSeg masks); vertices are clipped to
the image, [0, W] x [0, H]. ``tolerance`` > 0 drops vertices (Douglas-Peucker)
for smaller files, at the cost of exactness along diagonal edges.

Holes: COCO, YOLO and labelme polygons cannot carry holes. Each hole is cut
into its outer ring with a zero-width "keyhole" bridge (out along a line to
the hole, around it, back along the same line). Every even-odd or non-zero
rasteriser then leaves the hole empty, and the bridge itself covers no area.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

#: Version string written into labelme files (the format of labelme 5).
LABELME_VERSION = "5.4.1"


def as_mask(mask: np.ndarray) -> np.ndarray:
    """bool (H, W) from a bool or 0/1 or 0/255 uint8 array."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if m.dtype == bool:
        return m
    if m.dtype == np.uint8:
        return m > (0 if m.size and m.max() == 1 else 127)
    raise ValueError(f"mask must be bool or uint8, got {m.dtype}")


def mask_bbox(mask: np.ndarray) -> list[int] | None:
    """COCO box [x, y, width, height] of the object pixels, or None when empty."""
    m = as_mask(mask)
    cols, rows = np.flatnonzero(m.any(axis=0)), np.flatnonzero(m.any(axis=1))
    if not cols.size:
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


# -- polygons ----------------------------------------------------------------


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[np.ndarray]:
    """One polygon per connected part of the mask, its holes keyholed in.

    Args:
        mask: (H, W) bool (or 0/1, 0/255 uint8).
        tolerance: Douglas-Peucker distance in pixels (0 = exact outline).

    Returns:
        float64 (N, 2) X, Y vertex arrays (N >= 4, open: the first vertex is
        not repeated), in the frame of the module docstring; [] when empty.
    """
    m = as_mask(mask)
    box = mask_bbox(m)
    if box is None:
        return []
    x0, y0, bw, bh = box
    # The outline of the union of pixel squares: sample the mask on a grid of
    # half pixels (centres at odd indices, edges and corners at even ones)
    # and mark every edge and corner that touches an object pixel. The
    # contour of that grid runs exactly along the pixel edges.
    grid = np.zeros((2 * bh + 1, 2 * bw + 1), np.uint8)
    grid[1::2, 1::2] = m[y0 : y0 + bh, x0 : x0 + bw]
    grid = cv2.dilate(grid, np.ones((3, 3), np.uint8))
    contours, hierarchy = cv2.findContours(grid, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    contours = [_square_corners(c.reshape(-1, 2)).reshape(-1, 1, 2) for c in contours]
    if tolerance > 0:
        contours = [cv2.approxPolyDP(c, 2.0 * tolerance, True) for c in contours]
    h, w = m.shape

    def to_image(c: np.ndarray) -> np.ndarray:
        xy = c.reshape(-1, 2).astype(np.float64)
        xy = (xy - 1.0) / 2.0 + (x0, y0)
        return np.clip(xy, 0.0, (w, h))

    # RETR_CCOMP: a two-level tree, outer rings at the top, their holes as
    # children (an island inside a hole is again a top-level ring).
    links = hierarchy[0]
    polygons = []
    for i, contour in enumerate(contours):
        if links[i][3] >= 0 or len(contour) < 3:
            continue
        ring = to_image(contour)
        child = links[i][2]
        while child >= 0:
            if len(contours[child]) >= 3:
                ring = join_rings(ring, to_image(contours[child]))
            child = links[child][0]
        polygons.append(ring)
    return polygons


def _square_corners(c: np.ndarray) -> np.ndarray:
    """Put back the pixel corners OpenCV's 8-connected tracing cuts off.

    Args:
        c: int32 (N, 2) grid vertices (pixel corners at even, even indices).

    Returns:
        int32 (M, 2): only horizontal and vertical edges, without the
        vertices in the middle of straight runs.
    """
    nxt = np.roll(c, -1, axis=0)
    d = nxt - c
    diagonal = (np.abs(d[:, 0]) == 1) & (np.abs(d[:, 1]) == 1)
    # A cut goes from an edge midpoint to the next; its corner is the
    # (even, even) one of the two candidates.
    even_x = c[:, 0] % 2 == 0
    corner = np.where(even_x[:, None], np.stack([c[:, 0], nxt[:, 1]], 1), np.stack([nxt[:, 0], c[:, 1]], 1))
    pts = np.empty((len(c) + int(diagonal.sum()), 2), c.dtype)
    at = np.arange(len(c)) + np.concatenate(([0], np.cumsum(diagonal)[:-1]))
    pts[at] = c
    pts[at[diagonal] + 1] = corner[diagonal]
    before, after = pts - np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0) - pts
    turn = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    keep = (turn != 0) | ((before * after).sum(axis=1) < 0)  # corners, and reversals if any
    return pts[keep] if keep.sum() >= 3 else pts


def join_rings(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``ring`` and ``other`` as one polygon, joined by a zero-width bridge.

    The bridge goes from the vertex of ``ring`` nearest to ``other``'s first
    vertex, around ``other`` and back the same way. For a hole this cuts the
    hole out; for a separate part (YOLO's one row per object) it adds it.

    Args:
        ring, other: float (N, 2) and (M, 2) X, Y vertices, open rings.

    Returns:
        float64 (N + M + 2, 2).
    """
    k = int(np.argmin(((ring - other[0]) ** 2).sum(axis=1)))
    return np.concatenate([ring[: k + 1], other, other[:1], ring[k:]])


def polygon_area(xy: np.ndarray) -> float:
    """Area enclosed by an open (N, 2) ring (shoelace; keyholes count zero)."""
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


# -- COCO RLE ---------------------------------------------------------------


def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO run lengths: column-major runs, starting with a (maybe empty) background run."""
    flat = as_mask(mask).ravel(order="F")  # COCO runs go down the columns
    if not flat.size:
        return []
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], starts, [flat.size])))
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return [int(c) for c in counts]


def rle_string(counts: list[int]) -> str:
    """pycocotools' compressed form of run lengths (``rleToString``).

    Each count (from the third on, minus the count two before it) is written
    as 5-bit groups, low first, each as chr(48 + group), with 0x20 set on all
    but the last group; 0x10 of the last group carries the sign.
    """
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            c = x & 0x1F
            x >>= 5  # arithmetic shift, as the C code's on a signed long
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(48 + (c | 0x20 if more else c)))
            if not more:
                break
    return "".join(out)


def mask_to_rle(mask: np.ndarray, compressed: bool = True) -> dict[str, Any]:
    """COCO RLE of a (H, W) mask: ``{"size": [H, W], "counts": str | list[int]}``.

    ``compressed`` gives the string form pycocotools writes; otherwise the
    uncompressed list of run lengths (COCO's ``iscrowd`` files use that).
    """
    m = as_mask(mask)
    counts = rle_counts(m)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle_string(counts) if compressed else counts}


# -- records of the three formats ---------------------------------------------


def coco_annotation(
    mask: np.ndarray, ann_id: int, image_id: int, category_id: int,
    segmentation: str = "polygon", tolerance: float = 0.0,
) -> dict[str, Any] | None:
    """One COCO ``annotations`` entry (``iscrowd`` 0) for a mask, None when empty.

    Args:
        segmentation: "polygon" (one polygon per part, holes keyholed) or
            "rle" (compressed RLE: exact, holes included).

    ``area`` is the mask's pixel count and ``bbox`` its pixel box in either case.
    """
    m = as_mask(mask)
    bbox = mask_bbox(m)
    if bbox is None:
        return None
    if segmentation == "rle":
        seg: Any = mask_to_rle(m)
    elif segmentation == "polygon":
        seg = [_flat(p) for p in mask_to_polygons(m, tolerance)]
    else:
        raise ValueError(f"segmentation must be 'polygon' or 'rle', got {segmentation!r}")
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": seg,
            "area": int(m.sum()), "bbox": bbox, "iscrowd": 0}


def yolo_line(polygons: list[np.ndarray], class_index: int, size: tuple[int, int]) -> str | None:
    """One Ultralytics YOLO-seg row for one object: ``class x1 y1 x2 y2 ...``.

    Ultralytics wants one row per object, so separate parts are joined with
    zero-width bridges (as its own COCO converter does). Coordinates are
    divided by the image width and height (``size`` = (H, W)), so in [0, 1].
    None when there is no polygon.
    """
    if not polygons:
        return None
    ring = polygons[0]
    for part in polygons[1:]:
        ring = join_rings(ring, part)
    h, w = size
    xy = ring / (w, h)
    return f"{class_index} " + " ".join(f"{v:.6f}" for v in xy.ravel())


def labelme_shapes(polygons: list[np.ndarray], label: str, group_id: int | None) -> list[dict[str, Any]]:
    """labelme ``shapes``: one polygon per part, parts of one object share ``group_id``."""
    return [
        {"label": label, "points": p.round(3).tolist(), "group_id": group_id, "description": "",
         "shape_type": "polygon", "flags": {}, "mask": None}
        for p in polygons
    ]


def labelme_document(shapes: list[dict[str, Any]], image_path: str, size: tuple[int, int]) -> dict[str, Any]:
    """A labelme 5 file: ``shapes`` on the image at ``image_path`` (relative to the JSON), (H, W) ``size``."""
    return {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": int(size[0]), "imageWidth": int(size[1])}


def _flat(xy: np.ndarray) -> list[float]:
    # Vertices are halves of pixels (exact in binary); rounding only guards
    # the simplified case against long float tails in the JSON.
    return [round(float(v), 3) for v in xy.ravel()]
