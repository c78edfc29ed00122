"""Export: which images (current, selection, album), what (masks, cutouts), where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
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
#: Cutout files: PNG keeps transparency (or, on a background, every pixel exactly);
#: JPEG is small and opaque (white behind the object when no background is chosen, as the CLI).
CUTOUT_FORMATS = (("PNG", ".png"), ("JPEG", ".jpg"))
DATASET_CHOICES = (("No dataset", ""), ("COCO instances JSON (polygons)", "coco-polygon"),
                   ("COCO instances JSON (RLE)", "coco-rle"), ("YOLO-seg labels (txt)", "yolo"),
                   ("Polygons (labelme JSON)", "polygons"))


@dataclass(frozen=True)
class ExportOptions:
    scope: str
    folder: Path
    masks: bool
    cutouts: bool
    refine: bool
    background: str = ""  # "" transparent, else as the CLI's --background: colour, blur, picture file
    cutout_suffix: str = ".png"
    dataset: str = ""  # "" none, else a key of gui.exports.DATASETS


class ExportDialog(QDialog):
    """Collects :class:`ExportOptions`; originals are never overwritten by the export."""

    def __init__(self, folder: Path, n_selected: int, refine_available: bool, parent=None,
                 background: str = "") -> None:
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
        self.cutouts = QCheckBox("Cutouts", self)
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
        self._add_background_and_dataset(form, background)
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
            background=self.background.spec if self.cutouts.isChecked() else "",
            cutout_suffix=self.cutout_format.currentData(),
            dataset=self.dataset.currentData(),
        )

    def _add_background_and_dataset(self, form: QFormLayout, background: str) -> None:
        """The cutouts' background (the picker of the canvas preview) and file format, and a dataset."""
        from persam_studio.gui.background import BackgroundPicker

        self.background = BackgroundPicker(self)
        self.background.layout().setContentsMargins(0, 0, 0, 0)
        if background == "blur":
            self.background.kind.setCurrentIndex(3)
        elif background.startswith("#"):
            from PySide6.QtGui import QColor

            self.background.set_colour(QColor(background))
        elif background:
            self.background.set_picture(background)
        self.cutout_format = QComboBox(self)
        for label, suffix in CUTOUT_FORMATS:
            self.cutout_format.addItem(label, suffix)
        self.dataset = QComboBox(self)
        for label, key in DATASET_CHOICES:
            self.dataset.addItem(label, key)
        self.dataset.setToolTip("Also write the masks as a training dataset, in a sub-folder "
                                "(coco/, yolo/ or labelme/) of the export folder")
        self.cutouts.toggled.connect(self.background.setEnabled)
        self.cutouts.toggled.connect(self.cutout_format.setEnabled)
        form.addRow("Cutout background", self.background)
        form.addRow("Cutout file", self.cutout_format)
        form.addRow("Dataset", self.dataset)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export folder", self.folder.text())
        if path:
            self.folder.setText(path)
