"""Start the desktop app: ``persam-studio [--checkpoint PATH] [--model TYPE] [FOLDER|IMAGES...]``."""

from __future__ import annotations

import sys
from typing import Sequence

from PySide6.QtWidgets import QApplication

from persam_studio.gui.icon import ICON_NAME, app_icon
from persam_studio.gui.launch import parse_app_args
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


def run_app(argv: list[str], settings: AppSettings | None = None) -> int:
    """Open the window as ``argv`` asks (see :mod:`persam_studio.gui.launch`); returns the exit code.

    ``argv``: the app's arguments, e.g. ``["--checkpoint", "sam.pth", "~/album"]``
    or just paths (a folder or images, may be empty). A usage error prints one
    line and returns 2 without opening a window.
    """
    try:
        options = parse_app_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return int(exc.code or 0)
    app = create_application()
    window = MainWindow(settings or AppSettings(), launch=options)
    window.show()
    if options.paths:
        window.open_paths(list(options.paths))
    return int(app.exec())
