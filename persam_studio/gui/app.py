"""Start the desktop app: ``persam-studio [FOLDER|IMAGES...]``."""

from __future__ import annotations

import sys
from typing import Sequence

from PySide6.QtWidgets import QApplication

from persam_studio.gui.icon import ICON_NAME, app_icon
from persam_studio.gui.main_window import MainWindow
from persam_studio.gui.settings import APPLICATION, ORGANIZATION, AppSettings


def create_application(argv: Sequence[str] | None = None) -> QApplication:
    """The QApplication (reused when one exists, as under pytest-qt)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv or [sys.argv[0] if sys.argv else "persam-studio"]))
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setWindowIcon(app_icon())
    # Wayland shells take the icon and name from the desktop entry of this name.
    app.setDesktopFileName(ICON_NAME)
    return app


def run_app(paths: list[str], settings: AppSettings | None = None) -> int:
    """Open the window on ``paths`` (a folder or images, may be empty); returns the exit code."""
    app = create_application()
    window = MainWindow(settings or AppSettings())
    window.show()
    if paths:
        window.open_paths(paths)
    return int(app.exec())
