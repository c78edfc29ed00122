"""Bench section "cluster": the numbers behind docs/cluster.md's throughput estimate.

* Per-task overhead of a local Ray cluster: the same trivial work (one
  report row, no model) over :data:`TASKS` items through
  :class:`~persam_studio.core.jobs.ray_runner.RayRunner` with one worker,
  against :func:`~persam_studio.core.jobs.run_each` in this process. The
  difference per item is what Ray adds to every photo (scheduling, pickling
  the item and its outcome, the driver's loop); one worker makes it visible,
  as nothing else runs in parallel to hide it.
* Worker start-up: starting the actors and building their work (the trivial
  work here; a model load comes on top, see the next rows).
* Per-photo cost per model, cold (nothing cached): load the photo, encode it,
  PerSAM on one target, upsample the mask and write it as a PNG; random
  ``vit_t`` and ``vit_b`` weights (the compute is that of trained ones).
* The driver's own cost per item: rewriting a 10,000-row ``report.csv``
  (done at most once a second on a cluster run) and recording one outcome.

Ray missing (the ``cluster`` extra): the Ray rows are skipped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from persam_studio.bench import BenchContext, Row

TASKS = 200
REPORT_ROWS = 10_000


@dataclass(frozen=True)
class TrivialWork:
    """A work spec whose work costs nothing: what remains is the runner's overhead."""

    def build(self):
        return lambda item: [{"status": "ok"}]

    def shared_outputs(self) -> Iterable[Path]:
        return []


def run(ctx: BenchContext) -> list[Row]:
    rows = _ray_overhead(ctx)
    rows += [_photo_cost(ctx, model) for model in ("vit_t", "vit_b")]
    rows += _driver_cost(ctx)
    return rows


def _ray_overhead(ctx: BenchContext) -> list[Row]:
    from persam_studio.core.jobs import plan, run_each
    from persam_studio.core.jobs.ray_runner import MissingExtra, RayRunner

    items = plan([ctx.scratch / f"task_{i}.jpg" for i in range(TASKS)])
    t0 = time.perf_counter()
    for _ in run_each(items, TrivialWork().build()):
        pass
    local = (time.perf_counter() - t0) / TASKS
    try:
        runner = RayRunner("local", workers=1, init_options={"num_cpus": os.cpu_count() or 1})
        t0 = time.perf_counter()
        runner.connect()
        connect = time.perf_counter() - t0
    except MissingExtra:
        ctx.log("[bench] cluster: Ray is not installed (the cluster extra); Ray rows skipped")
        return []
    try:
        for _ in runner.run(TrivialWork(), items):
            pass
        stats = runner.stats
    finally:
        runner.close()
    per_task = stats.seconds / TASKS
    return [
        Row("cluster", "start a local Ray instance (ray.init)", connect, "s"),
        Row("cluster", "start 1 worker (actor, trivial work; a model load adds to it)", stats.startup, "s"),
        Row("cluster", f"per-task cost, local Ray, 1 worker ({TASKS} trivial items)", per_task * 1000, "ms",
            baseline="same work in-process (run_each)", baseline_value=local * 1000,
            note=f"overhead {(per_task - local) * 1000:.2f} ms per item"),
    ]


def _photo_cost(ctx: BenchContext, model_type: str) -> Row:
    """One photo, cold, through the per-item step of ``propagate`` (no cache)."""
    from persam_studio.core.io.export import save_image, save_mask_png
    from persam_studio.core.models.sam_build import random_sam
    from persam_studio.core.personalize.persam import fit_target
    from persam_studio.core.personalize.propagate import segment_image
    from persam_studio.core.segment.engine import Engine

    pixels = ctx.photo_pixels
    photo = ctx.scratch / "cluster-photo.jpg"
    save_image(photo, pixels)
    h, w = pixels.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    mask = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(h, w) / 4) ** 2
    sam = random_sam(model_type, seed=0)
    engine = Engine(sam, f"{model_type}-random0")
    target = fit_target(engine, [(engine.encode(pixels), mask)], name="target")
    times = []
    for _ in range(2):  # the first decoder calls of a process are slower: a worker's steady state is the second
        engine = Engine(sam, f"{model_type}-random0")  # a fresh, empty cache: the photo is encoded again
        t0 = time.perf_counter()
        found = segment_image(engine, [target], photo)
        save_mask_png(ctx.scratch / "cluster-mask.png", found.results["target"].logits() > 0)
        times.append(time.perf_counter() - t0)
    return Row("cluster", f"per-photo cost, {model_type}, not cached ({w}x{h}: load, encode, PerSAM, mask PNG)",
               times[1], "s", note=f"a warm worker; its first photo took {times[0]:.3g} s")


def _driver_cost(ctx: BenchContext) -> list[Row]:
    from persam_studio.core.jobs import Batch, Outcome, Part, Report, plan

    folder = ctx.scratch / "cluster-report"
    sources = [folder / f"photo_{i:05d}.jpg" for i in range(REPORT_ROWS)]
    report = Report(folder / "report.csv", ["file", "status", "error"])
    batch = Batch(report, plan(sources, lambda s, n: [Part((str(s),))]))
    pending = batch.start()
    t0 = time.perf_counter()
    for item in pending[:1000]:
        batch.record(Outcome(item, ({"file": str(item.source), "status": "ok"},), None, 0.0), flush=False)
    record = (time.perf_counter() - t0) / 1000
    t0 = time.perf_counter()
    batch.flush()
    flush = time.perf_counter() - t0
    return [
        Row("cluster", "driver: record one outcome (no rewrite)", record * 1e6, "us"),
        Row("cluster", f"driver: rewrite report.csv of {REPORT_ROWS} rows", flush * 1000, "ms",
            note="at most once a second on a cluster run"),
    ]
