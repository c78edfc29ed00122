"""``persam-studio propagate``: one reference mask in, a mask for every album image out.

    persam-studio propagate --ref REF.jpg --ref-mask REF.png [--ref ... --ref-mask ...]
        [--target NAME]... [--finetune] [--cutouts [--refine]] [--recursive] -o OUTDIR INPUT...

Several ``--ref``/``--ref-mask`` pairs make a few-shot target. ``--target NAME``
starts a new named target: the pairs that follow it are its references.
One target writes ``OUTDIR/<stem>.png``; several write ``OUTDIR/<name>/<stem>.png``.
``OUTDIR/report.csv`` (file, target, confidence, iou, similarity_peak, status,
error) is rewritten atomically after every image. A run that is stopped can be
started again with the same command: masks already in OUTDIR are kept (their
report rows too) and only the missing ones are computed. The loop itself
(names, report, resume, per-image errors) is :mod:`persam_studio.core.jobs`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from persam_studio.core.jobs.report import REPORT_NAME as REPORT

if TYPE_CHECKING:
    from persam_studio.core.jobs import Item, Row
    from persam_studio.core.personalize.persam import Target
    from persam_studio.core.personalize.targets import ReferenceGroup
    from persam_studio.core.segment.engine import Engine

COLUMNS = ["file", "target", "confidence", "iou", "similarity_peak", "status", "error"]


class _Ordered(argparse.Action):
    """Collect --target/--ref/--ref-mask in command-line order (they group)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "ref_items", None) or [])
        items.append((self.dest, values))
        namespace.ref_items = items


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "propagate",
        parents=[common],
        help="find a reference object in every image of an album (PerSAM)",
        description="Segment the object of one (or a few) reference masks in every input image "
        "with PerSAM (training-free) or PerSAM-F (--finetune). Masks are 0/255 PNGs named after "
        "the inputs; report.csv lists confidence and status per image. Re-running the same "
        "command resumes: existing masks are kept.",
    )
    p.add_argument("--ref", dest="ref", action=_Ordered, metavar="IMAGE", help="reference image (repeatable)")
    p.add_argument("--ref-mask", dest="ref_mask", action=_Ordered, metavar="MASK",
                   help="the object's mask in the preceding --ref (same size as the image)")
    p.add_argument("--target", dest="target", action=_Ordered, metavar="NAME",
                   help="name a target; the --ref/--ref-mask pairs after it are its references "
                   "(several targets write OUTDIR/NAME/)")
    p.add_argument("--finetune", action="store_true", help="PerSAM-F: fit 2 mask weights on the references first")
    p.add_argument("--cutouts", action="store_true", help="also write OUTDIR/<stem>_cutout.png (transparent PNG)")
    p.add_argument("--refine", action="store_true", help="with --cutouts: refine the cutout edges (soft alpha)")
    p.add_argument("--recursive", action="store_true", help="include sub-folders of input folders")
    p.add_argument("--doubtful-below", type=float, default=None, metavar="C",
                   help="confidence below which a result is reported as doubtful (default 0.6)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images or folders of images")
    p.set_defaults(func=run, _parser=p, ref_items=[])


def _targets(parser: argparse.ArgumentParser, items: list[tuple[str, str]]) -> list[ReferenceGroup[str, str]]:
    """The targets' reference groups from the ordered --target/--ref/--ref-mask options.

    Pairing the options is this parser's job; naming and grouping the
    references is :func:`persam_studio.core.personalize.targets.group_references`.
    """
    from persam_studio.core.errors import TargetError
    from persam_studio.core.personalize.targets import DEFAULT_TARGET, group_references

    if any(kind == "target" for kind, _ in items) and items[0][0] != "target":
        parser.error("put --target NAME before its --ref/--ref-mask pairs")
    names = [value for kind, value in items if kind == "target"] or [DEFAULT_TARGET]
    if len(set(names)) != len(names):
        parser.error("--target: give each NAME once (its --ref/--ref-mask pairs follow it)")
    name, pending, triples = names[0], None, []
    for kind, value in items:
        if pending is not None and kind != "ref_mask":
            parser.error(f"--ref {pending} has no --ref-mask")
        if kind == "target":
            name = value
        elif kind == "ref":
            pending = value
        elif pending is None:
            parser.error(f"--ref-mask {value} must follow its --ref IMAGE")
        else:
            triples.append((name, pending, value))
            pending = None
    if pending is not None:
        parser.error(f"--ref {pending} has no --ref-mask")
    if {n for n, _, _ in triples} != set(names):
        parser.error("give --ref IMAGE --ref-mask MASK (after each --target NAME)")
    try:
        return group_references(triples, reserved=[REPORT])
    except TargetError as exc:
        parser.error(f"--target: {exc}")


def _row(file: str, target: str, result=None, status: str = "", error: str = "") -> Row:
    row = {"file": file, "target": target, "confidence": "", "iou": "", "similarity_peak": "",
           "status": status, "error": error}
    if result is not None:
        row.update(confidence=f"{result.confidence:.4f}", iou=f"{result.iou:.4f}",
                   similarity_peak=f"{result.similarity_peak:.4f}")
    return row


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import ProgressBar, batch_inputs, open_engine, run_batch
    from persam_studio.core.io.imageio import load_image, load_mask
    from persam_studio.core.jobs import Batch, Part, Report, plan
    from persam_studio.core.personalize.persam import fit_target
    from persam_studio.core.personalize.propagate import DOUBTFUL_BELOW

    parser = args._parser
    groups = _targets(parser, args.ref_items)
    if args.refine and not args.cutouts:
        parser.error("--refine needs --cutouts")
    threshold = DOUBTFUL_BELOW if args.doubtful_below is None else args.doubtful_below

    # Every reference is checked before the model loads or anything is written.
    refs = [(g.name, [(load_image(i), Path(m)) for i, m in g.references]) for g in groups]
    refs = [(name, [(img, load_mask(m, size=img.size)) for img, m in pairs]) for name, pairs in refs]
    outdir = Path(args.output)
    paths = batch_inputs(args.inputs, outdir, args.recursive, exclude=[m for g in groups for _, m in g.references])

    several = len(groups) > 1

    def out(name: str, target: str) -> tuple[Path, Path | None]:
        """(mask, cutout or None) of one image and target."""
        folder = outdir / target if several else outdir
        return folder / f"{name}.png", (folder / f"{name}_cutout.png" if args.cutouts else None)

    def parts(source: Path, name: str) -> list[Part]:
        return [Part((str(source), g.name), tuple(p for p in out(name, g.name) if p)) for g in groups]

    batch = Batch(Report(outdir / REPORT, COLUMNS, key=("file", "target")), plan(paths, parts))
    batch.check()  # a wrong -o fails now, not after the model loaded

    engine = open_engine(args)
    targets = []
    for name, pairs in refs:
        references = [(engine.encode(img.pixels), mask) for img, mask in pairs]
        bar = ProgressBar(1000, f"fitting {name}") if args.finetune else None
        targets.append(fit_target(engine, references, finetune=args.finetune, name=name,
                                  progress=(lambda d, t, b=bar: b.update(d, t)) if bar else None))
        if bar:
            bar.close()

    work = _work(engine, targets, out, threshold, args.refine, paths)
    return run_batch(batch, work, "propagate")


def _work(engine: Engine, targets: list[Target], out: Callable[[str, str], tuple[Path, Path | None]],
          threshold: float, refine: bool, inputs: list[Path]) -> Callable[[Item], list[Row]]:
    """The per-image work of the batch: segment every target, write cutout then mask, one row each.

    ``out(name, target)`` gives the (mask, cutout or None) paths. A mask that
    exists is an earlier run's: it is never rewritten (resume), only its row
    and a missing cutout are made again.
    """
    from persam_studio.core.errors import PersamError
    from persam_studio.core.io.export import save_mask_png
    from persam_studio.core.io.imageio import load_mask
    from persam_studio.core.jobs import item_error
    from persam_studio.core.personalize.propagate import is_doubtful, segment_image

    def work(item: Item) -> list[Row]:
        found = segment_image(engine, targets, item.source)
        f = str(item.source)
        rows = []
        for t in targets:
            result = found.results[t.name]
            mask_path, cut_path = out(item.name, t.name)
            try:
                if isinstance(result, str):
                    raise PersamError(None, result)
                kept = mask_path.is_file()
                if kept:  # from an earlier run: never rewritten, only its row (or cutout) is missing
                    mask, logits = load_mask(mask_path, size=found.pixels.shape[:2], allow_empty=True), None
                    row = _row(f, t.name, result, "skipped")
                else:
                    logits = result.logits()
                    mask = logits > 0
                    row = _row(f, t.name, result, "doubtful" if is_doubtful(result, threshold) else "ok")
                if cut_path is not None and not (kept and cut_path.is_file()):
                    _write_cutout(cut_path, found.pixels, mask, logits, refine, inputs)
                if not kept:
                    # The mask last: its presence means this image is done.
                    save_mask_png(mask_path, mask, inputs=inputs)
            except Exception as exc:  # noqa: BLE001 - sorted by item_error, bugs re-raised
                message = item_error(exc, item.source)
                if message is None:
                    raise
                row = _row(f, t.name, None if isinstance(result, str) else result, "error", message)
            rows.append(row)
        return rows

    return work


def _write_cutout(path: Path, pixels, mask, logits, refine: bool, inputs: list[Path]) -> None:
    from persam_studio.core.io.export import save_cutout_png

    if refine:
        from persam_studio.core.edges.matting import refine_alpha

        alpha, colours = refine_alpha(pixels, mask, logits)
        save_cutout_png(path, colours, alpha, inputs=inputs)
    else:
        save_cutout_png(path, pixels, mask, inputs=inputs)
