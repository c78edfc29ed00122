"""Render the screenshots of docs/gui.md from the real window (offscreen).

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m tests.gui.screenshots docs/screenshots

Uses a random-weight SAM (there are no weights here), so model-made masks
are arbitrary shapes; the reference shot loads PerSeg's hand-made cat mask
so the overlay shows a real subject. The album is a temporary copy of
../shared/data/perseg-examples (the sidecar is written beside the copy,
never into the shared folder).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

SIZE = (1280, 800)


def _configure_screen(tmp: Path) -> None:
    """A 1600x1000 offscreen screen so the window gets its full size."""
    if os.environ.get("QT_QPA_PLATFORM", "offscreen").startswith("offscreen"):
        cfg = tmp / "screen.json"
        cfg.write_text(json.dumps({"screens": [{"name": "shot", "x": 0, "y": 0, "width": 1600, "height": 1000,
                                                "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
        os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={cfg}"


class _GatedEngine:
    """An Engine whose encodes pause at ``gate`` once ``hold_after`` have run."""

    def __init__(self, engine, hold_after: int | None = None) -> None:
        self._engine, self.hold_after, self.count = engine, hold_after, 0
        self.gate, self.waiting = threading.Event(), threading.Event()

    def encode(self, image, key=None):
        self.count += 1
        if self.hold_after is not None and self.count > self.hold_after:
            self.waiting.set()
            self.gate.wait(60)
        return self._engine.encode(image, key)

    def __getattr__(self, name):
        return getattr(self._engine, name)


def _spin(app, cond, limit: float = 120.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("screenshot state not reached")
        app.processEvents()
        time.sleep(0.005)


def _idle(app, window) -> None:
    _spin(app, lambda: window.images.session is not None and window.images.session.embedding is not None
          and not window.images.busy)


def _shot(app, window, path: Path) -> None:
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    _save_small(window.grab(), path)


def _save_small(pixmap, path: Path, width: int = 1024) -> None:
    """1024 px wide, 256 colours: small files, legible text, true badge colours."""
    from PIL import Image

    from persam_studio.gui.convert import qimage_to_rgb

    im = Image.fromarray(qimage_to_rgb(pixmap.toImage()))
    im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
    im.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)
    print("wrote", path, f"{path.stat().st_size // 1024} KB")


def _shot_with_dialog(app, window, dialog, path: Path) -> None:
    """The window with its (separate, offscreen) dialog painted where it would float."""
    from PySide6.QtGui import QColor, QPainter

    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    shot = window.grab()
    box = dialog.grab()
    painter = QPainter(shot)
    x, y = (shot.width() - box.width()) // 2, (shot.height() - box.height()) // 3
    painter.fillRect(x - 1, y - 1, box.width() + 2, box.height() + 2, QColor(90, 90, 90))
    painter.drawPixmap(x, y, box)
    painter.end()
    _save_small(shot, path)


def perseg_album(tmp: Path) -> tuple[Path, Path]:
    """(the shared PerSeg examples, a copy of their photos in ``tmp``): the sidecar never goes into shared."""
    from tests.conftest import DATA

    src = DATA / "perseg-examples"
    album = tmp / "perseg-album"
    album.mkdir()
    for p in sorted(src.glob("*.jpg")):
        shutil.copy(p, album / p.name)
    return src, album


def main(out: Path, model: str = "tiny") -> None:
    tmp = Path(tempfile.mkdtemp(prefix="persam-shots-"))
    _configure_screen(tmp)
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.models.sam_build import random_sam
    from persam_studio.gui.app import create_application
    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.main_window import MainWindow
    from persam_studio.gui.settings import AppSettings

    src, album = perseg_album(tmp)
    out.mkdir(parents=True, exist_ok=True)
    app = create_application()
    sam = random_sam(model, seed=0)
    engine = _GatedEngine(Engine(sam, f"{model}-random"))
    info = EngineInfo(f"{model} (random weights)", "cpu", "random")

    # 1. No checkpoint anywhere: the window opens and asks for a model.
    import persam_studio.core.models as models

    empty = tmp / "no-checkpoints"
    empty.mkdir()
    real_dirs = models.checkpoint_dirs
    models.checkpoint_dirs = lambda: [empty]
    os.environ.pop("PERSAM_CHECKPOINT", None)
    w0 = MainWindow(AppSettings(tmp / "s0.ini"))
    w0.resize(*SIZE)
    w0.show()
    _spin(app, lambda: w0.model_dialog is not None and w0.model_dialog.isVisible())
    w0.open_paths([album])  # browsing works without a model
    _spin(app, lambda: w0.images.session is not None)
    _shot_with_dialog(app, w0, w0.model_dialog, out / "no-checkpoint.png")
    w0.close()
    models.checkpoint_dirs = real_dirs

    # 2. An album with a click-made mask (random model: an arbitrary shape).
    w = MainWindow(AppSettings(tmp / "s1.ini"), engine_factory=lambda choice: (engine, info))
    w.resize(*SIZE)
    w.show()
    _spin(app, lambda: w.model.engine is not None)
    w.open_paths([album])
    _idle(app, w)
    w.albums.show(5)  # a duck toy
    _idle(app, w)
    # Random weights make speckled masks; the outline of speckles is clutter.
    w.side.outline.setChecked(False)
    point, index = _tidiest_click(engine, w.images.session)
    w.images.add_point(point)
    _idle(app, w)
    while w.images.state.candidate_index != index:
        w.images.cycle_candidate()
    _shot(app, w, out / "click-mask.png")

    # 3. A loaded hand-made mask as the reference (the overlay on a real subject).
    w.albums.show(0)  # cat_00
    _idle(app, w)
    w.side.outline.setChecked(True)
    w.albums.load_mask_file(src / "cat_00.png")
    w.side.name.setText("cat")
    w.side.use_button.click()
    _spin(app, lambda: w.albums.album.references)
    _shot(app, w, out / "reference-mask.png")

    # 4. Propagation in progress (held part-way), then the results with review flags.
    engine.hold_after = engine.count + 4
    w.side.propagate_button.click()
    _spin(app, lambda: engine.waiting.is_set())
    _spin(app, lambda: w.status.job.value() >= 2)
    _shot(app, w, out / "propagating.png")
    engine.gate.set()
    _spin(app, lambda: not w.jobs.busy)
    w.side.outline.setChecked(False)
    w.albums.show(1)  # cat_01, propagated
    _idle(app, w)
    _shot(app, w, out / "propagated.png")
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _tidiest_click(engine, session):
    """A click whose (random-model) mask is one compact blob: looks least like noise."""
    import cv2
    import numpy as np

    from persam_studio.core.types import Point

    h, w = session.original_size
    best = (float("inf"), None, 0)
    for fy in np.linspace(0.2, 0.8, 5):
        for fx in np.linspace(0.2, 0.8, 5):
            x, y = float(w * fx), float(h * fy)
            r = engine.predict(session.embedding, np.array([[x, y]]), np.array([1]))
            for i in range(len(r)):
                m = r.mask(i, session.display_size).astype(np.uint8)
                if not 0.03 < m.mean() < 0.5:
                    continue
                contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
                score = sum(len(c) for c in contours) ** 2 / m.sum()
                if score < best[0]:
                    best = (score, Point(x, y, 1), i)
    return best[1], best[2]


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"),
         sys.argv[2] if len(sys.argv) > 2 else "tiny")
