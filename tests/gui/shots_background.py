"""Screenshots of the background preview and the Export dialog (docs/gui.md), from the real window.

    Xvfb :98 -screen 0 1600x1000x24 &
    DISPLAY=:98 QT_QPA_PLATFORM=xcb python -m tests.gui.shots_background docs/screenshots

A temporary copy of ../shared/data/perseg-examples, tiny random SAM; the cat's
hand-made mask is loaded so that the preview shows a real subject, on
../shared/data/matting/beach.png.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from tests.gui.screenshots import SIZE, _idle, _shot, _shot_with_dialog, _spin, perseg_album


def main(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="persam-shots-bg-"))
    from persam_studio.core.models.sam_build import random_sam
    from persam_studio.core.segment.engine import Engine
    from persam_studio.gui.app import create_application
    from persam_studio.gui.backend import EngineInfo
    from persam_studio.gui.dialogs.export_dialog import ExportDialog
    from persam_studio.gui.jobs_controller import default_export_dir
    from persam_studio.gui.main_window import MainWindow
    from persam_studio.gui.settings import AppSettings
    from tests.conftest import DATA

    src, album = perseg_album(tmp)
    out.mkdir(parents=True, exist_ok=True)
    app = create_application()
    engine = Engine(random_sam("tiny", seed=0), "tiny-random")
    w = MainWindow(AppSettings(tmp / "s.ini"),
                   engine_factory=lambda choice: (engine, EngineInfo("tiny (random weights)", "cpu", "random")))
    w.resize(*SIZE)
    w.show()
    _spin(app, lambda: w.model.engine is not None)
    w.open_paths([album])
    _idle(app, w)
    w.albums.load_mask_file(src / "cat_00.png")
    _idle(app, w)
    shown = []
    w.preview.shown.connect(lambda: shown.append(1))
    w.background.set_picture(DATA / "matting" / "beach.png")
    _spin(app, lambda: shown)
    _shot(app, w, out / "background.png")

    dialog = ExportDialog(default_export_dir(album), 0, True, w, w.preview.spec)
    dialog.dataset.setCurrentIndex(1)
    dialog.show()
    _shot_with_dialog(app, w, dialog, out / "export.png")
    dialog.close()
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
