"""``persam-studio cutout``: an image and its mask to a transparent cutout or a new background."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

JPEG_SUFFIXES = (".jpg", ".jpeg")
OUTPUT_SUFFIXES = (".png", ".webp", ".tif", ".tiff") + JPEG_SUFFIXES


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    p.add_argument("--background", type=_background_spec, metavar="COLOR|IMAGE|blur",
                   help="#rrggbb, #rgb, r,g,b, a name (white, black, grey, ...), an image file "
                   "(scaled to cover the frame, centre-cropped), or 'blur' (the photo, blurred)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file: .png, .jpg, .webp or .tif")
    p.set_defaults(func=run)


def _background_spec(spec: str) -> str:
    """``--background``: a colour, 'blur' or an existing file; anything else is a usage error (exit 2)."""
    from persam_studio.core.edges.composite import BLUR, parse_colour

    if spec.strip().lower() == BLUR or Path(spec).exists():
        return spec  # a file that exists but does not load is an input error (exit 1) later
    try:
        parse_colour(spec)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{spec!r} is not a colour (#rrggbb, #rgb, r,g,b, white...), 'blur', or an existing image file"
        ) from None
    return spec


def run(args: argparse.Namespace) -> int:
    from persam_studio.core.edges.composite import composite, cutout_rgba
    from persam_studio.core.errors import OutputError
    from persam_studio.core.io.export import save_cutout_png, save_image
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
    background, note = _background(args.background, out, inputs)
    h, w = image.size

    t0 = time.perf_counter()
    if args.refine:
        from persam_studio.core.edges.matting import refine_alpha

        alpha, colours = refine_alpha(image.pixels, mask)
        how = f"refined edges in {time.perf_counter() - t0:.1f}s"
    else:
        alpha, colours = mask, image.pixels
        how = "hard edges"

    if background is None and out.suffix.lower() == ".png":
        save_cutout_png(out, colours, alpha, inputs=inputs)
        kind = "RGBA cutout"
    elif background is None:
        save_image(out, cutout_rgba(colours, alpha), inputs=inputs)
        kind = "RGBA cutout"
    else:
        save_image(out, composite(colours, alpha, background, original=image.pixels), inputs=inputs)
        kind = f"on {note}"
    print(f"wrote {out} ({w}x{h}, {kind}, {how})", file=sys.stdout)
    return 0


def _background(spec: str | None, out: Path, inputs: list[Path]):
    """(background for ``composite``, words for the report) from the option's text.

    An existing file wins over a colour name; JPEG output without a
    background gets white.
    """
    from persam_studio.core.edges.composite import BLUR, parse_colour
    from persam_studio.core.errors import PersamError
    from persam_studio.core.io.imageio import load_image

    if spec is None:
        if out.suffix.lower() in JPEG_SUFFIXES:
            return "white", "white (JPEG has no transparency)"
        return None, ""
    if spec.strip().lower() == BLUR:
        return BLUR, "a blurred background"
    path = Path(spec)
    if path.exists():  # a folder, FIFO or bad file fails here with one line
        return load_image(path).pixels, f"{path.name}"
    try:
        colour = parse_colour(spec)
    except ValueError:  # checked at parse time; kept for callers of run() alone
        raise PersamError(None, f"--background {spec!r} is not a colour, 'blur', or an existing image file") from None
    return colour, "#%02x%02x%02x" % colour
