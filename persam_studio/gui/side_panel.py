"""The right-hand panel: view settings, personalisation controls, state legend."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from persam_studio.core.io.album import ImageState
from persam_studio.gui.album_panel import STATE_COLORS, STATE_LABELS

METHODS = (("PerSAM (training-free)", "persam"), ("PerSAM-F (fits 2 weights, better on parts)", "persam_f"))


def _swatch(color: QColor) -> QLabel:
    pix = QPixmap(12, 12)
    pix.fill(color)
    label = QLabel()
    label.setPixmap(pix)
    return label


class SidePanel(QWidget):
    """Emits what the user asks for; holds no state of its own."""

    opacity_changed = Signal(float)
    outline_toggled = Signal(bool)
    brush_changed = Signal(int)
    reference_requested = Signal(str)  # subject name
    propagate_requested = Signal(str)  # method
    clear_references_requested = Signal()
    accept_requested = Signal()

    def __init__(self, opacity: float, outline: bool, parent=None) -> None:
        super().__init__(parent)
        view = QGroupBox("View", self)
        self.opacity = QSlider(Qt.Orientation.Horizontal, view)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(round(opacity * 100)))
        self.outline = QCheckBox("Outline", view)
        self.outline.setChecked(outline)
        self.brush = QSlider(Qt.Orientation.Horizontal, view)
        self.brush.setRange(4, 200)
        self.brush.setValue(24)
        self.opacity.setToolTip("How strongly the blue mask covers the photo (0: hidden)")
        self.outline.setToolTip("Draw a white line along the mask's edge")
        vf = QFormLayout(view)
        vf.addRow("Mask opacity", self.opacity)
        vf.addRow("", self.outline)
        vf.addRow("Brush size", self.brush)

        person = QGroupBox("Personalize", self)
        self.name = QLineEdit("subject", person)
        self.name.setPlaceholderText("subject name")
        self.use_button = QPushButton("Use as reference", person)
        self.references = QLabel("No reference yet", person)
        self.method = QComboBox(person)
        for label, value in METHODS:
            self.method.addItem(label, value)
        self.name.setToolTip("Name of what the reference shows; references with one name form one target")
        self.method.setToolTip("PerSAM needs no training; PerSAM-F fits two weights on the references")
        self.propagate_button = QPushButton("Propagate to album", person)
        self.clear_button = QPushButton("Forget references", person)
        self.clear_button.setToolTip("Drop every reference of this album (masks already made stay)")
        self.accept_button = QPushButton("Accept mask", person)
        pf = QFormLayout(person)
        pf.addRow("Subject", self.name)
        pf.addRow(self.use_button)
        pf.addRow(self.references)
        pf.addRow("Method", self.method)
        pf.addRow(self.propagate_button)
        pf.addRow(self.clear_button)
        pf.addRow(self.accept_button)

        legend = QGroupBox("Image states", self)
        lv = QVBoxLayout(legend)
        for state in ImageState:
            row = QHBoxLayout()
            row.addWidget(_swatch(STATE_COLORS[state]))
            row.addWidget(QLabel(STATE_LABELS[state]))
            row.addStretch(1)
            lv.addLayout(row)

        layout = QVBoxLayout(self)
        layout.addWidget(view)
        layout.addWidget(person)
        layout.addWidget(legend)
        layout.addStretch(1)

        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        self.outline.toggled.connect(self.outline_toggled.emit)
        self.brush.valueChanged.connect(self.brush_changed.emit)
        self.use_button.clicked.connect(lambda: self.reference_requested.emit(self.name.text()))
        self.propagate_button.clicked.connect(lambda: self.propagate_requested.emit(self.method.currentData()))
        self.clear_button.clicked.connect(self.clear_references_requested.emit)
        self.accept_button.clicked.connect(self.accept_requested.emit)

    def set_reference_count(self, n: int) -> None:
        self.references.setText("No reference yet" if n == 0 else f"{n} reference(s)")

    def set_method(self, method: str) -> None:
        self.method.setCurrentIndex(max(0, self.method.findData(method)))
