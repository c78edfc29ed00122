"""A new background for the photo on the canvas: the picker and the live preview.

:class:`BackgroundPicker` says what the user chose (none, a colour, a picture
file, blur) as the CLI's ``--background`` text. :class:`BackgroundPreview`
keeps the canvas showing the current photo's object on that background:
every new mask is composited at display size in the I/O lane (one slot: a
newer mask replaces a queued one), and the GUI thread only wraps the result
in a QImage. The picture file is read in the I/O lane too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from persam_studio.gui import exports
from persam_studio.gui.canvas import Canvas
from persam_studio.gui.convert import rgb_to_qimage
from persam_studio.gui.image_controller import ImageController
from persam_studio.gui.workers import HIGH, Lane

NONE, COLOUR, PICTURE, BLUR = "none", "colour", "picture", "blur"
CHOICES = ((NONE, "None (the mask overlay)"), (COLOUR, "Colour"), (PICTURE, "Picture"), (BLUR, "Blur"))
PICTURE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.tif *.tiff *.bmp);;All files (*)"


class BackgroundPicker(QWidget):
    """None / colour / picture / blur; emits ``changed(spec)`` ("" for none)."""

    changed = Signal(str)

    def __init__(self, parent=None, folder: str = "") -> None:
        super().__init__(parent)
        self.folder = folder
        self.colour = QColor(255, 255, 255)
        self.picture = ""
        self.kind = QComboBox(self)
        for key, label in CHOICES:
            self.kind.addItem(label, key)
        self.choose = QPushButton("Choose…", self)
        self.choose.clicked.connect(self._ask)
        self.what = QLabel("", self)
        self.what.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.kind, 1)
        row.addWidget(self.choose)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.what)
        layout.addStretch(1)
        self.kind.currentIndexChanged.connect(lambda _: self._changed())
        self._changed(emit=False)

    @property
    def spec(self) -> str:
        """The choice as ``--background`` text: "" (none), "#rrggbb", a file, or "blur"."""
        kind = self.kind.currentData()
        if kind == COLOUR:
            return self.colour.name()
        if kind == PICTURE:
            return self.picture
        return "blur" if kind == BLUR else ""

    def recall(self, colour: str, picture: str) -> None:
        """Offer the colour and picture of an earlier session when Colour or Picture is picked.

        The choice stays as it is (no preview starts by itself). A colour
        that does not parse is not recalled. The picture is not looked at
        here (no disk access on the GUI thread, at start-up least of all: a
        stale network path can block): one that is gone fails when picked,
        in the I/O lane, with one message, as any unreadable picture does.
        """
        if QColor.isValidColorName(colour):
            self.colour = QColor(colour)
        self.picture = picture
        self._changed(emit=False)

    def set_colour(self, colour: QColor) -> None:
        self.colour = QColor(colour)
        self.kind.setCurrentIndex(self.kind.findData(COLOUR))
        self._changed()

    def set_picture(self, path: str | Path) -> None:
        self.picture = str(path)
        self.kind.setCurrentIndex(self.kind.findData(PICTURE))
        self._changed()

    def _ask(self) -> None:
        kind = self.kind.currentData()
        if kind == PICTURE:
            path, _ = QFileDialog.getOpenFileName(self, "Background picture", self.folder, PICTURE_FILTER)
            if path:
                self.set_picture(path)
        else:
            colour = QColorDialog.getColor(self.colour, self, "Background colour")
            if colour.isValid():
                self.set_colour(colour)

    def _changed(self, emit: bool = True) -> None:
        kind = self.kind.currentData()
        self.choose.setEnabled(kind in (COLOUR, PICTURE))
        self.what.setText({NONE: "", COLOUR: self.colour.name(), BLUR: "the photo, blurred",
                           PICTURE: Path(self.picture).name or "choose a picture"}[kind])
        if emit:
            self.changed.emit(self.spec)  # "" (no preview) for Picture until a file is chosen


class BackgroundPreview(QObject):
    """Shows the current photo's object on the chosen background on the canvas."""

    failed = Signal(str)
    shown = Signal()  # a preview reached the canvas (tests, status)

    def __init__(self, images: ImageController, canvas: Canvas, io_lane: Lane, parent=None) -> None:
        super().__init__(parent)
        self.images, self.canvas, self.lane = images, canvas, io_lane
        self.spec = ""
        self.background = None
        self._small: tuple[Path, np.ndarray] | None = None  # the photo at display size, per path
        self._generation = 0  # of the chosen background
        self._request = 0  # of the composites asked for
        images.mask_changed.connect(self.refresh)
        images.image_opened.connect(lambda _path: self.refresh())

    def set_spec(self, spec: str) -> None:
        """A new choice from the picker; "" turns the preview off."""
        self.spec, self.background = spec, None
        self._generation += 1
        self._request += 1
        if not spec:
            self.canvas.set_preview(None)
            return
        generation = self._generation
        self.lane.submit(exports.load_background, spec, slot="background-load", priority=HIGH,
                         on_done=lambda result, g=generation: self._on_background(g, result),
                         on_error=lambda e: self.failed.emit(f"background: {e}"))

    def _on_background(self, generation: int, result) -> None:
        if generation == self._generation:
            self.background = result[0]
            self.refresh()

    def refresh(self) -> None:
        """Composite the current mask (in the I/O lane); no mask or no background: no preview."""
        if not self.spec or self.background is None:
            self.canvas.set_preview(None)  # no mask unpacked: this runs after every click
            return
        session, pixels = self.images.session, self.images.pixels
        mask = session.mask() if session is not None else None
        if mask is None or pixels is None:
            self.canvas.set_preview(None)
            return
        small = self._small[1] if self._small is not None and self._small[0] == session.path else None
        self._request += 1
        request, path = self._request, session.path
        self.lane.submit(exports.preview_composite, pixels, mask, self.background, small,
                         slot="background", priority=HIGH,
                         on_done=lambda result, r=request, p=path: self._on_composite(r, p, result),
                         on_error=lambda e: self.failed.emit(f"background preview: {e}"))

    def _on_composite(self, request: int, path: Path, result: tuple[np.ndarray, np.ndarray]) -> None:
        session = self.images.session
        if request != self._request or not self.spec or session is None or session.path != path:
            return  # a newer mask, background or photo meanwhile (two I/O threads: answers may cross)
        self._small = (path, result[0])
        self.canvas.set_preview(rgb_to_qimage(result[1]))
        self.shown.emit()
