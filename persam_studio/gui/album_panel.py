"""The album strip: a thumbnail per image with a badge for its state.

Thumbnails are decoded in the I/O lane (scaled while decoding) and tinted
with the image's mask when it has one, so a propagated album can be reviewed
at a glance. The badge colour tells the :class:`ImageState`.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QStyledItemDelegate

from persam_studio.core.io.album import ImageState
from persam_studio.gui.canvas import MASK_COLOR
from persam_studio.gui.convert import tint_thumbnail

THUMB = 112
STATE_ROLE = Qt.ItemDataRole.UserRole + 1

STATE_COLORS = {
    ImageState.UNTOUCHED: QColor(120, 120, 120),
    ImageState.MASKED: QColor(30, 144, 255),
    ImageState.PROPAGATED: QColor(160, 90, 230),
    ImageState.NEEDS_REVIEW: QColor(255, 160, 0),
    ImageState.ACCEPTED: QColor(40, 190, 80),
}
STATE_LABELS = {
    ImageState.UNTOUCHED: "untouched",
    ImageState.MASKED: "masked",
    ImageState.PROPAGATED: "propagated",
    ImageState.NEEDS_REVIEW: "needs review",
    ImageState.ACCEPTED: "accepted",
}


class _BadgeDelegate(QStyledItemDelegate):
    """Default painting plus a coloured state badge in the thumbnail's corner."""

    def paint(self, painter: QPainter, option, index) -> None:
        super().paint(painter, option, index)
        state = index.data(STATE_ROLE)
        if state is None:
            return
        color = STATE_COLORS[ImageState(state)]
        r = option.rect
        badge = QRect(r.right() - 22, r.top() + 6, 16, 16)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(255, 255, 255), 2))
        painter.setBrush(color)
        painter.drawEllipse(badge)
        if state == ImageState.NEEDS_REVIEW.value:
            painter.setPen(QColor(0, 0, 0))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "!")
        painter.restore()


class AlbumPanel(QListWidget):
    """See the module docstring. Rows follow the album's order."""

    image_activated = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 16, THUMB + 34))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setItemDelegate(_BadgeDelegate(self))
        self.setAcceptDrops(False)
        self._thumbs: list[QImage] = []
        self._masks: list[np.ndarray | None] = []
        self.currentRowChanged.connect(self._on_row_changed)
        self._quiet = False

    def two_columns_width(self) -> int:
        """Dock width that shows two thumbnails side by side."""
        return 2 * self.gridSize().width() + self.verticalScrollBar().sizeHint().width() + 8

    def set_images(self, names: list[str], states: list[ImageState]) -> None:
        self._quiet = True
        self.clear()
        placeholder = QPixmap(THUMB, THUMB)
        placeholder.fill(QColor(60, 60, 64))
        for name, state in zip(names, states):
            item = QListWidgetItem(QIcon(placeholder), name)
            item.setData(STATE_ROLE, state.value)
            item.setToolTip(f"{name}: {STATE_LABELS[state]}")
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            self.addItem(item)
        self._thumbs = [QImage() for _ in names]
        self._masks = [None for _ in names]
        self._quiet = False

    def set_thumbnail(self, row: int, image: QImage, mask: np.ndarray | None = None) -> None:
        if 0 <= row < self.count() and not image.isNull():
            self._thumbs[row] = image
            self._masks[row] = mask
            self._update_icon(row)

    def set_state(self, row: int, state: ImageState, mask: np.ndarray | None) -> None:
        if not 0 <= row < self.count():
            return
        item = self.item(row)
        item.setData(STATE_ROLE, state.value)
        item.setToolTip(f"{item.text()}: {STATE_LABELS[state]}")
        self._masks[row] = mask
        self._update_icon(row)

    def state(self, row: int) -> ImageState:
        return ImageState(self.item(row).data(STATE_ROLE))

    def selected_rows(self) -> list[int]:
        return sorted(self.row(i) for i in self.selectedItems())

    def select_row(self, row: int) -> None:
        """Make ``row`` current without re-announcing it."""
        self._quiet = True
        self.setCurrentRow(row)
        self._quiet = False

    def _update_icon(self, row: int) -> None:
        thumb = self._thumbs[row]
        if thumb.isNull():
            return
        pixmap = QPixmap.fromImage(tint_thumbnail(thumb, self._masks[row], MASK_COLOR))
        icon = QIcon(pixmap)
        # Styles tint selected icons blue, which would read as "has a mask".
        icon.addPixmap(pixmap, QIcon.Mode.Selected)
        self.item(row).setIcon(icon)

    def _on_row_changed(self, row: int) -> None:
        if not self._quiet and row >= 0:
            self.image_activated.emit(row)
