"""No model yet: download an official checkpoint (with progress and Cancel) or choose a file."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from persam_studio.core.models import KNOWN_MODELS
from persam_studio.core.personalize.methods import published_score

INTRO = (
    "<b>No Segment Anything checkpoint was found.</b><br>"
    "PerSAM Studio needs one to segment photos. Download an official model "
    "(once; it is kept for next time), or choose a checkpoint file you already have."
)


def _miou(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def quality_line(model_type: str) -> str:
    """The published PerSeg mIoU of PerSAM-F and PerSAM with ``model_type``, in words."""
    score = published_score(model_type)
    if score is None or (score.persam is None and score.persam_f is None):
        return "PerSeg accuracy: none published for this model"
    return (f"PerSeg mIoU (published, {score.label}): PerSAM-F {_miou(score.persam_f)} %, "
            f"PerSAM {_miou(score.persam)} % — {score.source}")


class ModelDialog(QDialog):
    """Offers download / choose file / settings; the window stays usable meanwhile."""

    download_requested = Signal(str)  # model type
    cancel_requested = Signal()
    file_chosen = Signal(str)
    settings_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose a model — PerSAM Studio")
        self.setModal(False)
        intro = QLabel(INTRO, self)
        intro.setWordWrap(True)
        self.models = QComboBox(self)
        for name, info in sorted(KNOWN_MODELS.items(), key=lambda kv: kv[1].cpu_speed_rank):
            score = published_score(name)
            f = f"; PerSeg PerSAM-F {_miou(score.persam_f)} %" if score is not None and score.persam_f else ""
            self.models.addItem(f"{info.description} ({info.size_bytes / 1e6:.0f} MB{f})", name)
        # The quality to expect, so the size is chosen with it in view.
        self.quality = QLabel("", self)
        self.quality.setWordWrap(True)
        self.models.currentIndexChanged.connect(lambda: self.quality.setText(quality_line(self.models.currentData())))
        self.quality.setText(quality_line(self.models.currentData()))
        self.download_button = QPushButton("Download", self)
        self.cancel_button = QPushButton("Cancel download", self)
        self.cancel_button.hide()
        self.progress = QProgressBar(self)
        self.progress.hide()
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.choose_button = QPushButton("Choose a checkpoint file…", self)
        self.settings_button = QPushButton("Settings…", self)
        self.close_button = QPushButton("Later", self)

        row = QHBoxLayout()
        row.addWidget(self.models, 1)
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.choose_button)
        bottom.addWidget(self.settings_button)
        bottom.addStretch(1)
        bottom.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        for w in (intro,):
            layout.addWidget(w)
        layout.addLayout(row)
        layout.addWidget(self.quality)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(bottom)
        self.resize(620, 250)

        self.download_button.clicked.connect(self._on_download)
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        self.choose_button.clicked.connect(self._on_choose)
        self.settings_button.clicked.connect(self.settings_requested.emit)
        self.close_button.clicked.connect(self.reject)

    def _on_download(self) -> None:
        self.set_downloading(True)
        self.status.setText("Starting download…")
        self.download_requested.emit(self.models.currentData())

    def _on_choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM checkpoint", "", "Checkpoints (*.pth *.pt);;All files (*)")
        if path:
            self.file_chosen.emit(path)

    def set_downloading(self, active: bool) -> None:
        self.download_button.setVisible(not active)
        self.cancel_button.setVisible(active)
        self.progress.setVisible(active)
        self.models.setEnabled(not active)
        if active:
            self.progress.setRange(0, 0)

    def set_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
            self.status.setText(f"{done / 1e6:.0f} of {total / 1e6:.0f} MB")

    def download_ended(self, message: str) -> None:
        self.set_downloading(False)
        self.status.setText(message)
