"""``persam-studio propagate``: one reference mask in, a mask for every album image out.

    persam-studio propagate --ref REF.jpg --ref-mask REF.png [--ref ... --ref-mask ...]
        [--target NAME]... [--training-free | --exact-fit] [--instances N|all]
        [--cutouts [--refine]] [--recursive] -o OUTDIR INPUT...

Several ``--ref``/``--ref-mask`` pairs make a few-shot target. ``--target NAME``
starts a new named target: the pairs that follow it are its references.
One target writes ``OUTDIR/<stem>.png``; several write ``OUTDIR/<name>/<stem>.png``.
PerSAM-F (two mask weights fitted on the references, fast) is the default;
``--training-free`` uses PerSAM. ``--instances`` finds several instances per
photo; the mask is their union. ``OUTDIR/report.csv`` (file, target, instance,
instances, peak_x, peak_y, confidence, iou, similarity_peak, status, error;
one row per instance) is rewritten atomically after every image. A run that is stopped can be
started again with the same command: masks already in OUTDIR are kept (their
report rows too) and only the missing ones are computed. The loop itself
(names, report, resume, per-image errors) is :mod:`persam_studio.core.jobs`.

With ``--ray ADDRESS`` the targets are fitted here, once, and shipped in a
:class:`PropagateWork` to the workers of a Ray cluster, which write the masks
into OUTDIR (a folder every node mounts); this process keeps the report.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from persam_studio.core.jobs.report import REPORT_NAME as REPORT

if TYPE_CHECKING:
    from persam_studio.core.jobs import Item, Row, Work
    from persam_studio.core.personalize.instances import InstancesResult
    from persam_studio.core.personalize.persam import Target
    from persam_studio.core.personalize.targets import ReferenceGroup
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.segment.session import EngineOptions

COLUMNS = ["file", "target", "instance", "instances", "peak_x", "peak_y", "confidence", "iou",
           "similarity_peak", "status", "error"]


class _Ordered(argparse.Action):
    """Collect --target/--ref/--ref-mask in command-line order (they group)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "ref_items", None) or [])
        items.append((self.dest, values))
        namespace.ref_items = items


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persam_studio.cli.common import add_cluster_options, number_in

    p = sub.add_parser(
        "propagate",
        parents=[common],
        help="find a reference object in every image of an album (PerSAM)",
        description="Segment the object of one (or a few) reference masks in every input image "
        "with PerSAM-F (default: two mask weights fitted on the references in seconds) or PerSAM "
        "(--training-free). Masks are 0/255 PNGs named after "
        "the inputs; report.csv lists confidence and status per image. Re-running the same "
        "command resumes: existing masks are kept.",
    )
    p.add_argument("--ref", dest="ref", action=_Ordered, metavar="IMAGE", help="reference image (repeatable)")
    p.add_argument("--ref-mask", dest="ref_mask", action=_Ordered, metavar="MASK",
                   help="the object's mask in the preceding --ref (same size as the image)")
    p.add_argument("--target", dest="target", action=_Ordered, metavar="NAME",
                   help="name a target; the --ref/--ref-mask pairs after it are its references "
                   "(several targets write OUTDIR/NAME/)")
    method = p.add_mutually_exclusive_group()
    method.add_argument("--training-free", action="store_true",
                        help="PerSAM without fitting (weaker: 64.0 vs 87.2 PerSeg mIoU on SAM-B)")
    method.add_argument("--exact-fit", action="store_true",
                        help="fit PerSAM-F's weights at the reference's full size (minutes for 12 MP)")
    method.add_argument("--finetune", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--instances", type=_instances, default=1, metavar="N|all",
                   help="find up to N instances per photo (or all); the mask is their union (default 1)")
    p.add_argument("--instance-fraction", type=number_in(0, 1, low_open=True), default=None, metavar="F",
                   help="keep a further instance while its similarity peak is at least F times "
                   "the first one's (default 0.85)")
    p.add_argument("--cutouts", action="store_true", help="also write OUTDIR/<stem>_cutout.png (transparent PNG)")
    p.add_argument("--refine", action="store_true", help="with --cutouts: refine the cutout edges (soft alpha)")
    p.add_argument("--recursive", action="store_true", help="include sub-folders of input folders")
    p.add_argument("--doubtful-below", type=number_in(0, 1), default=None, metavar="C",
                   help="confidence below which a result is reported as doubtful (default 0.6)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images or folders of images")
    add_cluster_options(p)
    p.set_defaults(func=run, _parser=p, ref_items=[])


def _instances(text: str) -> int | None:
    """``--instances``: a count >= 1, or ``all`` (None)."""
    from persam_studio.core.personalize.methods import MAX_INSTANCES

    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"use a number from 1 to {MAX_INSTANCES}, or 'all'")
    return n


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


def _rows(file: str, target: str, found: InstancesResult | str, threshold: float,
          status: str | None = None, error: str = "") -> list[Row]:
    """The report rows of one image and target: one per instance found (one, empty, on error)."""
    from persam_studio.core.personalize.propagate import is_doubtful

    base = {"file": file, "target": target, "status": status or "error", "error": error}
    if isinstance(found, str):  # the image or this target failed: one row says why
        return [base]
    rows = []
    for i, r in enumerate(found.instances, 1):
        row = {**base, "instance": str(i), "instances": str(found.count),
               "peak_x": f"{r.point_coords[0][0]:.0f}", "peak_y": f"{r.point_coords[0][1]:.0f}",
               "confidence": f"{r.confidence:.4f}", "iou": f"{r.iou:.4f}",
               "similarity_peak": f"{r.similarity_peak:.4f}"}
        if status is None:
            row["status"] = "doubtful" if is_doubtful(r, threshold) else "ok"
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import (
        ProgressBar, batch_inputs, checkpoint_path, cluster_runner, open_engine, run_batch,
    )
    from persam_studio.core.io.guard import check_outputs
    from persam_studio.core.io.imageio import load_image, load_mask
    from persam_studio.core.jobs import Batch, Part, Report, plan
    from persam_studio.core.personalize.methods import DEFAULT_INSTANCE_FRACTION
    from persam_studio.core.personalize.targets import ReferenceGroup, fit_targets
    from persam_studio.core.segment.session import EngineOptions
    from persam_studio.core.types import REVIEW_THRESHOLD

    runner = cluster_runner(args)
    parser = args._parser
    groups = _targets(parser, args.ref_items)
    if args.refine and not args.cutouts:
        parser.error("--refine needs --cutouts")
    threshold = REVIEW_THRESHOLD if args.doubtful_below is None else args.doubtful_below

    # Every reference is checked before the model loads or anything is written.
    refs = []
    for group in groups:
        pairs = []
        for image_path, mask_path in group.references:
            image = load_image(image_path)
            pairs.append((image.pixels, load_mask(mask_path, size=image.size)))
        refs.append(ReferenceGroup(group.name, tuple(pairs)))
    outdir = Path(args.output)
    paths = batch_inputs(args.inputs, outdir, args.recursive, exclude=[m for g in groups for _, m in g.references])

    layout = Layout(outdir, several=len(groups) > 1, cutouts=args.cutouts)

    def parts(source: Path, name: str) -> list[Part]:
        return [Part((str(source), g.name), tuple(p for p in layout.paths(name, g.name) if p)) for g in groups]

    batch = Batch(Report(outdir / REPORT, COLUMNS, key=("file", "target")), plan(paths, parts))
    batch.check()  # a wrong -o fails now, not after the model loaded
    checkpoint = checkpoint_path(args)
    references = [p for g in groups for pair in g.references for p in pair]
    # No output may land on a reference, a photo or the model (linear in the album's size).
    check_outputs([*(p for item in batch.items for p in item.outputs), batch.report.path],
                  [*references, *paths, checkpoint], destinations=False)

    engine = open_engine(args, checkpoint)
    batch.start()  # an unwritable folder or report fails here, before the fit
    bars: dict[str, ProgressBar] = {}

    def fitting(name: str, done: int, total: int) -> None:
        bar = bars.setdefault(name, ProgressBar(total, f"fitting {name}"))
        bar.update(done, total)

    targets = fit_targets(engine, refs, finetune=not args.training_free, exact=args.exact_fit, progress=fitting)
    for bar in bars.values():
        bar.close()

    options = EngineOptions(str(engine.checkpoint), engine.model_type, args.device, args.cache_dir)
    if runner is not None:
        options = options.resolved()  # the same checkpoint and cache folder on every node
    fraction = DEFAULT_INSTANCE_FRACTION if args.instance_fraction is None else args.instance_fraction
    # Checked for the whole album above; each write re-checks its own photo and the references.
    spec = PropagateWork(options, tuple(targets), layout, threshold, args.refine, tuple(references),
                         args.instances, fraction)
    # On a cluster the workers load the model and write the files; the rows come back here.
    return run_batch(batch, spec if runner is not None else spec.build(engine), "propagate", runner=runner)


@dataclass(frozen=True)
class Layout:
    """Where one image's outputs go: ``OUTDIR[/<target>]/<stem>.png`` and ``<stem>_cutout.png``."""

    outdir: Path
    several: bool  # several targets: one folder each
    cutouts: bool

    def paths(self, name: str, target: str) -> tuple[Path, Path | None]:
        """(mask, cutout or None) of one image and target."""
        folder = self.outdir / target if self.several else self.outdir
        return folder / f"{name}.png", (folder / f"{name}_cutout.png" if self.cutouts else None)


@dataclass(frozen=True)
class PropagateWork:
    """The work spec of ``propagate``: fitted targets and output layout, picklable for cluster workers.

    Attributes:
        engine: how a worker opens its engine (the driver's checkpoint).
        targets: the targets fitted on the driver, once.
        layout: the output paths.
        threshold: confidence below which a result is ``doubtful``.
        refine: refine cutout edges.
        inputs: the files every item reads (the references): never written over.
        instances: instances per photo (None: all).
        instance_fraction: see ``--instance-fraction``.
    """

    engine: EngineOptions
    targets: tuple[Target, ...]
    layout: Layout
    threshold: float
    refine: bool
    inputs: tuple[Path, ...]
    instances: int | None
    instance_fraction: float

    def shared_outputs(self) -> Iterable[Path]:
        """The embedding cache's entries (a killed worker may leave a temporary beside one)."""
        return self.engine.cache_entries()

    def build(self, engine: Engine | None = None) -> Work:
        """The per-image work: segment every target, write cutout then mask, rows per instance.

        ``engine``: the driver's engine in a local run; a worker opens its own.
        A mask that exists is an earlier run's: it is never rewritten (resume),
        only its row and a missing cutout are made again.
        """
        return _work(engine or self.engine.open(), self)


def _work(engine: Engine, spec: PropagateWork) -> Work:
    from persam_studio.core.edges.cutout import write_cutout
    from persam_studio.core.errors import PersamError
    from persam_studio.core.io.export import save_mask_png
    from persam_studio.core.io.imageio import load_mask
    from persam_studio.core.jobs import item_error
    from persam_studio.core.personalize.propagate import segment_image

    targets, threshold, refine, inputs = list(spec.targets), spec.threshold, spec.refine, list(spec.inputs)
    instances, instance_fraction, out = spec.instances, spec.instance_fraction, spec.layout.paths

    def work(item: Item) -> list[Row]:
        found = segment_image(engine, targets, item.source, instances=instances,
                              instance_fraction=instance_fraction)
        f = str(item.source)
        rows: list[Row] = []
        for t in targets:
            result = found.instances[t.name]
            mask_path, cut_path = out(item.name, t.name)
            try:
                if isinstance(result, str):
                    raise PersamError(None, result)
                kept = mask_path.is_file()
                if kept:  # from an earlier run: never rewritten, only its row (or cutout) is missing
                    mask, logits = load_mask(mask_path, size=found.pixels.shape[:2], allow_empty=True), None
                    part = _rows(f, t.name, result, threshold, "skipped")
                else:
                    logits = result.logits()  # the union of the instances: max over their logits
                    mask = logits > 0
                    part = _rows(f, t.name, result, threshold)
                if cut_path is not None and not (kept and cut_path.is_file()):
                    write_cutout(cut_path, found.pixels, mask, logits, refine=refine, inputs=(*inputs, item.source))
                if not kept:
                    # The mask last: its presence means this image is done.
                    save_mask_png(mask_path, mask, inputs=(*inputs, item.source))
            except Exception as exc:  # noqa: BLE001 - sorted by item_error, bugs re-raised
                message = item_error(exc, item.source)
                if message is None:
                    raise
                part = _rows(f, t.name, result, threshold, "error", message)
            rows.extend(part)
        return rows

    return work

