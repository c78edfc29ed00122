"""Bench section "app": click to overlay in the real window, against the decoder in the same run.

The window is driven by :mod:`persam_studio.gui.app_bench` in a child
process (``QT_QPA_PLATFORM=offscreen``): the bench package never imports the
GUI (import-linter), and Qt gets a process of its own. 50 real mouse clicks
on a 12 MP photo whose embedding is cached, random vit_b; each click is
timed from just before the mouse event to the end of the repaint that shows
the new overlay. The engine's own decoder seconds (``MaskResult.seconds``)
of the same clicks are the baseline.

Targets (issue 12): the app adds at most 20 ms to the decoder (p50), and
more points cost no more than the decoder's own growth (the growth from 1
point to the last clicks of a 50-point prompt, ours minus the decoder's,
within 5 ms: the noise of a shared CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from persam_studio.bench import BenchContext, Row

SECTION = "app"
ADDED_MS = 20.0
GROWTH_SLACK_MS = 5.0


def measure(ctx: BenchContext, clicks: int = 50) -> dict:
    """The child's JSON (seconds); raises RuntimeError with its stderr's tail on failure."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cmd = [sys.executable, "-m", "persam_studio.gui.app_bench", "--clicks", str(clicks),
           "--cache", str(ctx.scratch / "app-cache")]
    if ctx.photo is not None:
        cmd += ["--photo", str(ctx.photo)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"app bench failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows_of(data: dict) -> list[Row]:
    """Table rows from the child's numbers (ms)."""
    rows: list[Row] = []
    size = "x".join(str(v) for v in reversed(data["display_size"]))
    for mode, words in (("reset", "1 point"), ("accumulate", f"1..{data['clicks']} points")):
        run = data[mode]
        for q in ("p50", "p95"):
            ours, dec = run["ours"][q] * 1000, run["decoder"][q] * 1000
            rows.append(Row(SECTION, f"click to overlay {q}, {words} (12 MP, {size} display mask)", ours, "ms",
                            baseline=f"engine decoder {q}", baseline_value=dec))
        added = run["added"]["p50"] * 1000
        rows.append(Row(SECTION, f"app adds to the decoder, p50 of per-click differences, {words}", added, "ms",
                        target=f"<= {ADDED_MS:g}", note=f"p95 {run['added']['p95'] * 1000:.1f} ms"))
    many = data["many_points"]
    one = data["reset"]
    ours_growth = (many["ours_p50"] - one["ours"]["p50"]) * 1000
    dec_growth = (many["decoder_p50"] - one["decoder"]["p50"]) * 1000
    lo, hi = many["points"]
    rows.append(Row(SECTION, f"growth from 1 to {lo}..{hi} points, ours minus the decoder's", ours_growth - dec_growth,
                    "ms", target=f"<= {GROWTH_SLACK_MS:g}",
                    note=f"ours +{ours_growth:.1f} ms, decoder +{dec_growth:.1f} ms"))
    return rows


def run(ctx: BenchContext) -> list[Row]:
    data = measure(ctx)
    ctx.log(f"[bench] app: {json.dumps(data)}")
    return rows_of(data)
