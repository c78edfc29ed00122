"""Write an album's masks as a training dataset: COCO, YOLO-seg or labelme files.

:func:`export_dataset` is a generator that yields one :class:`DatasetStep` per
photo, so the CLI draws a progress bar and the GUI runs it in a worker
(``should_cancel`` is polled between photos). Masks come from
:class:`Category` sources: a folder of ``<stem>.png`` files
(:func:`folder_masks`, what ``propagate`` writes) or the album's saved
masks (:func:`album_masks`). Annotations are built by
:mod:`persam_studio.core.io.dataset`; docs/datasets.md describes the files.

Sizes are those of the oriented photo (EXIF rotation applied): masks must
have that size, and ``width``/``height`` in the files are that size.

Photos without a mask in any category are skipped (status ``"no mask"``);
a photo or mask that cannot be read is an error for that photo only. Every
file is written atomically and never over an input (the photos, the mask
files, anything in ``protected``). Per-photo files (YOLO labels, labelme
JSON, copied images) are written as the loop goes; the COCO JSON and
``data.yaml`` when it ends, so a cancelled COCO export writes no JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from persam_studio.core.io import dataset as ds
from persam_studio.core.io.album import Album, album_root
from persam_studio.core.io.album_masks import saved_mask
from persam_studio.core.io.atomic import atomic_path, atomic_write_text
from persam_studio.core.errors import Cancelled, OutputError, PersamError
from persam_studio.core.io.export import _refuse_inputs
from persam_studio.core.io.imageio import load_image, load_mask
from persam_studio.core.io.naming import output_names

FORMATS = ("coco", "yolo", "polygons")
COCO_FILE = "annotations.json"

#: (photo, (H, W) oriented size) -> bool (H, W) mask, or None: no mask for
#: that photo. Raises a PersamError (MaskError) for an unusable mask.
MaskSource = Callable[[Path, tuple[int, int]], "np.ndarray | None"]


@dataclass(frozen=True)
class Category:
    """A class of the dataset: its ``name`` and where its masks come from."""

    name: str
    masks: MaskSource
    files: tuple[Path, ...] = ()  # the mask files, never to be overwritten


@dataclass(frozen=True)
class DatasetStep:
    """One photo done. ``status``: "written", "empty" (listed, no object), "no mask" or "error"."""

    path: Path
    index: int
    total: int
    status: str
    objects: int = 0
    error: str | None = None


def folder_masks(folder: str | Path, photos: Sequence[Path], name: str | None = None) -> Category:
    """Masks named ``<stem>.png`` in ``folder`` (stems as :func:`output_names` gives them).

    A photo without such a file has no mask; an empty mask file is an empty
    (negative) example. The category is named ``name`` or after the folder.
    """
    folder = Path(folder)
    files = {p: folder / f"{s}.png" for p, s in zip(photos, output_names(photos))}

    def masks(photo: Path, size: tuple[int, int]) -> np.ndarray | None:
        path = files.get(photo)
        if path is None or not path.exists():
            return None
        return load_mask(path, size=size, allow_empty=True)

    return Category(name or folder.resolve().name, masks, tuple(files.values()))


def album_masks(album: Album, name: str) -> Category:
    """The album's saved masks (base and strokes, rebuilt at full size)."""

    def masks(photo: Path, size: tuple[int, int]) -> np.ndarray | None:
        i = album.index_of(photo)
        return None if i is None else saved_mask(album, album.records[i], size)

    return Category(name, masks)


def export_dataset(
    photos: Sequence[Path],
    categories: Sequence[Category],
    out: str | Path,
    fmt: str,
    *,
    segmentation: str = "polygon",
    tolerance: float = 0.0,
    copy_images: bool = False,
    protected: Sequence[Path] = (),
    should_cancel: Callable[[], bool] | None = None,
) -> Iterator[DatasetStep]:
    """Write the dataset into ``out`` (created if missing), one step per photo.

    Args:
        photos: image files, in order (ids and file order follow it).
        categories: the classes; COCO ids 1..n and YOLO indices 0..n-1 in this order.
        fmt: "coco" (``annotations.json``), "yolo" (``labels/<stem>.txt`` and
            ``data.yaml``) or "polygons" (labelme ``<stem>.json`` per photo).
        segmentation: COCO only: "polygon" or "rle" (compressed, exact).
        tolerance: polygon simplification in pixels, 0 = exact outline.
        copy_images: also copy each listed photo, unchanged, to ``images/<stem><ext>``
            (the layout Ultralytics expects); the files then refer to the copies.
        protected: more files never to overwrite (e.g. the album's photos).

    Raises:
        ValueError: unknown ``fmt``/``segmentation``, or two categories share a name.
        Cancelled: ``should_cancel()`` returned True (polled before each photo).
        OutputError: a final file (COCO JSON, data.yaml) cannot be written.
        PersamError: no photo had a mask (or every one failed): after the
            last step, and nothing was written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    names = [c.name for c in categories]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"category names must be given and differ: {names}")
    out = Path(out)
    photos = [Path(p) for p in photos]
    inputs = [*photos, *protected, *(f for c in categories for f in c.files)]
    stems = output_names(photos)
    root = album_root(photos)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}
    for index, (photo, stem) in enumerate(zip(photos, stems)):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        try:
            step = _one_photo(photo, stem, index, len(photos), categories, out, fmt, segmentation,
                              tolerance, copy_images, inputs, root, images, annotations)
        except PersamError as exc:
            step = DatasetStep(photo, index, len(photos), "error", error=str(exc))
        statuses[step.status] = statuses.get(step.status, 0) + 1
        yield step
    if not statuses.get("written") and not statuses.get("empty"):
        # An empty annotations.json or data.yaml would look like a finished
        # dataset; say that nothing was exported and write nothing.
        why = ", ".join(f"{n} {'failed' if s == 'error' else 'without a mask'}" for s, n in statuses.items())
        raise PersamError(out, f"no photo was exported ({why or 'no photos'}); nothing written")
    if fmt == "coco":
        coco = {"info": {"description": "PerSAM Studio masks", "date_created": time.strftime("%Y-%m-%d"),
                         "image_root": str(out / "images" if copy_images else root)},
                "licenses": [], "images": images, "annotations": annotations,
                "categories": [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(names)]}
        _write_text(out / COCO_FILE, json.dumps(coco), inputs)
    elif fmt == "yolo":
        yaml = [f"# Ultralytics YOLO segmentation dataset written by persam-studio export-dataset",
                f"path: {json.dumps(str(out.resolve()))}", "train: images", "val: images", "names:"]
        yaml += [f"  {i}: {json.dumps(n)}" for i, n in enumerate(names)]
        _write_text(out / "data.yaml", "\n".join(yaml) + "\n", inputs)


def _one_photo(photo: Path, stem: str, index: int, total: int, categories: Sequence[Category],
               out: Path, fmt: str, segmentation: str, tolerance: float, copy_images: bool,
               inputs: list[Path], root: Path, images: list, annotations: list) -> DatasetStep:
    """Read one photo's masks and write its files; raises PersamError for this photo."""
    size = load_image(photo).size  # decodes fully: a damaged photo fails here, not in training
    masks = [(i, c, c.masks(photo, size)) for i, c in enumerate(categories)]
    masks = [(i, c, m) for i, c, m in masks if m is not None]
    if not masks:
        return DatasetStep(photo, index, total, "no mask")
    if copy_images:
        image_file = out / "images" / f"{stem}{photo.suffix.lower()}"
        _copy(photo, image_file, inputs)
    image_id = len(images) + 1
    objects = 0
    shapes: list[dict[str, Any]] = []
    lines: list[str] = []
    new_annotations = []
    for i, category, mask in masks:
        if fmt == "coco":
            ann = ds.coco_annotation(mask, len(annotations) + len(new_annotations) + 1, image_id, i + 1,
                                     segmentation, tolerance)
            if ann is not None:
                new_annotations.append(ann)
                objects += 1
            continue
        polygons = ds.mask_to_polygons(mask, tolerance)
        if not polygons:
            continue
        objects += 1
        if fmt == "yolo":
            lines.append(ds.yolo_line(polygons, i, size) or "")
        else:
            shapes += ds.labelme_shapes(polygons, category.name, objects)
    if fmt == "coco":
        name = f"images/{image_file.name}" if copy_images else _relative(photo, root)
        images.append({"id": image_id, "file_name": name, "width": size[1], "height": size[0]})
        annotations += new_annotations
    elif fmt == "yolo":
        _write_text(out / "labels" / f"{stem}.txt", "".join(f"{line}\n" for line in lines), inputs)
    else:
        target = image_file if copy_images else photo
        json_file = out / f"{stem}.json"
        doc = ds.labelme_document(shapes, _relative(target, json_file.parent), size)
        _write_text(json_file, json.dumps(doc), inputs)
    return DatasetStep(photo, index, total, "written" if objects else "empty", objects)


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` with forward slashes (absolute across drives)."""
    try:
        return Path(os.path.relpath(path.absolute(), start.absolute())).as_posix()
    except ValueError:
        return path.absolute().as_posix()


def _write_text(path: Path, text: str, inputs: Sequence[Path]) -> None:
    _refuse_inputs(path, inputs)
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise OutputError(path, f"cannot write ({e.strerror or e})") from None


def _copy(src: Path, dest: Path, inputs: Sequence[Path]) -> None:
    _refuse_inputs(dest, inputs)
    try:
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    except OSError as e:
        raise OutputError(dest, f"cannot copy the photo ({e.strerror or e})") from None
