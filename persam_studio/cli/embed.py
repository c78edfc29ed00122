"""``persam-studio embed``: fill the embedding cache for files or folders.

With ``--ray ADDRESS`` the photos are encoded by workers of a Ray cluster,
each with its own model, into the same (shared) cache folder.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from pathlib import Path

    from persam_studio.core.jobs import Item, Row, Work
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.segment.session import EngineOptions


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persam_studio.cli.common import add_cluster_options

    p = sub.add_parser(
        "embed",
        parents=[common],
        help="encode images ahead of time (fills the embedding cache)",
        description="Encode images into the embedding cache, skipping those already cached, "
        "so that clicks and propagation on them are instant later.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders")
    add_cluster_options(p)
    p.set_defaults(func=run)


@dataclass(frozen=True)
class EmbedWork:
    """The work spec of ``embed``: what a cluster worker needs to encode photos (picklable)."""

    engine: EngineOptions

    def build(self, engine: Engine | None = None) -> Work:
        """The per-photo work: encode unless cached, one row (``status`` cached or encoded).

        ``engine``: an engine already open (a local run); a worker opens its own.
        """
        from persam_studio.core.io.imageio import load_image
        from persam_studio.core.types import image_key

        engine = engine or self.engine.open()

        def work(item: Item) -> list[Row]:
            image = load_image(item.source)
            key = image_key(image.pixels)
            if engine.is_cached(key):
                return [{"status": "cached"}]
            engine.encode(image.pixels, key)
            return [{"status": "encoded"}]

        return work

    def shared_outputs(self) -> Iterable[Path]:
        """The cache's entries: a killed worker may leave a temporary beside one."""
        return self.engine.cache_entries()


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import ProgressBar, cluster_runner, open_engine
    from persam_studio.core.io.imageio import list_images
    from persam_studio.core.jobs import plan, run_each
    from persam_studio.core.segment.session import EngineOptions

    runner = cluster_runner(args)
    paths = list_images(args.inputs, recursive=args.recursive)
    options = EngineOptions(args.checkpoint, args.model, args.device, args.cache_dir)
    bar = ProgressBar(len(paths), "embed")
    encoded = cached = 0
    failures: list[str] = []
    if runner is None:
        outcomes = run_each(plan(paths), EmbedWork(options).build(open_engine(args)))
    else:
        # Workers open the model; the driver only checks that there is one.
        outcomes = runner.run(EmbedWork(options.resolved()), plan(paths))
    # One bad image (unreadable, a shape the encoder refuses, out of memory)
    # is an error line at the end; the others are still encoded.
    with runner or contextlib.nullcontext():
        for done, outcome in enumerate(outcomes, 1):
            if outcome.error is not None:
                failures.append(outcome.error)
            elif outcome.rows[0]["status"] == "cached":
                cached += 1
            else:
                encoded += 1
            bar.update(done, note=outcome.item.source.name)
    bar.close(f"{encoded} encoded, {cached} already cached, {len(failures)} failed")
    for message in failures:
        print(f"error: {message}", file=sys.stderr)
    if runner is not None:
        print(runner.stats.summary(), file=sys.stderr)
    return 1 if failures else 0
