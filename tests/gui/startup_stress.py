"""Start the window on an album with unreadable files many times; exit 1 on a hang.

    QT_QPA_PLATFORM=offscreen python -m tests.gui.startup_stress ALBUM [STARTS]

Each start builds the main window (no model: the engine factory returns
none, as a missing checkpoint would leave it), opens ALBUM, waits until every
thumbnail is shown or marked unreadable and the first photo is settled, and
closes the window. ``tests/gui/test_startup.py`` runs this in a fresh
process: the first start then loads Qt's image plugins cold, as a real start
does (the deadlock of issue 12 was a worker and the GUI thread meeting in
that plugin loader), and a hung start kills only this process, after
:mod:`faulthandler` has printed every thread's stack.
"""

from __future__ import annotations

import faulthandler
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

#: A start normally takes well under a second; a deadlock never ends.
PER_START_LIMIT_S = 15.0

#: The unreadable files of the album, and the reason the app gives for each.
UNREADABLE = {
    "a_truncated.jpg": "truncated or corrupt",
    "b_empty.jpg": "empty file",
    "c_text.jpg": "not an image",
}


def make_unreadable_album(folder: Path, good: int = 4) -> list[Path]:
    """``good`` small photos (JPEG and PNG) plus the files of :data:`UNREADABLE`.

    The bad files sort first, so the photo the window opens on is one of them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12)
    paths = []
    for i in range(good):
        pixels = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        pixels[60:180, 80:240] = (40 * i, 160, 90)  # a block, so thumbnails differ
        path = folder / f"photo{i + 1}.{'jpg' if i % 2 == 0 else 'png'}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    jpeg = (folder / "photo1.jpg").read_bytes()
    (folder / "a_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "b_empty.jpg").write_bytes(b"")
    (folder / "c_text.jpg").write_text("these are not the pixels you are looking for\n")
    return sorted(folder.iterdir())


def _spin(app, done, what: str) -> None:
    end = time.monotonic() + PER_START_LIMIT_S
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"still waiting for {what} after {PER_START_LIMIT_S:.0f} s")
        app.processEvents()
        time.sleep(0.001)


def start_once(app, album: Path, settings_file: Path) -> None:
    """One start: window, album, every thumbnail settled, close."""
    from PySide6.QtCore import QCoreApplication, QEvent

    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.main_window import MainWindow
    from persam_studio.gui.settings import AppSettings

    window = MainWindow(AppSettings(settings_file), engine_factory=lambda choice: (None, EngineInfo("none", "cpu", "")))
    window.show()
    window.open_paths([album])
    _spin(app, lambda: window.model.info is not None, "the (empty) model")
    _spin(app, lambda: window.panel.thumbnails_pending == 0, "thumbnails")
    _spin(app, lambda: not window.images.busy, "the first photo")
    n = window.panel.count()
    bad = sum(window.panel.unreadable_reason(r) is not None for r in range(n))
    if bad != len(UNREADABLE):
        raise AssertionError(f"{bad} of {n} thumbnails marked unreadable, expected {len(UNREADABLE)}")
    window.close()
    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    # Each start's model "load" calls gc.freeze(); undo it so closed windows
    # can be collected and 100 starts do not pile up.
    gc.unfreeze()


def main(argv: list[str]) -> int:
    from persam_studio.gui.app import create_application

    album = Path(argv[0])
    starts = int(argv[1]) if len(argv) > 1 else 100
    app = create_application()
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(starts):
            # A deadlock freezes the GUI thread itself, so only another thread
            # can notice: this one prints every stack and ends the process.
            faulthandler.dump_traceback_later(PER_START_LIMIT_S + 5, exit=True)
            t0 = time.perf_counter()
            try:
                start_once(app, album, Path(tmp) / "settings.ini")
            except Exception as exc:
                print(f"start {i + 1}: {exc}", file=sys.stderr)
                faulthandler.dump_traceback(all_threads=True)
                return 1
            finally:
                faulthandler.cancel_dump_traceback_later()
            times.append(time.perf_counter() - t0)
    print(f"{starts} starts, none hung: mean {statistics.mean(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms, first {times[0] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
