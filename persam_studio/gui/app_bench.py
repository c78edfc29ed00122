"""Click to overlay, measured in the real window: the child process of ``bench --only app``.

    QT_QPA_PLATFORM=offscreen python -m persam_studio.gui.app_bench [--photo P] [--clicks 50]

Builds the :class:`~persam_studio.gui.main_window.MainWindow` over a random
vit_b :class:`~persam_studio.core.segment.engine.Engine` with an embedding
cache, opens a 12 MP photo (a shared photo scaled to 4000x3000, else a
synthetic one), waits for the embedding, then sends real mouse clicks
(``QTest.mouseClick``) to the canvas's viewport, each from an idle app (the
previous answer painted and saved). A click's time runs from just before the
mouse event to the end of the canvas's first paint after the new mask was set
(``Canvas.drawForeground``, the last thing its paint draws), painted when the
event loop gets to it, after every handler of the answer (saving, the
thumbnail's tint): the time a user waits for the overlay. (Until 2026-12-03 the
bench forced a second, synchronous repaint after that one and timed its end,
counting one paint too many.)

Two runs: *reset* (the prompt is cleared before each click, so every answer
is for 1 point) and *accumulate* (clicks add up to ``--clicks`` points). The
engine's own decoder time (``MaskResult.seconds``) is recorded per click in
the same run, so "what the app adds" is ours minus the decoder's.

Prints one JSON object on the last line of stdout. Lives in ``gui`` (it
drives the window); ``persam_studio.bench.app_bench`` runs it as a child
process, so the bench package never imports the GUI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCREEN = (1920, 1080)  # the offscreen screen: display masks are capped at its long side


def _configure_screen(tmp: Path) -> None:
    cfg = tmp / "screen.json"
    cfg.write_text(json.dumps({"screens": [{"name": "bench", "x": 0, "y": 0, "width": SCREEN[0],
                                            "height": SCREEN[1], "logicalDpi": 96, "logicalBaseDpi": 96,
                                            "dpr": 1}]}))
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={cfg}"


def _photo(tmp: Path, photo: Path | None) -> Path:
    """A 4000x3000 PNG in ``tmp``: ``photo`` (or the shared truck) scaled, else synthetic."""
    import cv2

    from persam_studio.core.io.imageio import load_image

    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "photos" / "truck.jpg"
    source = next((p for p in (photo, shared) if p is not None and Path(p).exists()), None)
    if source is not None:
        pixels = load_image(source).pixels
    else:
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 255, (750, 1000, 3), np.uint8)
    big = cv2.resize(pixels, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    out = tmp / "photo12mp.png"
    cv2.imwrite(str(out), big[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return out


class _TimedEngine:
    """The Engine, recording each decoder call's own seconds (``MaskResult.seconds``)."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.decoder: list[float] = []

    def predict(self, *args, **kwargs):
        result = self._engine.predict(*args, **kwargs)
        self.decoder.append(float(result.seconds))
        return result

    def __getattr__(self, name):
        return getattr(self._engine, name)


def _spin(app, cond, limit: float = 600.0) -> None:
    """Run the event loop until ``cond()`` holds, as the app's own loop runs: asleep between events.

    (A loop of ``processEvents`` and short sleeps, as this bench first had,
    keeps a core busy: on 2 cores it took CPU from the model thread and
    inflated both the decoder's and the app's times, which a user's idle
    event loop does not do.) A coarse timer checks ``cond``; the times
    measured are taken inside the handlers, not when the loop notices.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    if cond():
        return
    end = time.monotonic() + limit
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(10)

    def check() -> None:
        if cond() or time.monotonic() > end:
            loop.quit()

    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()
    if not cond():
        raise TimeoutError("the window did not get there in time")


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, float), q)) if values else float("nan")


def measure(photo: Path | None = None, clicks: int = 50, cache: Path | None = None) -> dict:
    """Run both click series in a fresh window and return the numbers (seconds)."""
    tmp = Path(tempfile.mkdtemp(prefix="persam-app-bench-"))
    if os.environ.get("QT_QPA_PLATFORM", "offscreen").startswith("offscreen"):
        _configure_screen(tmp)
    from PySide6.QtWidgets import QApplication

    from persam_studio.gui.canvas import Canvas

    app = QApplication.instance() or QApplication([])
    paint_watch: list = []
    draw_foreground = Canvas.drawForeground

    def watched(canvas_, painter, rect) -> None:
        draw_foreground(canvas_, painter, rect)  # the last thing a canvas paint draws
        for watcher in paint_watch:
            watcher()

    Canvas.drawForeground = watched
    try:
        return _clicks(app, tmp, photo, clicks, cache, paint_watch)
    finally:
        Canvas.drawForeground = draw_foreground
        shutil.rmtree(tmp, ignore_errors=True)  # its photo, album and settings: ~10 MB a run


def _clicks(app, tmp: Path, photo: Path | None, clicks: int, cache: Path | None, paint_watch: list) -> dict:
    """:func:`measure`'s body, with the canvas's paints reported to ``paint_watch``."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    from persam_studio.core.models.sam_build import random_sam
    from persam_studio.core.segment.cache import EmbeddingCache
    from persam_studio.core.segment.engine import Engine
    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.main_window import MainWindow
    from persam_studio.gui.settings import AppSettings

    path = _photo(tmp, photo)
    engine = _TimedEngine(Engine(random_sam("vit_b", seed=0), "vit_b-random0",
                                 EmbeddingCache(cache or tmp / "cache")))
    window = MainWindow(AppSettings(tmp / "settings.ini"),
                        engine_factory=lambda choice: (engine, EngineInfo("vit_b", "cpu", "random weights")))
    window.resize(1600, 1000)
    window.show()
    _spin(app, lambda: window.images.engine is not None)
    t_open = time.perf_counter()
    window.open_paths([path])
    images, canvas = window.images, window.canvas
    _spin(app, lambda: images.session is not None and images.session.embedding is not None and not images.busy)
    encode_s = time.perf_counter() - t_open

    painted: list[float] = []
    queued = [0]  # answers shown on the canvas, not painted yet

    def on_mask_changed() -> None:
        queued[0] += 1

    def frame_drawn() -> None:
        # The canvas's own paint, as the event loop schedules it, once every
        # handler of the answer has run: the first one after the new mask is
        # set shows it.
        if queued[0]:
            painted.append(time.perf_counter())
            queued[0] = 0

    images.mask_changed.connect(on_mask_changed)
    paint_watch.append(frame_drawn)
    h, w = images.session.original_size
    rng = np.random.default_rng(1)
    # Every prompt new: the session remembers answers to prompts it has seen (undo, redo).
    spots = [(float(rng.uniform(0.1, 0.9) * w), float(rng.uniform(0.1, 0.9) * h)) for _ in range(2 * clicks + 3)]

    def click(x: float, y: float) -> tuple[float, float]:
        # From an idle app, as a user's next click: nothing left of the previous
        # one, its save included (started DELAY_MS after the answer).
        _spin(app, lambda: queued[0] == 0 and not images.busy and not window.albums.saver.pending, 60)
        n_painted, n_decoded = len(painted), len(engine.decoder)
        pos = canvas.view_point(x, y)
        t0 = time.perf_counter()
        QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(pos))
        try:
            _spin(app, lambda: len(painted) > n_painted and len(engine.decoder) > n_decoded and not images.busy, 60)
        except TimeoutError:
            raise TimeoutError(f"no overlay after a click: {len(painted) - n_painted} repaints, "
                               f"{len(engine.decoder) - n_decoded} decoder calls") from None
        return painted[n_painted] - t0, engine.decoder[n_decoded]

    for x, y in spots[-3:]:  # warm-up: first decoder calls, first pixmaps
        click(x, y)
    runs: dict[str, dict[str, list[float]]] = {}
    for run_index, mode in enumerate(("reset", "accumulate")):
        ours, decoder, points = [], [], []
        images.clear()
        _spin(app, lambda: not images.busy)
        for x, y in spots[run_index * clicks:(run_index + 1) * clicks]:
            if mode == "reset":
                images.clear()
                _spin(app, lambda: not images.busy)
            total, dec = click(x, y)
            ours.append(total)
            decoder.append(dec)
            points.append(len(images.state.points))
        runs[mode] = {"ours": ours, "decoder": decoder, "points": points}

    def summary(values: list[float]) -> dict:
        return {"p50": _pct(values, 50), "p95": _pct(values, 95)}

    out = {
        "photo": [h, w], "display_size": list(images.session.display_size), "clicks": clicks,
        "encode_or_cache_s": encode_s, "screen": list(SCREEN),
    }
    for mode, run in runs.items():
        added = [a - b for a, b in zip(run["ours"], run["decoder"])]
        out[mode] = {"ours": summary(run["ours"]), "decoder": summary(run["decoder"]), "added": summary(added),
                     "points": [min(run["points"]), max(run["points"])]}
    acc = runs["accumulate"]
    k = max(1, clicks // 5)  # the last fifth of the accumulating run: the most points
    out["many_points"] = {"points": [acc["points"][-k], acc["points"][-1]],
                          "ours_p50": _pct(acc["ours"][-k:], 50), "decoder_p50": _pct(acc["decoder"][-k:], 50)}
    images.mask_changed.disconnect(on_mask_changed)
    window.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m persam_studio.gui.app_bench", description=__doc__.split("\n")[0])
    p.add_argument("--photo", type=Path, default=None)
    p.add_argument("--clicks", type=int, default=50)
    p.add_argument("--cache", type=Path, default=None, help="embedding cache folder (default: a new temporary one)")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.photo, args.clicks, args.cache)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
