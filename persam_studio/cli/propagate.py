"""``persam-studio propagate``: one reference mask in, a mask for every album image out.

    persam-studio propagate --ref REF.jpg --ref-mask REF.png [--ref ... --ref-mask ...]
        [--target NAME]... [--finetune] [--cutouts [--refine]] [--recursive] -o OUTDIR INPUT...

Several ``--ref``/``--ref-mask`` pairs make a few-shot target. ``--target NAME``
starts a new named target: the pairs that follow it are its references.
One target writes ``OUTDIR/<stem>.png``; several write ``OUTDIR/<name>/<stem>.png``.
``OUTDIR/report.csv`` (file, target, confidence, iou, similarity_peak, status,
error) is rewritten atomically after every image. A run that is stopped can be
started again with the same command: masks already in OUTDIR are kept (their
report rows too) and only the missing ones are computed.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from pathlib import Path

REPORT = "report.csv"
COLUMNS = ["file", "target", "confidence", "iou", "similarity_peak", "status", "error"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$")


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


def _targets(parser: argparse.ArgumentParser, items: list[tuple[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(name, [(image, mask)]) per target from the ordered options."""
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    if not any(kind == "target" for kind, _ in items):
        groups.append(("target", []))
    elif items[0][0] != "target":
        parser.error("put --target NAME before its --ref/--ref-mask pairs")
    pending: str | None = None
    for kind, value in items:
        if kind == "target":
            if pending is not None:
                parser.error(f"--ref {pending} has no --ref-mask")
            if not _NAME.match(value) or value in {n for n, _ in groups} or value.casefold() == REPORT:
                parser.error(f"--target {value!r}: use a unique name of letters, digits, space, _ . -")
            groups.append((value, []))
        elif kind == "ref":
            if pending is not None:
                parser.error(f"--ref {pending} has no --ref-mask")
            pending = value
        else:
            if pending is None:
                parser.error(f"--ref-mask {value} must follow its --ref IMAGE")
            groups[-1][1].append((pending, value))
            pending = None
    if pending is not None:
        parser.error(f"--ref {pending} has no --ref-mask")
    if not groups or any(not refs for _, refs in groups):
        parser.error("give --ref IMAGE --ref-mask MASK (after each --target NAME)")
    return groups


def _read_report(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {(r["file"], r["target"]): {c: r.get(c) or "" for c in COLUMNS} for r in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return {}  # no report, or one we cannot read: start a fresh one


def _write_report(path: Path, rows: list[dict[str, str]]) -> None:
    from persam_studio.core.io.atomic import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _row(file: str, target: str, result=None, status: str = "", error: str = "") -> dict[str, str]:
    row = {"file": file, "target": target, "confidence": "", "iou": "", "similarity_peak": "",
           "status": status, "error": error}
    if result is not None:
        row.update(confidence=f"{result.confidence:.4f}", iou=f"{result.iou:.4f}",
                   similarity_peak=f"{result.similarity_peak:.4f}")
    return row


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import ProgressBar, open_engine
    from persam_studio.core.errors import PersamError
    from persam_studio.core.io.imageio import list_images, load_image, load_mask
    from persam_studio.core.personalize.persam import fit_target
    from persam_studio.core.personalize.propagate import DOUBTFUL_BELOW, is_doubtful, propagate
    from persam_studio.core.io.naming import output_stems

    parser = args._parser
    specs = _targets(parser, args.ref_items)
    if args.refine and not args.cutouts:
        parser.error("--refine needs --cutouts")
    threshold = DOUBTFUL_BELOW if args.doubtful_below is None else args.doubtful_below

    # Every reference is checked before the model loads or anything is written.
    refs = [(name, [(load_image(i), Path(m)) for i, m in pairs]) for name, pairs in specs]
    refs = [(name, [(img, load_mask(m, size=img.size)) for img, m in pairs]) for name, pairs in refs]
    outdir = Path(args.output)
    excluded = {Path(m).resolve() for _, pairs in specs for _, m in pairs}
    out_resolved = outdir.resolve()
    paths = [p for p in list_images(args.inputs, recursive=args.recursive)
             if p.resolve() not in excluded and not _inside(p, out_resolved)]
    if not paths:
        raise PersamError(None, "no images to process in " + ", ".join(args.inputs))

    engine = open_engine(args)
    targets = []
    for name, pairs in refs:
        references = [(engine.encode(img.pixels), mask) for img, mask in pairs]
        bar = ProgressBar(1000, f"fitting {name}") if args.finetune else None
        targets.append(fit_target(engine, references, finetune=args.finetune, name=name,
                                  progress=(lambda d, t, b=bar: b.update(d, t)) if bar else None))
        if bar:
            bar.close()

    several = len(targets) > 1
    names = output_stems(paths)

    def out(name: str, target: str, suffix: str = "") -> Path:
        return (outdir / target if several else outdir) / f"{name}{suffix}.png"

    outdir.mkdir(parents=True, exist_ok=True)
    report_path = outdir / REPORT
    previous = _read_report(report_path)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    files = [str(p) for p in paths]

    def flush() -> None:
        ordered = [rows.get((f, t.name)) or previous.get((f, t.name)) for f in files for t in targets]
        keys = {(f, t.name) for f in files for t in targets}
        others = [r for k, r in previous.items() if k not in keys]
        _write_report(report_path, [r for r in ordered if r] + others)

    def done(i: int, target: str) -> bool:
        return out(names[i], target).exists() and (not args.cutouts or out(names[i], target, "_cutout").exists())

    def kept(f: str, target: str) -> dict[str, str]:
        # A mask from an earlier run: its numbers stay, the status says this run skipped it.
        return {**(previous.get((f, target)) or _row(f, target)), "status": "skipped", "error": ""}

    todo = []
    for i, f in enumerate(files):
        if all(done(i, t.name) for t in targets):
            for t in targets:
                rows[(f, t.name)] = kept(f, t.name)
        else:
            todo.append(i)
    skipped = len(paths) - len(todo)
    bar = ProgressBar(len(paths), "propagate")
    bar.update(skipped)
    failures: dict[str, None] = {}  # ordered, one line per problem
    flush()
    for item in propagate(engine, targets, [paths[i] for i in todo]):
        i = todo[item.index]
        f = files[i]
        for t in targets:
            result = item.results[t.name]
            mask_path, cut_path = out(names[i], t.name), out(names[i], t.name, "_cutout")
            try:
                if isinstance(result, str):
                    raise PersamError(None, result)
                if mask_path.exists():  # kept from an earlier run; only its cutout is missing
                    mask, logits = load_mask(mask_path, size=item.pixels.shape[:2], allow_empty=True), None
                    row = kept(f, t.name)
                else:
                    logits = result.logits()
                    mask = logits > 0
                    row = _row(f, t.name, result, "doubtful" if is_doubtful(result, threshold) else "ok")
                if args.cutouts:
                    _write_cutout(cut_path, item.pixels, mask, logits, args.refine, paths)
                if not mask_path.exists():
                    # The mask last: its presence means this image is done.
                    from persam_studio.core.io.export import save_mask_png

                    save_mask_png(mask_path, mask, inputs=paths)
            except PersamError as exc:
                failures[str(exc)] = None
                row = _row(f, t.name, None if isinstance(result, str) else result, "error", str(exc))
            rows[(f, t.name)] = row
        flush()
        bar.update(skipped + item.index + 1)
    counts = {s: sum(1 for r in rows.values() if r["status"] == s) for s in ("ok", "doubtful", "error", "skipped")}
    bar.close(", ".join(f"{v} {k}" for k, v in counts.items() if v))
    for message in failures:
        print(f"error: {message}", file=sys.stderr)
    note = f", {skipped} kept from an earlier run" if skipped else ""
    print(f"wrote {outdir} ({len(paths)} images{note}; report {report_path})")
    return 1 if failures else 0


def _write_cutout(path: Path, pixels, mask, logits, refine: bool, inputs: list[Path]) -> None:
    from persam_studio.core.io.export import save_cutout_png

    if refine:
        from persam_studio.core.edges.matting import refine_alpha

        alpha, colours = refine_alpha(pixels, mask, logits)
        save_cutout_png(path, colours, alpha, inputs=inputs)
    else:
        save_cutout_png(path, pixels, mask, inputs=inputs)
