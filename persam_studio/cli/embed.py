"""``persam-studio embed``: fill the embedding cache for files or folders."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "embed",
        parents=[common],
        help="encode images ahead of time (fills the embedding cache)",
        description="Encode images into the embedding cache, skipping those already cached, "
        "so that clicks and propagation on them are instant later.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from persam_studio.cli.common import ProgressBar, open_engine
    from persam_studio.core.io.imageio import list_images, load_image
    from persam_studio.core.jobs import Item, plan, run_each
    from persam_studio.core.types import image_key

    paths = list_images(args.inputs, recursive=args.recursive)
    engine = open_engine(args)

    def work(item: Item) -> list[dict[str, str]]:
        image = load_image(item.source)
        key = image_key(image.pixels)
        if engine.is_cached(key):
            return [{"status": "cached"}]
        engine.encode(image.pixels, key)
        return [{"status": "encoded"}]

    bar = ProgressBar(len(paths), "embed")
    encoded = cached = 0
    failures: list[str] = []
    # One bad image (unreadable, a shape the encoder refuses, out of memory)
    # is an error line at the end; the others are still encoded.
    for outcome in run_each(plan(paths), work):
        if outcome.error is not None:
            failures.append(outcome.error)
        elif outcome.rows[0]["status"] == "cached":
            cached += 1
        else:
            encoded += 1
        bar.update(outcome.item.index + 1, note=outcome.item.source.name)
    bar.close(f"{encoded} encoded, {cached} already cached, {len(failures)} failed")
    for message in failures:
        print(f"error: {message}", file=sys.stderr)
    return 1 if failures else 0
