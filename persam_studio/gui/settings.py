"""What the app remembers between runs (QSettings).

Model choice (checkpoint, type, device, cache folder), the last folder,
window geometry and view preferences. Tests pass their own file so the
user's settings are never read or written.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from persam_studio.gui.backend import ModelChoice

ORGANIZATION = "PerSAM Studio"
APPLICATION = "PerSAM Studio"


class AppSettings:
    """Typed access to the app's QSettings.

    Args:
        path: an INI file to use instead of the platform's settings store.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            self.qsettings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)
        else:
            self.qsettings = QSettings(str(path), QSettings.Format.IniFormat)

    def _str(self, key: str, default: str = "") -> str:
        value = self.qsettings.value(key, default)
        return "" if value is None else str(value)

    # -- model -------------------------------------------------------------------

    @property
    def model_choice(self) -> ModelChoice:
        return ModelChoice(
            checkpoint=self._str("model/checkpoint"),
            model_type=self._str("model/type"),
            device=self._str("model/device"),
            cache_dir=self._str("model/cache_dir"),
        )

    @model_choice.setter
    def model_choice(self, choice: ModelChoice) -> None:
        self.qsettings.setValue("model/checkpoint", choice.checkpoint)
        self.qsettings.setValue("model/type", choice.model_type)
        self.qsettings.setValue("model/device", choice.device)
        self.qsettings.setValue("model/cache_dir", choice.cache_dir)
        self.qsettings.sync()

    @property
    def subject_model(self) -> str:
        """*Select subject*'s model: an ONNX file (or a catalogue name); empty: automatic."""
        return self._str("model/subject_model")

    @subject_model.setter
    def subject_model(self, value: str) -> None:
        self.qsettings.setValue("model/subject_model", value)
        self.qsettings.sync()

    # -- places and window -----------------------------------------------------------

    @property
    def last_folder(self) -> str:
        return self._str("session/last_folder")

    @last_folder.setter
    def last_folder(self, folder: str) -> None:
        self.qsettings.setValue("session/last_folder", folder)

    def geometry(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self.qsettings.value("window/geometry"), self.qsettings.value("window/state")

    def set_geometry(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", geometry)
        self.qsettings.setValue("window/state", state)
        self.qsettings.sync()

    # -- view ------------------------------------------------------------------------------

    @property
    def opacity(self) -> float:
        try:
            return float(self.qsettings.value("view/opacity", 0.5))
        except (TypeError, ValueError):
            return 0.5

    @opacity.setter
    def opacity(self, value: float) -> None:
        self.qsettings.setValue("view/opacity", float(value))

    @property
    def outline(self) -> bool:
        return str(self.qsettings.value("view/outline", "true")).lower() in ("true", "1")

    @outline.setter
    def outline(self, value: bool) -> None:
        self.qsettings.setValue("view/outline", bool(value))

    # -- background (the colour and picture last chosen; the choice itself starts at none) --

    @property
    def background_colour(self) -> str:
        """"#rrggbb", white when never chosen."""
        return self._str("background/colour", "#ffffff")

    @background_colour.setter
    def background_colour(self, value: str) -> None:
        self.qsettings.setValue("background/colour", value)

    @property
    def background_picture(self) -> str:
        """The picture file last chosen, "" when none."""
        return self._str("background/picture", "")

    @background_picture.setter
    def background_picture(self, value: str) -> None:
        self.qsettings.setValue("background/picture", value)

    def sync(self) -> None:
        self.qsettings.sync()
