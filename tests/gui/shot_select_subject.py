"""Screenshot of *Select subject* with the real IS-Net model (docs/screenshots/select-subject.png).

    Xvfb :99 & DISPLAY=:99 .venv/bin/python -m tests.gui.shot_select_subject docs/screenshots/select-subject.png

SAM has random weights (only clicks would use it); the subject masks come
from ../shared/models/isnet-medium.onnx. The album is a temporary copy of
a few PerSeg photos: *Select subject in all photos* runs over it (badges),
then the first photo is shown. With a DISPLAY the screen is grabbed with
ImageMagick's ``import`` (the real window, decorations and all); offscreen
the window grabs itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.gui.screenshots import _idle, _save_small, _spin

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PHOTOS = ("colorful_sneaker_01", "duck_toy_01", "cat_01", "colorful_sneaker_00")


def main(out: Path) -> None:
    from PySide6.QtWidgets import QApplication

    from persam_studio.core.models.sam_build import random_sam
    from persam_studio.core.segment.engine import Engine
    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.main_window import MainWindow
    from persam_studio.gui.settings import AppSettings

    isnet = SHARED / "models" / "isnet-medium.onnx"
    tmp = Path(tempfile.mkdtemp(prefix="persam-shot-"))
    os.environ["PERSAM_CACHE_DIR"] = str(tmp / "cache")
    album = tmp / "my-things"
    album.mkdir()
    for name in PHOTOS:
        shutil.copy(SHARED / "data" / "perseg-examples" / f"{name}.jpg", album)
    app = QApplication.instance() or QApplication(sys.argv)
    engine = Engine(random_sam("tiny", seed=0), "tiny-random")
    settings = AppSettings(tmp / "s.ini")
    settings.subject_model = str(isnet)
    w = MainWindow(settings, engine_factory=lambda choice: (engine, EngineInfo("tiny (random weights)", "cpu", "random")))
    w.resize(1280, 800)
    w.show()
    w.open_paths([album])
    _idle(app, w)
    done = []
    w.jobs.finished.connect(lambda label, summary: done.append(summary))
    w.actions_.select_all.trigger()
    _spin(app, lambda: bool(done), 600)
    w.albums.show(1)
    _idle(app, w)
    w.albums.show(0)
    _idle(app, w)
    w.actions_.select_subject.trigger()  # the photo on the canvas, as a user would (undoable)
    got = []
    w.subjects.selected.connect(got.append)
    _spin(app, lambda: bool(got), 300)
    _idle(app, w)
    _spin(app, lambda: w.panel.thumbnails_pending == 0, 60)
    for _ in range(50):
        app.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    if os.environ.get("DISPLAY") and shutil.which("import"):
        raw = tmp / "screen.png"
        subprocess.run(["import", "-window", "root", str(raw)], check=True)
        from PIL import Image

        box = w.frameGeometry()
        Image.open(raw).crop((box.x(), box.y(), box.x() + box.width(), box.y() + box.height())).save(raw)
        from PySide6.QtGui import QPixmap

        _save_small(QPixmap(str(raw)), out)
    else:
        _save_small(w.grab(), out)
    print(out, done, w.status.currentMessage())
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots/select-subject.png"))
