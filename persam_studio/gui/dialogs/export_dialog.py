"""Export: which images (current, selection, album), what (masks, cutouts), where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

CURRENT, SELECTION, ALBUM = "current", "selection", "album"


@dataclass(frozen=True)
class ExportOptions:
    scope: str
    folder: Path
    masks: bool
    cutouts: bool
    refine: bool


class ExportDialog(QDialog):
    """Collects :class:`ExportOptions`; originals are never overwritten by the export."""

    def __init__(self, folder: Path, n_selected: int, refine_available: bool, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export — PerSAM Studio")
        scope_box = QWidget(self)
        scope_row = QVBoxLayout(scope_box)
        scope_row.setContentsMargins(0, 0, 0, 0)
        self.scopes = QButtonGroup(self)
        for i, (key, label) in enumerate(((CURRENT, "Current image"), (SELECTION, f"Selected images ({n_selected})"), (ALBUM, "Whole album"))):
            button = QRadioButton(label, scope_box)
            button.setProperty("scope", key)
            button.setEnabled(key != SELECTION or n_selected > 0)
            self.scopes.addButton(button, i)
            scope_row.addWidget(button)
        self.scopes.button(0).setChecked(True)
        self.masks = QCheckBox("Masks (PNG, white = subject)", self)
        self.masks.setChecked(True)
        self.cutouts = QCheckBox("Cutouts (transparent PNG)", self)
        self.cutouts.setChecked(True)
        self.refine = QCheckBox("Refine edges (hair, fur)", self)
        self.refine.setEnabled(refine_available)
        self.folder = QLineEdit(str(folder), self)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        folder_row = QWidget(self)
        fr = QHBoxLayout(folder_row)
        fr.setContentsMargins(0, 0, 0, 0)
        fr.addWidget(self.folder, 1)
        fr.addWidget(browse)

        form = QFormLayout(self)
        form.addRow("Images", scope_box)
        form.addRow("Write", self.masks)
        form.addRow("", self.cutouts)
        form.addRow("", self.refine)
        form.addRow("Folder", folder_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def options(self) -> ExportOptions:
        return ExportOptions(
            scope=self.scopes.checkedButton().property("scope"),
            folder=Path(self.folder.text().strip()).expanduser(),
            masks=self.masks.isChecked(),
            cutouts=self.cutouts.isChecked(),
            refine=self.refine.isChecked() and self.refine.isEnabled(),
        )

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export folder", self.folder.text())
        if path:
            self.folder.setText(path)
