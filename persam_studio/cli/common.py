"""Helpers shared by the subcommands: opening the engine, progress output, the cluster options."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.jobs import Batch, Work
    from persam_studio.core.jobs.ray_runner import RayRunner, WorkSpec
    from persam_studio.core.segment.engine import Engine


class ProgressBar:
    """A one-line text progress bar on stderr, redrawn at most 10 times a second.

    Silent when stderr is not a terminal, except for the final line, so logs
    and CI output stay readable.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None) -> None:
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self._last = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._start = time.monotonic()

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self._tty and (now - self._last > 0.1 or done >= self.total):
            self._last = now
            self.stream.write("\r" + self._line(note))
            self.stream.flush()

    def close(self, note: str = "") -> None:
        if self._tty:
            self.stream.write("\r" + self._line(note) + "\n")
        else:
            self.stream.write(self._line(note) + "\n")
        self.stream.flush()

    def _line(self, note: str) -> str:
        width = 30
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        elapsed = time.monotonic() - self._start
        text = f"{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s"
        return f"{text} {note}".rstrip()


def checkpoint_path(args: argparse.Namespace) -> Path:
    """The checkpoint file the common options select (nothing is loaded).

    Commands pass it to :func:`persam_studio.core.io.guard.check_outputs` with
    their other inputs, so no output can overwrite the model.

    Raises:
        CheckpointError: no checkpoint found.
    """
    from persam_studio.core.models import require_checkpoint

    return require_checkpoint(getattr(args, "checkpoint", None), getattr(args, "model", None))


def open_engine(args: argparse.Namespace, checkpoint: Path | None = None) -> Engine:
    """Build the :class:`~persam_studio.core.segment.engine.Engine` the common options ask for.

    Args:
        checkpoint: from :func:`checkpoint_path` when the caller has it.

    Raises:
        CheckpointError: no checkpoint found, or the file is not a SAM model.
    """
    from persam_studio.core.segment.session import open_engine as _open

    path = checkpoint if checkpoint is not None else checkpoint_path(args)
    return _open(path, getattr(args, "model", None), getattr(args, "device", None), getattr(args, "cache_dir", None))


def batch_inputs(
    inputs: Sequence[str], outdir: Path, recursive: bool = False, exclude: Iterable[str | Path] = (),
    skip: Callable[[Path], bool] | None = None,
) -> list[Path]:
    """The photos a batch command (``propagate``, ``select``, ``export-dataset``) works on, in order.

    ``inputs`` are files or folders (listed by
    :func:`~persam_studio.core.io.imageio.list_images`). Not photos: the
    files in ``exclude`` (reference masks, a background picture), files
    for which ``skip(path)`` is true, and anything inside ``outdir``, where
    an earlier run's outputs would otherwise be taken for photos on the
    next run.

    Raises:
        PersamError: no photo is left (one line naming the inputs, or the
            output folder when every photo is inside it).
    """
    from persam_studio.core.errors import PersamError
    from persam_studio.core.io.imageio import list_images

    excluded = {Path(p).resolve() for p in exclude}
    out = outdir.resolve()
    found = [p for p in list_images(inputs, recursive=recursive)
             if p.resolve() not in excluded and not (skip is not None and skip(p))]
    paths = [p for p in found if not p.resolve().is_relative_to(out)]
    if len(found) == 1 and not paths:  # "-o album" on a photo of it: say why, not "no images"
        raise PersamError(found[0], f"is inside the output folder {outdir}; write the results to another "
                                    "folder (-o)")
    if found and not paths:
        raise PersamError(outdir, "every photo is inside this output folder; write the results to another "
                                  "folder (-o)")
    if not paths:
        raise PersamError(None, "no images to process in " + ", ".join(map(str, inputs)))
    return paths


def run_batch(batch: Batch, work: Work | WorkSpec, label: str, detail: str = "",
              runner: RayRunner | None = None) -> int:
    """Run a batch command's loop with a progress bar, then report like every batch command.

    Prints the counts by status on the bar's last line, one ``error:`` line
    per problem on stderr, and ``wrote OUTDIR (N images<detail>, K kept ...)``;
    on a cluster, a last line with photos per second and workers.

    Args:
        work: the per-item function; with ``runner``, the work spec each
            worker builds it from (docs/cluster.md).
        runner: from :func:`cluster_runner`, or None to run here.

    Returns:
        The exit code: 1 when any item failed, else 0.

    Raises:
        OutputError: the folder or report cannot be written (from :meth:`Batch.run`).
        PersamError: the cluster cannot be reached, or a worker cannot start.
    """
    bar = ProgressBar(len(batch.items), label)
    if runner is None:
        steps = batch.run(work)
    else:
        # The report is rewritten at most once a second: with many workers a
        # rewrite after every photo would make this process the bottleneck.
        steps = batch.drive(lambda pending: runner.run(work, pending), flush_every=1.0)
    with runner or contextlib.nullcontext():
        for step in steps:
            bar.update(step.done)
    counts = batch.counts()
    bar.close(", ".join(f"{counts[k]} {k}" for k in ("ok", "doubtful", "error", "skipped") if counts.get(k)))
    for message in batch.errors():
        print(f"error: {message}", file=sys.stderr)
    note = f", {batch.kept} kept from an earlier run" if batch.kept else ""
    print(f"wrote {batch.outdir} ({len(batch.items)} images{detail}{note}; report {batch.report.path})")
    if runner is not None:
        print(runner.stats.summary(), file=sys.stderr)
    return 1 if batch.errors() else 0


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--ray ADDRESS`` and ``--workers N`` of the batch commands (docs/cluster.md)."""
    g = parser.add_argument_group("cluster (needs the [cluster] extra; see docs/cluster.md)")
    g.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'local' starts one on this machine, else e.g. 'auto' or "
                   "HOST:6379; inputs, outputs, checkpoint and cache must be on folders every node mounts")
    g.add_argument("--workers", type=_positive, metavar="N",
                   help="with --ray: worker processes (default: one per GPU, else one per node)")


def number_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in [low, high] ((low, high] with ``low_open``).

    Anything else, ``nan`` and ``inf`` included, is a usage error (exit 2)
    naming the range: a threshold of ``nan`` compares false with every
    value and would silently turn a check off.
    """
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value <= high):
            where = f"{'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: use a number {'in ' if math.isfinite(high) else ''}{where}")
        return value

    return parse


def background_spec(spec: str) -> str:
    """``--background`` (an argparse ``type``): a colour, 'blur' or an existing file.

    Anything else is a usage error (exit 2); a file that exists but does not
    load is an input error (exit 1) later.
    """
    from persam_studio.core.edges.composite import BLUR, parse_colour

    if spec.strip().lower() == BLUR or Path(spec).exists():
        return spec
    try:
        parse_colour(spec)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{spec!r} is not a colour (#rrggbb, #rgb, r,g,b, white...), 'blur', or an existing image file"
        ) from None
    return spec


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def cluster_runner(args: argparse.Namespace) -> RayRunner | None:
    """The Ray runner ``--ray`` asks for (not connected yet), or None without it.

    Called first by a batch command, so that a missing extra is reported
    before anything is loaded: one ``error:`` line naming the extra, exit 2
    (a usage problem: the command cannot take that option here).
    """
    if getattr(args, "ray", None) is None:
        if getattr(args, "workers", None) is not None:
            print("error: --workers needs --ray ADDRESS", file=sys.stderr)
            raise SystemExit(2)
        return None
    from persam_studio.core.jobs.ray_runner import MissingExtra, RayRunner, import_ray

    try:
        import_ray()
    except MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return RayRunner(args.ray, args.workers, gpus=getattr(args, "device", None) != "cpu")
