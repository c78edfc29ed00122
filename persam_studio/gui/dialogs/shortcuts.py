"""Help > Shortcuts: every gesture and key of the app in one table."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout

#: (keys, what they do); the actions use the same key sequences.
SHORTCUTS: list[tuple[str, str]] = [
    ("Left click", "add an object point"),
    ("Right click", "add a background point"),
    ("Left drag", "draw a box around the object"),
    ("Tab", "next mask candidate"),
    ("Esc", "clear the mask and prompts"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo"),
    ("V / B / E", "prompt tool / brush / eraser"),
    ("[ / ]", "smaller / larger brush"),
    ("Wheel, + / -", "zoom in / out"),
    ("F / 1", "fit the image / 100 %"),
    ("Middle drag", "pan"),
    ("Page Down / Page Up", "next / previous image"),
    ("N / Shift+N", "next / previous photo to review (wraps around)"),
    ("Ctrl+Shift+R", "show only the photos to review"),
    ("S / Ctrl+Shift+S", "select the subject (no click) / in all photos"),
    ("R", "use the mask as reference"),
    ("Ctrl+Shift+P", "propagate to the album"),
    ("A", "accept the mask"),
    ("Ctrl+O / Ctrl+Shift+O", "open a folder / images"),
    ("Ctrl+E", "export"),
    ("F1", "this list"),
]


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Shortcuts — PerSAM Studio")
        table = QTableWidget(len(SHORTCUTS), 2, self)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().hide()
        for row, (keys, what) in enumerate(SHORTCUTS):
            table.setItem(row, 0, QTableWidgetItem(keys))
            table.setItem(row, 1, QTableWidgetItem(what))
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(460, 560)
