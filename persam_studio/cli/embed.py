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
    from persam_studio.core.types import image_key
    from persam_studio.core.errors import PersamError
    from persam_studio.core.io.imageio import list_images, load_image

    paths = list_images(args.inputs, recursive=args.recursive)
    engine = open_engine(args)
    bar = ProgressBar(len(paths), "embed")
    encoded = cached = 0
    failures: list[str] = []
    for i, path in enumerate(paths):
        try:
            image = load_image(path)
            key = image_key(image.pixels)
            if engine.is_cached(key):
                cached += 1
            else:
                engine.encode(image.pixels, key)
                encoded += 1
        except PersamError as exc:
            failures.append(str(exc))
        bar.update(i + 1, note=path.name)
    bar.close(f"{encoded} encoded, {cached} already cached, {len(failures)} failed")
    for message in failures:
        print(f"error: {message}", file=sys.stderr)
    return 1 if failures else 0
