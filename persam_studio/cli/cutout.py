"""``persam-studio cutout``: an image and its mask to a transparent cutout or a new background."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persam_studio.cli.common import background_spec

    p = sub.add_parser(
        "cutout",
        help="cut an object out with its mask; transparent, or on a colour, picture or blur",
        description="Cut the object in MASK out of IMAGE. Without --background the output is a "
        "transparent RGBA cutout (.png, .webp, .tif); with one it is the object on that background. "
        "JPEG has no transparency: a .jpg output without --background is put on white. "
        "MASK must have the image's size as displayed (EXIF rotation applied).",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--mask", required=True, metavar="MASK", help="mask image: white/non-zero (or opaque) = object")
    p.add_argument("--refine", action="store_true",
                   help="soft edges for hair and fur, and colours without the old background")
    p.add_argument("--background", type=background_spec, metavar="COLOR|IMAGE|blur",
                   help="#rrggbb, #rgb, r,g,b, a name (white, black, grey, ...), an image file "
                   "(scaled to cover the frame, centre-cropped), or 'blur' (the photo, blurred)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file: .png, .jpg, .webp or .tif")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from persam_studio.core.edges.cutout import parse_background, write_cutout
    from persam_studio.core.errors import OutputError
    from persam_studio.core.io.export import OUTPUT_SUFFIXES
    from persam_studio.core.io.guard import check_outputs
    from persam_studio.core.io.imageio import load_image, load_mask

    out = Path(args.output)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:  # before any work
        raise OutputError(out, f"unsupported output format '{out.suffix}' (use .png, .jpg, .webp or .tif)")
    inputs = [Path(args.image), Path(args.mask)]
    if args.background and Path(args.background).exists():
        inputs.append(Path(args.background))
    check_outputs([out], inputs)  # before any work: not over an input, a device or a FIFO
    image = load_image(args.image)
    mask = load_mask(args.mask, size=image.size)
    background, words = (None, "") if args.background is None else parse_background(args.background)
    h, w = image.size

    t0 = time.perf_counter()
    info = write_cutout(out, image.pixels, mask, refine=args.refine, background=background,
                        background_words=words, inputs=inputs)
    how = f"refined edges in {time.perf_counter() - t0:.1f}s" if args.refine else "hard edges"
    kind = f"on {info.background}" if info.background else "RGBA cutout"
    print(f"wrote {out} ({w}x{h}, {kind}, {how})", file=sys.stdout)
    return 0
