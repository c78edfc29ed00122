"""Settings: which model (type, checkpoint file), device, embedding cache folder and subject model."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from persam_studio.core.models import KNOWN_MODELS
from persam_studio.gui.backend import ModelChoice


def _with_browse(edit: QLineEdit, browse) -> QWidget:
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    button = QPushButton("Browse…", box)
    button.clicked.connect(browse)
    row.addWidget(button)
    return box


class SettingsDialog(QDialog):
    """Edits a :class:`ModelChoice`; empty fields mean "automatic"."""

    def __init__(self, choice: ModelChoice, parent=None, subject_model: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings — PerSAM Studio")
        self.model_type = QComboBox(self)
        self.model_type.addItem("Automatic (fastest found)", "")
        for name, info in KNOWN_MODELS.items():
            self.model_type.addItem(f"{name}: {info.description}", name)
        self.model_type.setCurrentIndex(max(0, self.model_type.findData(choice.model_type)))
        self.checkpoint = QLineEdit(choice.checkpoint, self)
        self.checkpoint.setPlaceholderText("automatic: checkpoints/ folders, PERSAM_CHECKPOINT")
        self.device = QComboBox(self)
        for label, value in (("Automatic (GPU when available)", ""), ("CPU", "cpu"), ("CUDA GPU", "cuda"), ("Apple GPU (MPS)", "mps")):
            self.device.addItem(label, value)
        self.device.setCurrentIndex(max(0, self.device.findData(choice.device)))
        self.cache_dir = QLineEdit(choice.cache_dir, self)
        self.cache_dir.setPlaceholderText("automatic: the user cache folder")
        self.subject_model = QLineEdit(subject_model, self)
        self.subject_model.setPlaceholderText("automatic: PERSAM_SUBJECT_MODEL, then downloaded models")
        self.subject_model.setToolTip("The ONNX model Select subject uses (U²-Net / IS-Net); get one with "
                                      "'persam-studio download isnet-general-use'")

        form = QFormLayout(self)
        form.addRow("Model", self.model_type)
        form.addRow("Checkpoint file", _with_browse(self.checkpoint, self._browse_checkpoint))
        form.addRow("Device", self.device)
        form.addRow("Embedding cache", _with_browse(self.cache_dir, self._browse_cache))
        form.addRow("Subject model", _with_browse(self.subject_model, self._browse_subject_model))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(620, 230)

    def choice(self) -> ModelChoice:
        return ModelChoice(
            checkpoint=self.checkpoint.text().strip(),
            model_type=self.model_type.currentData(),
            device=self.device.currentData(),
            cache_dir=self.cache_dir.text().strip(),
        )

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM checkpoint", self.checkpoint.text(), "Checkpoints (*.pth *.pt);;All files (*)")
        if path:
            self.checkpoint.setText(path)

    def subject_model_file(self) -> str:
        return self.subject_model.text().strip()

    def _browse_subject_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Subject model", self.subject_model.text(),
                                              "ONNX models (*.onnx);;All files (*)")
        if path:
            self.subject_model.setText(path)

    def _browse_cache(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Embedding cache folder", self.cache_dir.text())
        if path:
            self.cache_dir.setText(path)
