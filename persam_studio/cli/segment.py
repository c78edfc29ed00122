"""``persam-studio segment``: one image, point/box prompts, mask and cutout out."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _point(text: str) -> tuple[float, float, int]:
    parts = text.split(",")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y or X,Y,L, got {text!r}") from None
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"label must be 1 (object) or 0 (background), got {label}")
    return x, y, label


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1, got {text!r}") from None
    return x0, y0, x1, y1  # checked against the image by prompts.box_problem


class _Once(argparse.Action):
    """Store an option's value, refusing a second one (SAM takes one box per mask)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} given twice; SAM takes one box per mask (run segment once per box)")
        setattr(namespace, self.dest, values)


def _pick(text: str) -> str:
    if text not in ("best", "0", "1", "2"):
        raise argparse.ArgumentTypeError("expected best, 0, 1 or 2")
    return text


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "segment",
        parents=[common],
        help="segment one image from points and/or a box",
        description="Segment one image. Coordinates are pixels of the image as displayed "
        "(EXIF rotation applied), x = column, y = row.",
    )
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--point", type=_point, action="append", default=[], metavar="X,Y[,L]",
                   help="a point; L = 1 object (default) or 0 background; repeatable")
    p.add_argument("--box", type=_box, action=_Once, metavar="X0,Y0,X1,Y1",
                   help="a box around the object (one; it may reach outside the image)")
    p.add_argument("--pick", type=_pick, default="best", metavar="best|0|1|2",
                   help="which of the three candidate masks (default: best predicted IoU)")
    p.add_argument("-o", "--output", required=True, metavar="MASK.png", help="mask PNG (0 / 255); .png only")
    p.add_argument("--cutout", metavar="CUTOUT.png",
                   help="also write the image with the mask as alpha (.png, .webp or .tif)")
    p.add_argument("--refine", action="store_true", help="refine the cutout's edges (soft alpha for hair and fur)")
    p.set_defaults(func=run, _parser=p)


MASK_SUFFIXES = (".png",)
CUTOUT_SUFFIXES = (".png", ".webp", ".tif", ".tiff")  # formats with transparency


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import checkpoint_path, open_engine
    from persam_studio.core.edges.cutout import write_cutout
    from persam_studio.core.io.atomic import staged_writes
    from persam_studio.core.io.export import save_mask_png
    from persam_studio.core.io.guard import check_outputs
    from persam_studio.core.io.imageio import load_image
    from persam_studio.core.segment.prompts import MAX_POINTS, prompt_problem
    from persam_studio.core.types import Box, Point, Prompt

    if not args.point and args.box is None:
        args._parser.error("give at least one --point or a --box")
    if len(args.point) > MAX_POINTS:
        args._parser.error(f"{len(args.point)} points given; at most {MAX_POINTS} per prompt")
    # The file name says the format: refuse what we would not write as named.
    _check_suffix(Path(args.output), MASK_SUFFIXES, "the mask")
    if args.cutout:
        _check_suffix(Path(args.cutout), CUTOUT_SUFFIXES, "a transparent cutout")
    image = load_image(args.image)  # before the model: a bad file fails fast
    h, w = image.size
    problem = prompt_problem([p[:2] for p in args.point], args.box, (h, w))
    if problem:
        args._parser.error(problem)
    ckpt = checkpoint_path(args)
    outputs = [Path(args.output)] + ([Path(args.cutout)] if args.cutout else [])
    inputs = [Path(args.image), ckpt]
    check_outputs(outputs, inputs)  # every output, before any work or write
    engine = open_engine(args, ckpt)
    t0 = time.perf_counter()
    runs_before = engine.encode_count
    embedding = engine.encode(image.pixels)
    source = "encoded" if engine.encode_count > runs_before else "from cache"
    t_embed = time.perf_counter() - t0

    prompt = Prompt(points=tuple(Point(float(x), float(y), int(label)) for x, y, label in args.point),
                    box=None if args.box is None else Box(*map(float, args.box)))
    result = engine.predict(embedding, prompt, multimask_output=True)
    index = result.best_index if args.pick == "best" else int(args.pick)
    logits = result.logits(index)  # full size, once: this is the export
    mask = logits > 0.0

    # All or nothing: a cutout that cannot be written leaves no mask either.
    with staged_writes():
        save_mask_png(args.output, mask, inputs=inputs)
        if args.cutout:
            write_cutout(args.cutout, image.pixels, mask, logits, refine=args.refine, inputs=inputs)
    print(
        f"wrote {args.output} ({w}x{h}, {100.0 * mask.mean():.1f}% object, mask {index}, "
        f"predicted IoU {result.iou_predictions[index]:.3f}; embedding {source} in {t_embed:.2f}s, "
        f"decoder {1000 * result.seconds:.0f} ms)"
        + (f"; cutout {args.cutout}" if args.cutout else ""),
        file=sys.stdout,
    )
    return 0


def _check_suffix(path: Path, allowed: tuple[str, ...], what: str) -> None:
    from persam_studio.core.errors import OutputError

    if path.suffix.lower() not in allowed:
        raise OutputError(
            path, f"unsupported format '{path.suffix}' for {what} (use {', '.join(allowed)})"
        )

