"""The status bar: image size, zoom, model, last mask time, busy and job progress."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar


class StatusBar(QStatusBar):
    """Permanent fields on the right; transient messages on the left."""

    cancel_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.busy = QProgressBar(self)
        self.busy.setRange(0, 0)  # indeterminate: "the model is working"
        self.busy.setMaximumWidth(80)
        self.busy.setMaximumHeight(14)
        self.busy.setToolTip("the model is working")
        self.busy.hide()
        self.job_label = QLabel(self)
        self.job = QProgressBar(self)
        self.job.setMaximumWidth(200)
        self.job.setFormat("%v / %m")
        self.cancel = QPushButton("Cancel", self)
        self.cancel.clicked.connect(self.cancel_requested.emit)
        self.size_label = QLabel(self)
        self.zoom_label = QLabel(self)
        self.model_label = QLabel("model: loading…", self)
        self.time_label = QLabel(self)
        self._label = ""
        for w in (self.job_label, self.job, self.cancel):
            self.addPermanentWidget(w)
            w.hide()
        for w in (self.busy, self.size_label, self.zoom_label, self.model_label, self.time_label):
            self.addPermanentWidget(w)

    def set_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)

    def set_image_size(self, size: tuple[int, int] | None) -> None:
        self.size_label.setText("" if size is None else f"{size[1]} × {size[0]} px")

    def set_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f} %")

    def set_model(self, text: str, tooltip: str = "") -> None:
        self.model_label.setText(text)
        self.model_label.setToolTip(tooltip)

    def set_mask_time(self, seconds: float) -> None:
        self.time_label.setText(f"mask {seconds * 1000:.0f} ms")

    def job_started(self, label: str) -> None:
        self._label = label
        self.job_label.setText(label)
        self.job.setRange(0, 0)
        for w in (self.job_label, self.job, self.cancel):
            w.show()

    def job_progressed(self, done: int, total: int) -> None:
        self.job_label.setText(self._label)
        self.job.setRange(0, max(total, 1))
        self.job.setValue(done)

    def job_fitting(self, label: str, done: int, total: int) -> None:
        """PerSAM-F's fitting, before the first photo: its own steps."""
        self.job_label.setText(f"{label}: fitting PerSAM-F")
        self.job.setRange(0, max(total, 1))
        self.job.setValue(done)

    def job_finished(self, label: str, summary: str) -> None:
        for w in (self.job_label, self.job, self.cancel):
            w.hide()
        text = f"{label}: {summary}"
        if len(text) > 90:  # the whole summary, every error, is in the Log panel
            head = summary.split(" error(s): ")[0]
            text = f"{label}: {head} error(s) (see Log)" if head != summary else text[:78].rstrip() + "… (see Log)"
        self.showMessage(text, 15000)
