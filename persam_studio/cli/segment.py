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
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"box needs X0 < X1 and Y0 < Y1, got {text!r}")
    return x0, y0, x1, y1


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
    p.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1", help="a box around the object")
    p.add_argument("--pick", type=_pick, default="best", metavar="best|0|1|2",
                   help="which of the three candidate masks (default: best predicted IoU)")
    p.add_argument("-o", "--output", required=True, metavar="MASK.png", help="mask PNG (0 / 255)")
    p.add_argument("--cutout", metavar="CUTOUT.png", help="also write the image with the mask as alpha")
    p.add_argument("--refine", action="store_true", help="refine the cutout's edges (soft alpha for hair and fur)")
    p.set_defaults(func=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import open_engine
    from persam_studio.core.edges.cutout import write_cutout
    from persam_studio.core.io.export import save_mask_png
    from persam_studio.core.io.imageio import load_image

    if not args.point and args.box is None:
        args._parser.error("give at least one --point or a --box")
    image = load_image(args.image)  # before the model: a bad file fails fast
    h, w = image.size
    for x, y, _ in args.point:
        if not (0 <= x < w and 0 <= y < h):
            args._parser.error(f"point {x:g},{y:g} is outside the {w}x{h} image")
    engine = open_engine(args)
    t0 = time.perf_counter()
    runs_before = engine.encode_count
    embedding = engine.encode(image.pixels)
    source = "encoded" if engine.encode_count > runs_before else "from cache"
    t_embed = time.perf_counter() - t0

    coords = np.array([p[:2] for p in args.point], dtype=np.float64) if args.point else None
    labels = np.array([p[2] for p in args.point], dtype=np.int64) if args.point else None
    box = np.array(args.box, dtype=np.float64) if args.box is not None else None
    result = engine.predict(embedding, coords, labels, box, multimask_output=True)
    index = result.best_index if args.pick == "best" else int(args.pick)
    logits = result.logits(index)  # full size, once: this is the export
    mask = logits > 0.0

    inputs = [Path(args.image)]
    save_mask_png(args.output, mask, inputs=inputs)
    if args.cutout:
        write_cutout(args.cutout, image.pixels, mask, logits, refine=args.refine, inputs=inputs)
    print(
        f"wrote {args.output} ({w}x{h}, {100.0 * mask.mean():.1f}% object, mask {index}, "
        f"predicted IoU {result.iou_predictions[index]:.3f}; embedding {source} in {t_embed:.2f}s, "
        f"decoder {1000 * result.seconds:.0f} ms)",
        file=sys.stdout,
    )
    return 0
