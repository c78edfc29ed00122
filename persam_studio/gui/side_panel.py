"""The right-hand panel: view settings, personalisation controls (targets), review, state legend."""

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
from persam_studio.core.personalize.methods import DEFAULT_MODE, MAX_INSTANCES
from persam_studio.core.types import REVIEW_THRESHOLD
from persam_studio.gui.album_panel import STATE_COLORS, STATE_LABELS
from persam_studio.gui.backend import PropagateOptions

#: PerSAM-F first: it is the default (DEFAULT_MODE), much more accurate on the smaller models.
METHODS = (("PerSAM-F (fits 2 weights; default, more accurate)", "persam_f"),
           ("PerSAM (training-free)", "persam"))
ALL_INSTANCES = "All"


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
    subject_edited = Signal(str)  # the name, when the user has finished typing it
    review_step_requested = Signal(int)  # +1 next, -1 previous photo to review
    review_only_toggled = Signal(bool)
    propagate_requested = Signal(object)  # PropagateOptions
    clear_references_requested = Signal()
    accept_requested = Signal()

    def __init__(self, opacity: float, outline: bool, targets: QWidget, parent=None) -> None:
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
        self.targets = targets  # the targets, their reference counts and thumbnails
        targets.setParent(person)
        self.method = QComboBox(person)
        for label, value in METHODS:
            self.method.addItem(label, value)
        self.name.setToolTip("Name of what the reference shows; references with one name form one target")
        self.method.setToolTip("PerSAM-F fits two weights on the references (about a second each; the default); "
                               "PerSAM needs no training")
        self.set_method(DEFAULT_MODE)
        self.exact = QCheckBox("Exact fit (slow)", person)
        self.exact.setToolTip("PerSAM-F: fit on the full-size masks instead of the fast fit (seconds to minutes "
                              "per reference; a little more accurate)")
        self.instances = QComboBox(person)
        for n in range(1, MAX_INSTANCES + 1):
            self.instances.addItem(str(n), n)
        self.instances.addItem(ALL_INSTANCES, None)
        self.instances.setToolTip("How many of the subject to look for in each photo (\"both of my cats\"); "
                                  "the photo's mask holds them all")
        self.propagate_button = QPushButton("Propagate to album", person)
        self.clear_button = QPushButton("Forget references", person)
        self.clear_button.setToolTip("Drop every reference of this album (masks already made stay)")
        self.accept_button = QPushButton("Accept mask", person)
        pf = QFormLayout(person)
        pf.addRow("Subject", self.name)
        pf.addRow(self.use_button)
        pf.addRow(self.targets)
        pf.addRow("Method", self.method)
        pf.addRow("", self.exact)
        pf.addRow("Instances", self.instances)
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

        review = QGroupBox("Review", self)
        self.confidence = QLabel("", review)
        self.confidence.setWordWrap(True)
        self.previous_review = QPushButton("◀ Previous", review)
        self.next_review = QPushButton("Next to review ▶", review)
        self.review_only = QCheckBox("Show only photos to review", review)
        self.review_count = QLabel("", review)
        rv = QVBoxLayout(review)
        rv.addWidget(self.confidence)
        buttons = QHBoxLayout()
        buttons.addWidget(self.previous_review)
        buttons.addWidget(self.next_review)
        rv.addLayout(buttons)
        rv.addWidget(self.review_only)
        rv.addWidget(self.review_count)

        layout = QVBoxLayout(self)
        layout.addWidget(view)
        layout.addWidget(person)
        layout.addWidget(review)
        layout.addWidget(legend)
        layout.addStretch(1)

        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        self.outline.toggled.connect(self.outline_toggled.emit)
        self.brush.valueChanged.connect(self.brush_changed.emit)
        self.use_button.clicked.connect(lambda: self.reference_requested.emit(self.name.text()))
        self.name.editingFinished.connect(lambda: self.subject_edited.emit(self.name.text()))
        self.previous_review.clicked.connect(lambda: self.review_step_requested.emit(-1))
        self.next_review.clicked.connect(lambda: self.review_step_requested.emit(1))
        self.review_only.toggled.connect(self.review_only_toggled.emit)
        self.method.currentIndexChanged.connect(self._on_method_changed)
        self.propagate_button.clicked.connect(lambda: self.propagate_requested.emit(self.propagate_options()))
        self.clear_button.clicked.connect(self.clear_references_requested.emit)
        self.accept_button.clicked.connect(self.accept_requested.emit)

    def set_subject(self, name: str) -> None:
        self.name.setText(name)

    def set_confidence(self, state: ImageState | None, confidence: float | None) -> None:
        """The photo on the canvas: PerSAM's confidence when it made the mask."""
        if confidence is None:
            self.confidence.setText("Confidence: — (not a propagated mask)")
        else:
            note = "below" if confidence < REVIEW_THRESHOLD else "at or above"
            flagged = " — needs review" if state == ImageState.NEEDS_REVIEW else ""
            self.confidence.setText(f"Confidence: {confidence:.2f} ({note} {REVIEW_THRESHOLD:.1f}){flagged}")

    def set_review_count(self, n: int) -> None:
        self.review_count.setText("No photo needs review" if n == 0 else f"{n} photo{'s' if n != 1 else ''} to review")

    def set_method(self, method: str) -> None:
        """Show ``method``; an unknown or empty one (a new album) is the default, PerSAM-F."""
        index = self.method.findData(method)
        self.method.setCurrentIndex(index if index >= 0 else self.method.findData(DEFAULT_MODE))

    def set_options(self, method: str, exact: bool, instances: int | None) -> None:
        """Show an album's last propagation choices: method (:meth:`set_method`),
        exact fit, instances per photo (None: all; one not offered: 1)."""
        self.set_method(method)
        self.exact.setChecked(exact)
        index = self.instances.findData(instances)
        self.instances.setCurrentIndex(index if index >= 0 else self.instances.findData(1))

    def propagate_options(self) -> PropagateOptions:
        """The method, exact fit (PerSAM-F only) and instances chosen."""
        method = self.method.currentData()
        return PropagateOptions(method, self.exact.isChecked() and method == "persam_f", self.instances.currentData())

    def _on_method_changed(self) -> None:
        self.exact.setEnabled(self.method.currentData() == "persam_f")
