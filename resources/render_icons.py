"""Render the app icon's PNG sizes from persam-studio.svg (run after editing it).

    QT_QPA_PLATFORM=offscreen python resources/render_icons.py

Writes ``icons/<n>x<n>/persam-studio.png`` beside this script, laid out as
freedesktop's hicolor theme is, so installing them is a plain copy (see
README.md). PNGs are shipped because the window icon must not depend on
Qt's SVG icon plugin being installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

HERE = Path(__file__).resolve().parent
SIZES = (16, 32, 48, 64, 128, 256)


def render(svg: Path, size: int) -> QImage:
    """``svg`` drawn on a transparent ``size`` x ``size`` ARGB image."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    _app = QGuiApplication(sys.argv[:1])  # QPainter on a QImage needs one (fonts)
    svg = HERE / "persam-studio.svg"
    for size in SIZES:
        out = HERE / "icons" / f"{size}x{size}" / "persam-studio.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        if not render(svg, size).save(str(out)):
            raise SystemExit(f"{out}: cannot write")
        print(out.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
