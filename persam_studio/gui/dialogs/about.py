"""Help > About: the version, the model in use and where the app keeps things.

What a user needs in a bug report or to find their files: which model and
device answer the clicks, which checkpoint file, where embeddings are
cached, which album is open. Paths are selectable for copying.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

import persam_studio
from persam_studio.gui.backend import EngineInfo, ModelChoice
from persam_studio.gui.icon import app_icon

NOT_LOADED = "not loaded yet"


@dataclass(frozen=True)
class AboutInfo:
    """The lines of the About box, as text."""

    version: str
    model_type: str
    device: str
    checkpoint: str
    cache_dir: str
    album: str


def about_info(info: EngineInfo | None, choice: ModelChoice, album_root: Path | None) -> AboutInfo:
    """What the loaded model reports, else what Settings asks for."""
    if info is not None:
        model_type, device, checkpoint = info.model_type, info.device, info.path
        cache_dir = info.cache_dir or choice.cache_dir
    else:
        model_type = f"{choice.model_type or 'automatic'} ({NOT_LOADED})"
        device = choice.device or "automatic"
        checkpoint = choice.checkpoint or NOT_LOADED
        cache_dir = choice.cache_dir
    # The default cache folder is decided by the core, which is only imported
    # (with torch) when the model loads; the GUI thread does not import it.
    return AboutInfo(
        version=persam_studio.__version__,
        model_type=model_type,
        device=device,
        checkpoint=checkpoint,
        cache_dir=cache_dir or f"default ({NOT_LOADED})",
        album=str(album_root) if album_root is not None else "none open",
    )


class AboutDialog(QDialog):
    """Non-modal: the app stays usable while it is open."""

    def __init__(self, about: AboutInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About PerSAM Studio")
        self.about = about
        icon = QLabel(self)
        icon.setPixmap(app_icon().pixmap(64, 64))
        title = QLabel(
            f"<b style='font-size:15pt'>PerSAM Studio</b><br>version {about.version}<br>"
            "Click-to-segment and one-shot personalised segmentation<br>for photo albums, on Segment Anything.",
            self,
        )
        head = QHBoxLayout()
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(title, 1)
        form = QFormLayout()
        self.fields: dict[str, QLabel] = {}
        for key, label, value in (
            ("model_type", "Model", about.model_type),
            ("device", "Device", about.device),
            ("checkpoint", "Checkpoint", about.checkpoint),
            ("cache_dir", "Embedding cache", about.cache_dir),
            ("album", "Album", about.album),
        ):
            field = QLabel(value, self)
            field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            field.setWordWrap(True)
            form.addRow(f"{label}:", field)
            self.fields[key] = field
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addSpacing(8)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(520)

    def text(self) -> str:
        """Everything the box shows, as plain lines (tests, copying)."""
        return "\n".join(
            [f"PerSAM Studio {self.about.version}"]
            + [f"{k}: {f.text()}" for k, f in self.fields.items()]
        )
