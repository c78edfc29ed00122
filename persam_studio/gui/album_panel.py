"""The album strip: a thumbnail per image with a badge for its state.

Thumbnails are decoded in the I/O lane (scaled while decoding) and tinted
with the image's mask when it has one, so a propagated album can be reviewed
at a glance. The badge colour tells the :class:`ImageState`; a photo that
cannot be read gets a red cross badge and its reason as tooltip.

Thumbnails arrive as numpy arrays; the Qt images are made here, on the GUI
thread (see :mod:`persam_studio.gui.thumbnails` for why).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QStyledItemDelegate

from persam_studio.core.io.album import ImageState
from persam_studio.gui.canvas import MASK_COLOR
from persam_studio.gui.convert import tint_thumbnail

THUMB = 112
STATE_ROLE = Qt.ItemDataRole.UserRole + 1
#: The one-line reason a photo cannot be read (None when it can).
ERROR_ROLE = Qt.ItemDataRole.UserRole + 2
ERROR_COLOR = QColor(220, 40, 40)
PLACEHOLDER_COLOR = QColor(60, 60, 64)

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
        unreadable = index.data(ERROR_ROLE) is not None
        color = ERROR_COLOR if unreadable else STATE_COLORS[ImageState(state)]
        badge = badge_rect(option.rect)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(255, 255, 255), 2))
        painter.setBrush(color)
        painter.drawEllipse(badge)
        if unreadable:  # a drawn cross: no font needed to tell "broken"
            c = badge.center()
            painter.drawLine(c.x() - 3, c.y() - 3, c.x() + 3, c.y() + 3)
            painter.drawLine(c.x() - 3, c.y() + 3, c.x() + 3, c.y() - 3)
        elif state == ImageState.NEEDS_REVIEW.value:
            painter.setPen(QColor(0, 0, 0))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "!")
        painter.restore()


def state_tooltip(name: str, state: ImageState, confidence: float | None) -> str:
    """``photo.jpg: needs review (confidence 0.42)``."""
    text = f"{name}: {STATE_LABELS[state]}"
    return text if confidence is None else f"{text} (confidence {confidence:.2f})"


def badge_rect(item_rect: QRect) -> QRect:
    """Where the badge sits in an item's rectangle (top right corner)."""
    return QRect(item_rect.right() - 22, item_rect.top() + 6, 16, 16)


def _unreadable_icon() -> QIcon:
    """The tile of a photo that cannot be read: says so, the tooltip says why."""
    pixmap = QPixmap(THUMB, THUMB)
    pixmap.fill(PLACEHOLDER_COLOR)
    painter = QPainter(pixmap)
    painter.setPen(QPen(ERROR_COLOR, 2))
    painter.drawRect(1, 1, THUMB - 2, THUMB - 2)
    painter.setPen(QColor(235, 235, 235))
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "cannot read")
    painter.end()
    return QIcon(pixmap)


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
        self._thumbs: list[np.ndarray | None] = []  # uint8 (h, w, 3) RGB
        self._masks: list[np.ndarray | None] = []
        self._tint_rows: set[int] = set()
        self._tint_timer = QTimer(self)
        self._tint_timer.setSingleShot(True)
        self._tint_timer.setInterval(50)
        self._tint_timer.timeout.connect(self._tint_pending)
        self.currentRowChanged.connect(self._on_row_changed)
        self._quiet = False
        self._review_only = False

    def two_columns_width(self) -> int:
        """Dock width that shows two thumbnails side by side."""
        return 2 * self.gridSize().width() + self.verticalScrollBar().sizeHint().width() + 8

    def set_images(self, names: list[str], states: list[ImageState],
                   confidences: list[float | None] | None = None) -> None:
        self._quiet = True
        self.clear()
        placeholder = QPixmap(THUMB, THUMB)
        placeholder.fill(PLACEHOLDER_COLOR)
        for name, state, conf in zip(names, states, confidences or [None] * len(names)):
            item = QListWidgetItem(QIcon(placeholder), name)
            item.setData(STATE_ROLE, state.value)
            item.setToolTip(state_tooltip(name, state, conf))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            self.addItem(item)
        self._thumbs = [None for _ in names]
        self._masks = [None for _ in names]
        self._tint_rows.clear()
        self._quiet = False
        self.set_review_only(self._review_only)

    def set_thumbnail(self, row: int, pixels: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Show ``pixels`` (uint8 (h, w, 3) RGB, decoded in a worker) for ``row``."""
        if 0 <= row < self.count():
            self._thumbs[row] = pixels
            self._masks[row] = mask
            self.item(row).setData(ERROR_ROLE, None)
            self._update_icon(row)

    def set_unreadable(self, row: int, reason: str) -> None:
        """Mark ``row`` as a photo that cannot be read; ``reason`` is one line."""
        if 0 <= row < self.count():
            item = self.item(row)
            item.setData(ERROR_ROLE, reason)
            item.setIcon(_unreadable_icon())
            item.setToolTip(f"{item.text()}: cannot be read: {reason}")

    def unreadable_reason(self, row: int) -> str | None:
        return self.item(row).data(ERROR_ROLE)

    @property
    def thumbnails_pending(self) -> int:
        """Rows still waiting for their thumbnail or its error."""
        return sum(1 for row, t in enumerate(self._thumbs) if t is None and self.unreadable_reason(row) is None)

    def set_state(self, row: int, state: ImageState, mask: np.ndarray | None,
                  confidence: float | None = None) -> None:
        if not 0 <= row < self.count():
            return
        item = self.item(row)
        item.setData(STATE_ROLE, state.value)
        if item.data(ERROR_ROLE) is None:  # an unreadable photo keeps its reason
            item.setToolTip(state_tooltip(item.text(), state, confidence))
        self._masks[row] = mask
        # The tint follows a beat later: the edit's own canvas repaint comes first
        # (tinting costs ~1.5 ms of the click-to-overlay time; see _tint_pending).
        self._tint_rows.add(row)
        if not self._tint_timer.isActive():
            self._tint_timer.start()
        self._apply_filter(row)

    def _tint_pending(self) -> None:
        rows, self._tint_rows = self._tint_rows, set()
        for row in rows:
            if 0 <= row < self.count():
                self._update_icon(row)

    def set_review_only(self, on: bool) -> None:
        """Show only the photos flagged *needs review* (and the one being edited)."""
        self._review_only = on
        for row in range(self.count()):
            self._apply_filter(row)

    def _apply_filter(self, row: int) -> None:
        # The photo being fixed stays visible when it stops needing review.
        hide = self._review_only and self.state(row) != ImageState.NEEDS_REVIEW and row != self.currentRow()
        self.setRowHidden(row, hide)

    def state(self, row: int) -> ImageState:
        return ImageState(self.item(row).data(STATE_ROLE))

    def selected_rows(self) -> list[int]:
        return sorted(self.row(i) for i in self.selectedItems())

    def select_row(self, row: int) -> None:
        """Make ``row`` current without re-announcing it."""
        self._quiet = True
        previous = self.currentRow()
        self.setCurrentRow(row)
        self._quiet = False
        if self._review_only and previous >= 0:
            self._apply_filter(previous)  # a fixed photo left behind is hidden now

    def _update_icon(self, row: int) -> None:
        thumb = self._thumbs[row]
        if thumb is None:
            return
        pixmap = QPixmap.fromImage(tint_thumbnail(thumb, self._masks[row], MASK_COLOR))
        icon = QIcon(pixmap)
        # Styles tint selected icons blue, which would read as "has a mask".
        icon.addPixmap(pixmap, QIcon.Mode.Selected)
        self.item(row).setIcon(icon)

    def _on_row_changed(self, row: int) -> None:
        if not self._quiet and row >= 0:
            self.image_activated.emit(row)
