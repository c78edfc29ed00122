"""The app's icon, from the files shipped in ``persam_studio/resources``.

``persam_studio/resources`` links to the repository's top-level
``resources/`` folder; a wheel carries its files as package data. Looking
them up through :mod:`importlib.resources` finds them in both cases.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from PySide6.QtGui import QIcon

ICON_NAME = "persam-studio"
ICON_SIZES = (16, 32, 48, 64, 128, 256)


def resource_path(*parts: str) -> Path:
    """A file of ``persam_studio/resources`` (installed or in a checkout)."""
    return Path(str(files("persam_studio").joinpath("resources", *parts)))


def app_icon() -> QIcon:
    """Every PNG size of the icon; a null icon only if the files are missing.

    PNGs rather than the SVG: reading an SVG icon needs Qt's SVG icon
    plugin, which a minimal install may lack.
    """
    icon = QIcon()
    for size in ICON_SIZES:
        path = resource_path("icons", f"{size}x{size}", f"{ICON_NAME}.png")
        if path.is_file():
            icon.addFile(str(path))
    return icon
