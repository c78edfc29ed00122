"""The side panel's list of targets: each name, its reference count, a thumbnail per reference.

Thumbnails (the reference photo tinted with its reference mask) are decoded
in the I/O lane as numpy arrays (:func:`reference_thumbnail`); the Qt images
are made here, on the GUI thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem

from persam_studio.core.io.album import Album, ReferenceRecord, read_mask_png
from persam_studio.gui.canvas import MASK_COLOR
from persam_studio.gui.convert import tint_thumbnail
from persam_studio.gui.references import targets
from persam_studio.gui.thumbnails import load_thumbnail
from persam_studio.gui.workers import LOW, Lane

SIDE = 48


def reference_thumbnail(image: Path, mask_file: Path, side: int = SIDE) -> tuple[np.ndarray, np.ndarray | None]:
    """I/O lane: uint8 (h, w, 3) thumbnail of ``image`` and its reference mask, bool (h, w), or None."""
    pixels = load_thumbnail(image, side)
    mask = read_mask_png(mask_file)
    if mask is not None:
        h, w = pixels.shape[:2]
        mask = cv2.resize(mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_AREA) > 127
    return pixels, mask


def target_label(name: str, count: int) -> str:
    return f"{name} — {count} reference{'s' if count != 1 else ''}"


class TargetsView(QTreeWidget):
    """One row per target (name and count), a child row per reference with its thumbnail."""

    def __init__(self, io_lane: Lane, parent=None) -> None:
        super().__init__(parent)
        self.io_lane = io_lane
        self.setHeaderHidden(True)
        self.setIconSize(QSize(SIDE, SIDE))
        self.setRootIsDecorated(False)
        self.setMinimumHeight(SIDE * 2 + 12)
        self.setToolTip("The subjects PerSAM looks for; references sharing a name form one target")
        self._icons: dict[str, QIcon] = {}  # reference mask file -> thumbnail (they never change)
        self._items: dict[str, QTreeWidgetItem] = {}

    def set_references(self, album: Album | None, references: Sequence[ReferenceRecord]) -> None:
        self.clear()
        self._items = {}
        if album is None or not references:
            QTreeWidgetItem(self, ["No reference yet"])
            return
        for name, refs in targets(references):
            top = QTreeWidgetItem(self, [target_label(name, len(refs))])
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            for ref in refs:
                child = QTreeWidgetItem(top, [Path(ref.image).name])
                child.setFlags(Qt.ItemFlag.ItemIsEnabled)
                self._items[ref.mask] = child
                icon = self._icons.get(ref.mask)
                if icon is not None:
                    child.setIcon(0, icon)
                else:
                    self.io_lane.submit(
                        reference_thumbnail, album.reference_image(ref), album.sidecar / "references" / ref.mask,
                        priority=LOW, on_done=lambda res, key=ref.mask: self._on_thumbnail(key, *res),
                    )
        self.expandAll()

    def target_labels(self) -> list[str]:
        """The top rows' text, e.g. ``["my cat — 2 references"]`` (tests, screenshots)."""
        return [self.topLevelItem(i).text(0) for i in range(self.topLevelItemCount())]

    def thumbnails_shown(self) -> int:
        return sum(1 for item in self._items.values() if not item.icon(0).isNull())

    def _on_thumbnail(self, key: str, pixels: np.ndarray, mask: np.ndarray | None) -> None:
        icon = QIcon(QPixmap.fromImage(tint_thumbnail(pixels, mask, MASK_COLOR)))
        self._icons[key] = icon
        item = self._items.get(key)
        if item is not None:
            item.setIcon(0, icon)
