"""``persam-studio eval-perseg``: PerSAM / PerSAM-F accuracy on the PerSeg benchmark.

Layout (as the PerSeg release)::

    DATA_DIR/Images/<object>/00.jpg, 01.jpg, ...
    DATA_DIR/Annotations/<object>/00.png, 01.png, ...

For each object, image ``00`` and its annotation are the reference; every
other image is segmented and compared with its annotation. An image (or
annotation) that cannot be read is reported, counted as failed and left out
of the scores; it is never scored. An object none of whose images could be
scored (or whose reference failed) shows n/a and is left out of the means.
The exit status is 1 when anything failed.

Metrics (foreground only):

* IoU of an object = sum of intersections / sum of unions over its test
  images; mIoU = mean over objects.
* Boundary IoU (Cheng et al., "Boundary IoU", CVPR 2021): the same, computed
  on each mask's boundary band: the mask pixels within d of its contour, with
  d = 2 % of the image diagonal (rounded, at least 1 pixel), obtained by
  eroding the mask (3x3 kernel, d iterations, outside the image counts as
  background) and keeping mask minus erosion. bIoU = mean over objects.

Published (SAM ViT-H): PerSAM 89.3 mIoU / 71.7 bIoU, PerSAM-F 95.3 / 77.9.

``--instance-fractions F,F,...`` also measures the several-instances search
(``propagate --instances all``) at each fraction: every PerSeg test photo
holds one instance of its object, so each instance found beyond the first is
a false one. It prints, per fraction, the photos with a false instance and the
mean count. One search per photo at the lowest fraction gives them all: the
instances come strongest first, so a higher fraction keeps a prefix of them.
This is how :data:`~persam_studio.core.personalize.methods.DEFAULT_INSTANCE_FRACTION`
is to be tuned with trained weights (docs/persam.md).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

BOUNDARY_RATIO = 0.02


def boundary_band(mask: np.ndarray, ratio: float = BOUNDARY_RATIO) -> np.ndarray:
    """Pixels of ``mask`` (bool (H, W)) within d = ratio * diagonal of its contour."""
    import cv2

    h, w = mask.shape
    d = max(1, int(round(ratio * np.hypot(h, w))))
    padded = np.pad(mask.astype(np.uint8), 1)  # the image edge is a contour
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    return mask & (eroded == 0)


def iou_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int, int]:
    """(intersection, union) of the masks, then of their boundary bands."""
    bp, bg = boundary_band(pred), boundary_band(gt)
    return (int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt)),
            int(np.count_nonzero(bp & bg)), int(np.count_nonzero(bp | bg)))


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "eval-perseg",
        parents=[common],
        help="measure PerSAM / PerSAM-F mIoU and bIoU on the PerSeg benchmark",
        description="Evaluate on a PerSeg-layout folder (Images/<object>/NN.jpg, "
        "Annotations/<object>/NN.png; 00 is the reference). Prints per-object and mean IoU and "
        "boundary IoU (d = 2% of the image diagonal).",
    )
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--finetune", action="store_true", help="PerSAM-F instead of PerSAM")
    p.add_argument("--objects", metavar="A,B,...", help="only these objects (folder names)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N objects (alphabetical)")
    p.add_argument("--csv", metavar="PATH", help="also write per-object results as CSV")
    p.add_argument("--instance-fractions", metavar="F,F,...", type=_fractions,
                   help="also count the instances 'propagate --instances all' finds per photo at each fraction "
                        "(PerSeg photos hold one: more is a false find); e.g. 0.6,0.7,0.8,0.85,0.9")
    p.set_defaults(func=run, _parser=p)


def _fractions(text: str) -> list[float]:
    """``--instance-fractions``: comma-separated numbers in (0, 1], sorted (as ``propagate --instance-fraction``)."""
    from persam_studio.cli.common import number_in

    fraction = number_in(0, 1, low_open=True)
    values = sorted({fraction(v) for v in text.split(",") if v.strip()})
    if not values:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}")
    return values


def instance_counts(ratios: list[list[float]], fractions: list[float]) -> list[tuple[float, int, float]]:
    """Per fraction: (fraction, photos with more than one instance, mean instances per photo).

    Args:
        ratios: per photo, each instance's similarity peak over the first's,
            strongest first (the first is 1.0), as found at the lowest fraction.
    """
    out = []
    for f in fractions:
        counts = [1 + sum(1 for r in photo[1:] if r >= f) for photo in ratios]
        out.append((f, sum(1 for c in counts if c > 1), float(np.mean(counts)) if counts else 0.0))
    return out


def _objects(data: Path, parser: argparse.ArgumentParser, only: str | None, limit: int | None) -> list[str]:
    from persam_studio.core.errors import PersamError

    images, annotations = data / "Images", data / "Annotations"
    if not images.is_dir() or not annotations.is_dir():
        raise PersamError(data, "not a PerSeg folder (needs Images/ and Annotations/)")
    names = sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise PersamError(images, f"no object folder {', '.join(missing)}")
        names = wanted
    if limit is not None:
        if limit < 1:
            parser.error("--limit must be at least 1")
        names = names[:limit]
    if not names:
        raise PersamError(images, "no object folders")
    return names


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import ProgressBar, open_engine
    from persam_studio.core.io.atomic import atomic_write_text
    from persam_studio.core.errors import OutputError, PersamError
    from persam_studio.core.io.guard import check_outputs
    from persam_studio.core.io.imageio import list_images, load_image, load_mask
    from persam_studio.core.personalize.instances import find_instances
    from persam_studio.core.personalize.persam import fit_target, segment

    data = Path(args.data_dir)
    names = _objects(data, args._parser, args.objects, args.limit)
    plan = []
    for name in names:
        files = list_images([data / "Images" / name])
        ref = [f for f in files if f.stem == "00"]
        if not ref:
            raise PersamError(data / "Images" / name, "no reference image 00")
        tests = [f for f in files if f.stem != "00"]
        plan.append((name, ref[0], tests))
    if args.csv:
        # Not over an image or annotation of the benchmark, a device, a FIFO.
        read = [p for _, ref, tests in plan for p in (ref, *tests)]
        read += [f for name, _, _ in plan for f in (data / "Annotations" / name).glob("*")]
        check_outputs([Path(args.csv)], read)
    engine = open_engine(args)
    method = "PerSAM-F" if args.finetune else "PerSAM"
    bar = ProgressBar(sum(len(t) for _, _, t in plan), f"eval {method}")
    rows: list[tuple[str, int, int, float | None, float | None]] = []
    ratios: list[list[float]] = []  # --instance-fractions: per scored photo, see instance_counts
    done, failures = 0, []
    t_start = time.perf_counter()
    for name, ref_path, tests in plan:
        try:
            ref = load_image(ref_path)
            ref_mask = load_mask(_annotation(data, name, ref_path), size=ref.size)
            target = fit_target(engine, [(engine.encode(ref.pixels), ref_mask)], finetune=args.finetune, name=name)
        except PersamError as exc:  # no reference: every image of the object fails
            failures.append(str(exc))
            done += len(tests)
            bar.update(done)
            rows.append((name, len(tests), 0, None, None))
            continue
        totals = np.zeros(4, dtype=np.int64)
        scored = 0
        for path in tests:
            try:
                image = load_image(path)
                gt = load_mask(_annotation(data, name, path), size=image.size, allow_empty=True)
                embedding = engine.encode(image.pixels)
                if args.instance_fractions:
                    # The first instance is exactly segment()'s result: scored, not computed twice.
                    found = find_instances(engine, embedding, target, max_instances=None,
                                           fraction=args.instance_fractions[0]).instances
                    first = found[0].similarity_peak
                    ratios.append([1.0] + [r.similarity_peak / first for r in found[1:]] if first > 0 else [1.0])
                    pred = found[0].mask()
                else:
                    pred = segment(engine, embedding, target).mask()
                totals += iou_counts(pred, gt)
                scored += 1
            except PersamError as exc:  # counted as failed, never scored
                failures.append(str(exc))
            done += 1
            bar.update(done)
        iou = biou = None
        if scored:
            iou = float(totals[0] / totals[1]) if totals[1] else 1.0  # both masks empty: agreement
            biou = float(totals[2] / totals[3]) if totals[3] else 1.0
        rows.append((name, len(tests), scored, iou, biou))
    bar.close()
    ok = [r for r in rows if r[3] is not None]
    miou = float(np.mean([r[3] for r in ok])) if ok else None
    mbiou = float(np.mean([r[4] for r in ok])) if ok else None
    n_failed = sum(r[1] - r[2] for r in rows)
    width = max(len("object"), *(len(r[0]) for r in rows))
    print(f"{method} on {data} ({engine.model_key})")
    # "images" counts the scored images; failed ones are excluded and counted below.
    print(f"{'object':<{width}}  images   IoU    bIoU")
    for name, n, k, iou, biou in rows:
        print(f"{name:<{width}}  {k:6d}  {_pct(iou)}  {_pct(biou)}")
    print(f"{'mean':<{width}}  {sum(r[2] for r in rows):6d}  {_pct(miou)}  {_pct(mbiou)}"
          f"   ({time.perf_counter() - t_start:.1f}s)")
    if n_failed:
        print(f"failed: {n_failed} image(s), excluded from the scores (an object with none scored shows n/a)")
    if args.instance_fractions:
        print(f"instances per photo with 'propagate --instances all' ({len(ratios)} photos, one instance each)")
        print("fraction  photos with a false instance  mean instances")
        for f, false, mean in instance_counts(ratios, args.instance_fractions):
            print(f"{f:8.2f}  {false:28d}  {mean:14.2f}")
    if args.csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["object", "images", "failed", "iou", "biou"])
        w.writerows([(n, k, t - k, _num(i), _num(b)) for n, t, k, i, b in rows])
        w.writerow(["mean", sum(r[2] for r in rows), n_failed, _num(miou), _num(mbiou)])
        try:
            atomic_write_text(args.csv, buf.getvalue())
        except OSError as exc:
            raise OutputError(args.csv, f"cannot write ({exc.strerror or exc})") from None
    for message in failures:
        print(f"error: {message}", file=sys.stderr)
    return 1 if failures else 0


def _pct(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _annotation(data: Path, name: str, image: Path) -> Path:
    from persam_studio.core.errors import MaskError

    folder = data / "Annotations" / name
    for ext in (".png", ".PNG", ".jpg", ".bmp"):
        p = folder / (image.stem + ext)
        if p.exists():
            return p
    raise MaskError(folder / f"{image.stem}.png", "annotation not found")
