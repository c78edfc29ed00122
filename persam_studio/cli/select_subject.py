"""``persam-studio select``: the main subject of every photo, with no click.

    persam-studio select PHOTO|FOLDER... -o OUTDIR [--subject-model NAME|PATH]
        [--cutouts [--refine] [--background COLOUR|IMAGE|blur]] [--recursive]

Writes ``OUTDIR/<stem>.png`` (0/255, the photo's size as displayed) per photo
and, with ``--cutouts``, ``OUTDIR/<stem>_cutout.png``: RGBA with a transparent
background, or opaque on ``--background``. The cutout is always a PNG (as
``cutout -o x.png`` writes it), so its name never depends on the options and
a resumed run finds it. ``OUTDIR/report.csv``: file, coverage, confidence,
status, error. Stopped runs resume like ``propagate``; the loop is
:mod:`persam_studio.core.jobs`, the per-photo numbers
:mod:`persam_studio.core.segment.selection`. With ``--ray ADDRESS`` the
photos are done by the workers of a Ray cluster, each with its own session
of the model, from a :class:`SelectWork` (docs/cluster.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from persam_studio.core.jobs.report import REPORT_NAME as REPORT

if TYPE_CHECKING:
    from persam_studio.core.edges.cutout import Background
    from persam_studio.core.jobs import Item, Row, Work
    from persam_studio.core.models.subject import SubjectModel

COLUMNS = ["file", "coverage", "confidence", "status", "error"]


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persam_studio.cli.common import add_cluster_options, background_spec, number_in

    p = sub.add_parser(
        "select",
        help="mask the main subject of every photo, no click (subject model)",
        description="Find the main subject of each photo with a subject model (U²-Net / IS-Net, ONNX) and "
        "write its mask (0/255 PNG named after the photo) and optionally its cutout. report.csv lists "
        "coverage, confidence and status per photo. Re-running the same command resumes: existing masks "
        "are kept.",
    )
    p.add_argument("--subject-model", metavar="NAME|PATH",
                   help="an .onnx file or a downloaded catalogue name (u2net, u2netp, u2net_human_seg, silueta, "
                   "isnet-general-use); default: PERSAM_SUBJECT_MODEL, else the best one in the model folders")
    p.add_argument("--cutouts", action="store_true", help="also write OUTDIR/<stem>_cutout.png")
    p.add_argument("--refine", action="store_true",
                   help="with --cutouts: soft edges for hair and fur, guided by the model's soft map")
    p.add_argument("--background", type=background_spec, metavar="COLOR|IMAGE|blur",
                   help="with --cutouts: put the subject on #rrggbb, r,g,b, a colour name, an image file "
                   "(scaled to cover, centre-cropped) or 'blur' (the photo, blurred); the PNG is then opaque")
    p.add_argument("--recursive", action="store_true", help="include sub-folders of input folders")
    p.add_argument("--doubtful-below", type=number_in(0, 1), default=None, metavar="C",
                   help="edge confidence below which a mask is reported as doubtful (default 0.7)")
    p.add_argument("--device", metavar="DEV", default="cpu", help="cpu (default) or cuda when onnxruntime has it")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="subject-map cache folder (default: subject/ in PERSAM_CACHE_DIR or the user cache dir)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photos or folders of photos")
    add_cluster_options(p)
    p.set_defaults(func=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import batch_inputs, cluster_runner, run_batch
    from persam_studio.core.edges.cutout import parse_background
    from persam_studio.core.io.guard import check_outputs
    from persam_studio.core.jobs import Batch, Part, Report, plan
    from persam_studio.core.models.subject import SubjectModel, find_subject_model
    from persam_studio.core.models.subject_cache import SubjectMapCache, default_subject_cache_dir
    from persam_studio.core.segment.selection import DOUBTFUL_BELOW

    runner = cluster_runner(args)
    parser = args._parser
    if (args.refine or args.background is not None) and not args.cutouts:
        parser.error("--refine and --background need --cutouts")

    outdir = Path(args.output)
    inputs: list[Path] = []  # files every photo's work reads (the background): never overwritten
    background, words = (None, "") if args.background is None else parse_background(args.background, inputs)
    paths = batch_inputs(args.inputs, outdir, args.recursive, exclude=inputs)

    def parts(source: Path, name: str) -> list[Part]:
        # The mask last: Batch and the work treat it as "this photo is done".
        cut = (outdir / f"{name}_cutout.png",) if args.cutouts else ()
        return [Part((str(source),), (*cut, outdir / f"{name}.png"))]

    batch = Batch(Report(outdir / REPORT, COLUMNS), plan(paths, parts))
    batch.check()  # a wrong -o fails now, before the model loads
    model_path = find_subject_model(args.subject_model)
    inputs.append(model_path)
    # No output may land on a photo, the background or the model (linear in the album's size);
    # each write re-checks its own photo.
    check_outputs([*(p for item in batch.items for p in item.outputs), batch.report.path],
                  [*inputs, *paths], destinations=False)
    cache_dir = (Path(args.cache_dir) if args.cache_dir else default_subject_cache_dir()).resolve()
    # Opens the ONNX session and checks its shapes: a bad file stops here, before OUTDIR exists
    # (on a cluster too: the workers then open the same, shared file).
    model = SubjectModel(model_path, device=args.device, cache=SubjectMapCache(cache_dir))

    threshold = DOUBTFUL_BELOW if args.doubtful_below is None else args.doubtful_below
    spec = SelectWork(str(model.path.resolve()), args.device, str(cache_dir), args.refine, background, words,
                      threshold, tuple(inputs))
    return run_batch(batch, spec if runner is not None else spec.build(model), "select",
                     f", model {model.path.name}", runner=runner)


@dataclass(frozen=True)
class SelectWork:
    """The work spec of ``select``: the model file and the cutout options, picklable for cluster workers.

    Attributes:
        model_path: the ONNX file (absolute: every node opens the same one).
        device: onnxruntime device.
        cache_dir: the subject-map cache folder (absolute).
        refine, background, words: the cutout options (``background`` as parsed).
        threshold: edge confidence below which a mask is ``doubtful``.
        inputs: files every photo's work reads (the background file): never written over.
    """

    model_path: str
    device: str
    cache_dir: str
    refine: bool
    background: Background | None
    words: str
    threshold: float
    inputs: tuple[Path, ...]

    def build(self, model: SubjectModel | None = None) -> Work:
        """The per-photo work; ``model``: the one already open (a local run), else opened here."""
        if model is None:
            from persam_studio.core.models.subject import SubjectModel
            from persam_studio.core.models.subject_cache import SubjectMapCache

            model = SubjectModel(Path(self.model_path), device=self.device, cache=SubjectMapCache(self.cache_dir))
        return _work(model, self.refine, self.background, self.words, self.threshold, list(self.inputs))

    def shared_outputs(self) -> Iterable[Path]:
        """The subject-map cache's entries (a killed worker may leave a temporary beside one)."""
        from persam_studio.core.models.subject_cache import SUFFIX

        folder = Path(self.cache_dir)
        return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def _work(model: SubjectModel, refine: bool, background: Background | None, words: str, doubtful_below: float,
          inputs: list[Path]) -> Work:
    """The per-photo work: subject map (cached), cutout, then mask; one report row.

    A mask that exists is an earlier run's (killed before its row): it is
    never rewritten, only its row and a missing cutout are made again, from
    that mask (the map is a cache hit then).
    """
    import numpy as np

    from persam_studio.core.edges.cutout import write_cutout
    from persam_studio.core.io.export import save_mask_png
    from persam_studio.core.io.imageio import load_image, load_mask
    from persam_studio.core.segment.selection import select_subject

    def work(item: Item) -> list[Row]:
        (part,) = item.parts
        *cut, mask_path = part.outputs
        pixels = load_image(item.source).pixels
        selection = select_subject(model, pixels)
        kept = mask_path.is_file()
        if kept:
            mask = load_mask(mask_path, size=pixels.shape[:2], allow_empty=True)
            status = "skipped"
        else:
            mask = selection.mask
            status = "doubtful" if selection.is_doubtful(doubtful_below) else "ok"
        if cut and not (kept and cut[0].is_file()):
            # The soft map guides the matting only if it made this mask (a kept
            # mask may come from another model or have been edited).
            soft = selection.soft if not kept or np.array_equal(mask, selection.mask) else None
            write_cutout(cut[0], pixels, mask, refine=refine, soft=soft,
                         background=background, background_words=words, inputs=(*inputs, item.source))
        if not kept:
            save_mask_png(mask_path, mask, inputs=(*inputs, item.source))
        coverage = float(mask.mean())
        return [{"file": str(item.source), "coverage": f"{coverage:.4f}",
                 "confidence": f"{selection.confidence:.4f}", "status": status, "error": ""}]

    return work
