"""``persam-studio export-dataset``: masks as COCO, YOLO-seg or labelme polygon files.

    persam-studio export-dataset PHOTOS|FOLDER... [--masks [NAME=]DIR]... -o OUT
        --format coco|yolo|polygons [--segmentation polygon|rle] [--tolerance PX]
        [--copy-images] [--category NAME] [--recursive]

``--masks DIR`` reads ``DIR/<stem>.png`` (as ``propagate`` and ``segment``
write them); several ``--masks`` make several classes, named ``NAME`` or
after their folder. Without ``--masks`` the album's saved masks are used
(the state the app keeps beside the photos). See docs/datasets.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persam_studio.cli.common import number_in

    p = sub.add_parser(
        "export-dataset",
        help="write masks as a COCO, YOLO-seg or labelme (polygon) dataset",
        description="Turn the masks of a set of photos into a training dataset: COCO instance JSON "
        "(polygons or RLE), Ultralytics YOLO-seg labels, or one labelme JSON per photo. Masks come "
        "from folders of <stem>.png files (--masks) or, without --masks, from the album's saved masks. "
        "Coordinates are pixels of the photo as displayed (EXIF rotation applied).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photos or folders of photos")
    p.add_argument("--masks", action="append", default=[], metavar="[NAME=]DIR",
                   help="folder of <stem>.png masks, one class (repeatable; the class is NAME or the folder's name)")
    p.add_argument("--category", metavar="NAME",
                   help="class name of the album's masks (default: the album's reference name, else 'object')")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--format", required=True, choices=["coco", "yolo", "polygons"], help="dataset format")
    p.add_argument("--segmentation", choices=["polygon", "rle"], default="polygon",
                   help="COCO segmentation: polygons (holes cut in) or compressed RLE (exact); default polygon")
    p.add_argument("--tolerance", type=number_in(0, math.inf), default=0.0, metavar="PX",
                   help="simplify polygons to within PX pixels (default 0: exact pixel outline)")
    p.add_argument("--copy-images", action="store_true",
                   help="copy the photos into OUT/images/ (Ultralytics needs images/ beside labels/)")
    p.add_argument("--recursive", action="store_true", help="include sub-folders of input folders")
    p.set_defaults(func=run, _parser=p)


def _mask_specs(parser: argparse.ArgumentParser, specs: list[str]) -> list[tuple[str | None, Path]]:
    out = []
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep:
            name, folder = "", spec
        if sep and not name.strip():
            parser.error(f"--masks {spec!r}: give NAME=DIR or DIR")
        out.append((name.strip() or None, Path(folder)))
    return out


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import ProgressBar, batch_inputs
    from persam_studio.core.io.dataset_export import album_masks, export_dataset, folder_masks
    from persam_studio.core.errors import MaskError

    parser = args._parser
    if args.masks and args.category:
        parser.error("--category names the album's masks; with --masks use NAME=DIR")
    specs = _mask_specs(parser, args.masks)
    for _, folder in specs:
        if not folder.is_dir():
            raise MaskError(folder, "masks folder not found" if not folder.exists() else "is not a folder")
    out = Path(args.output)
    # Never take our own output (copied images) or the masks for photos; a
    # masks folder may be the photos' own (PerSeg keeps NN.jpg beside NN.png).
    mask_dirs = {folder.resolve() for _, folder in specs}
    photos = batch_inputs(args.inputs, out, args.recursive,
                          skip=lambda p: p.suffix.lower() == ".png" and p.parent.resolve() in mask_dirs)

    if specs:
        categories = [folder_masks(folder, photos, name) for name, folder in specs]
        names = [c.name for c in categories]
        if len(set(names)) != len(names):
            parser.error(f"class names must differ ({', '.join(names)}); use --masks NAME=DIR")
    else:
        from persam_studio.core.io.album import Album

        root = Path(args.inputs[0]) if len(args.inputs) == 1 and Path(args.inputs[0]).is_dir() else None
        album = Album.open(photos, root=root)
        refs = album.reference_names()
        name = args.category or (refs[0] if len(refs) == 1 else "object")
        categories = [album_masks(album, name)]

    bar = ProgressBar(len(photos), f"export {args.format}")
    counts = {"written": 0, "empty": 0, "no mask": 0, "error": 0}
    failures: list[str] = []
    steps = export_dataset(photos, categories, out, args.format, segmentation=args.segmentation,
                           tolerance=args.tolerance, copy_images=args.copy_images)
    try:
        for step in steps:
            counts[step.status] += 1
            if step.error:
                failures.append(step.error)
            bar.update(step.index + 1, note=step.path.name)
    finally:  # the photos' own errors come before a final one (nothing exported, a write failed)
        bar.close(", ".join(f"{v} {k}" for k, v in counts.items() if v))
        for message in failures:
            print(f"error: {message}", file=sys.stderr)
    listed = counts["written"] + counts["empty"]
    print(f"wrote {out} ({args.format}: {listed} photos, {counts['no mask']} without a mask skipped"
          f"{f', {len(failures)} failed' if failures else ''})")
    if args.format == "yolo" and not args.copy_images and listed:
        print("note: Ultralytics reads images from OUT/images/; add --copy-images or copy them there")
    return 1 if failures else 0
