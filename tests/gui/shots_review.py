"""Screenshots of docs/gui.md's targets and review sections, from the real window under X.

    Xvfb :99 -screen 0 1600x1000x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python -m tests.gui.shots_review docs/screenshots

A random-weight tiny SAM (no weights here), so masks are speckles and every
propagated photo is flagged. The album is a temporary copy of
../shared/data/photos. Each shot is the X screen (``import -window root``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.gui.screenshots import _spin


def _settle(app, seconds: float = 0.6) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def _grab(app, path: Path) -> None:
    _settle(app)
    subprocess.run(["import", "-window", "root", str(path)], check=True)


def main(out: Path) -> None:
    from persam_studio.core.models.sam_build import random_sam
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.types import Point
    from persam_studio.gui.app import create_application
    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.main_window import MainWindow
    from persam_studio.gui.settings import AppSettings
    from tests.conftest import DATA

    tmp = Path(tempfile.mkdtemp(prefix="persam-shots-"))
    album = tmp / "pets-and-people"
    album.mkdir()
    for p in sorted((DATA / "photos").iterdir()):
        shutil.copy(p, album / p.name)
    (album / "scan-0042.jpg").write_bytes(b"half a download")  # shows an error in the Log
    out.mkdir(parents=True, exist_ok=True)
    app = create_application()
    engine = Engine(random_sam("tiny", seed=0), "tiny-random")
    window = MainWindow(AppSettings(tmp / "s.ini"),
                        engine_factory=lambda c: (engine, EngineInfo("tiny", "cpu", "/models/sam_vit_b_01ec64.pth")))
    window.resize(1580, 960)
    window.move(10, 10)
    window.show()
    _spin(app, lambda: window.model.engine is not None)
    window.open_paths([album])

    def idle() -> bool:
        s = window.images.session
        return s is not None and s.embedding is not None and not window.images.busy

    def reference(row: int, name: str, xy: tuple[float, float]) -> None:
        window.albums.show(row)
        _spin(app, idle)
        h, w = window.images.session.original_size
        window.images.add_point(Point(xy[0] * w, xy[1] * h, 1))
        _spin(app, idle)
        n = len(window.albums.album.references)
        window.side.name.setText(name)
        window.side.use_button.click()
        _spin(app, lambda: len(window.albums.album.references) == n + 1)

    row = lambda name: window.albums.album.index_of(album / name)  # noqa: E731
    reference(row("dog.jpg"), "dog", (0.5, 0.55))
    reference(row("Two_dancers.jpg"), "dancer", (0.4, 0.5))
    reference(row("julia+trotti_17.jpg"), "dancer", (0.5, 0.5))
    _spin(app, lambda: window.targets.thumbnails_shown() == 3)
    _grab(app, out / "targets.png")

    done = []
    window.jobs.finished.connect(lambda *a: done.append(a))
    window.jobs.propagate("persam")
    _spin(app, lambda: bool(done), 600)
    window.jobs.prepare()
    _spin(app, lambda: len(done) == 2, 600)
    window.side.review_only.setChecked(True)
    window.side.next_review.click()
    _spin(app, idle)
    window.side.next_review.click()
    _spin(app, idle)
    _grab(app, out / "review.png")
    window.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
