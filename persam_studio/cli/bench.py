"""``persam-studio bench``: measure this machine, print a table with ratios."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from persam_studio.bench import SECTIONS

    p = sub.add_parser(
        "bench",
        parents=[common],
        help="measure speed on this machine (random vit_b weights unless --checkpoint)",
        description="Measure encoder time, click latency, cache hits, propagation and refinement "
        "on this machine. Every ratio is against a baseline measured in the same run, on the same "
        "weights and image. Without --checkpoint a random-weight vit_b is built from "
        "segment_anything (compute cost does not depend on the weights).",
    )
    p.add_argument("--only", action="append", choices=list(SECTIONS), metavar="SECTION",
                   help=f"run only these sections ({', '.join(SECTIONS)}); repeatable")
    p.add_argument("--repeats", type=int, default=40, help="clicks timed for the latency percentiles")
    p.add_argument("--photo", metavar="IMAGE", help="photo to use (default: a shared sample or a synthetic one)")
    p.add_argument("--write", metavar="FILE.md", help="record the table and machine description in FILE.md")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from persam_studio.bench import BenchContext, format_table, run_bench, write_markdown
    from persam_studio.core.io.imageio import load_image  # noqa: F401  (fail early if broken)

    with BenchContext(
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        model_type=args.model,
        repeats=max(3, args.repeats),
        photo=Path(args.photo) if args.photo else None,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    ) as ctx:
        rows = run_bench(ctx, args.only)
    print(format_table(rows))
    if args.write:
        command = "persam-studio " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a)
        write_markdown(rows, Path(args.write), command)
        print(f"wrote {args.write}", file=sys.stderr)
    failed = [r for r in rows if r.passed is False]
    for r in failed:
        print(f"below target: {r.section} / {r.name} ({r.target})", file=sys.stderr)
    return 0
