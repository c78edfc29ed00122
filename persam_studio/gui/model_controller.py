"""Loading the model in the background, and what to do without one.

The window opens at once; the model loads in the model lane. With no
checkpoint anywhere, :attr:`ModelController.checkpoint_missing` fires and the
window offers to download one or to choose a file (the app stays usable for
browsing, and loads the model as soon as one is chosen).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QObject, Signal

from persam_studio.gui import backend
from persam_studio.gui.backend import EngineInfo, ModelChoice
from persam_studio.gui.launch import ModelOrigin
from persam_studio.gui.workers import HIGH, Job, Lane

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.segment.engine import Engine

EngineFactory = Callable[[ModelChoice], "tuple[Engine, EngineInfo]"]


class NoCheckpoint(Exception):
    """No checkpoint was found where the app looks for one."""


def open_engine(choice: ModelChoice) -> tuple[Engine, EngineInfo]:
    """The default factory: find the checkpoint, load it (model lane)."""
    if backend.find_checkpoint(choice) is None:
        raise NoCheckpoint()
    return backend.open_engine(choice)


class ModelController(QObject):
    """Owns the engine; see the module docstring.

    Args:
        factory: builds (engine, info) from a :class:`ModelChoice`; tests
            pass one that returns a small random SAM.
    """

    loading = Signal()
    engine_ready = Signal(object, object)  # engine, EngineInfo
    checkpoint_missing = Signal()
    load_failed = Signal(str)
    download_progressed = Signal(int, int)
    download_finished = Signal(object)  # Path or None when cancelled
    download_failed = Signal(str)

    def __init__(self, model_lane: Lane, io_lane: Lane, factory: EngineFactory | None = None, parent=None) -> None:
        super().__init__(parent)
        self.model_lane = model_lane
        self.io_lane = io_lane
        self.factory = factory or open_engine
        self.engine: Engine | None = None
        self.info: EngineInfo | None = None
        self.origin: ModelOrigin | None = None  # of the choice being loaded or loaded
        self._download: Job | None = None

    def load(self, choice: ModelChoice, origin: ModelOrigin | None = None) -> None:
        """(Re)load the model for ``choice`` (whose parts came from ``origin``) in the background."""
        self.origin = origin
        self.loading.emit()
        self.model_lane.submit(
            self.factory, choice, slot="model", priority=HIGH + 1,
            on_done=self._on_loaded, on_error=self._on_failed,
        )

    def _on_loaded(self, result: tuple[Engine, EngineInfo]) -> None:
        self.engine, self.info = result
        # torch, segment_anything and the model leave ~400k long-lived Python
        # objects; a full garbage collection walks them all (0.3 s on a busy
        # laptop) while holding the GIL, freezing the window mid-encode. They
        # live as long as the app: move them out of the collector's reach.
        gc.freeze()
        self.engine_ready.emit(self.engine, self.info)

    def _on_failed(self, exc: BaseException) -> None:
        if isinstance(exc, NoCheckpoint):
            self.checkpoint_missing.emit()
        else:
            self.load_failed.emit(str(exc))

    # -- download ------------------------------------------------------------------

    def download(self, model_type: str, dest_dir: Path | None = None) -> None:
        """Fetch an official checkpoint in the I/O lane, with progress and cancel."""
        from persam_studio.core.models import download

        def run(job: Job) -> Path:
            return download(model_type, dest_dir, progress=job.report, should_cancel=job.cancelled)

        self._download = self.io_lane.submit(
            run, with_job=True, slot="download",
            on_done=self._on_downloaded, on_error=self._on_download_error,
            on_progress=self.download_progressed.emit,
        )

    def cancel_download(self) -> None:
        if self._download is not None:
            self._download.cancel()
            if self._download.finished:  # dropped before it started
                self._download = None
                self.download_finished.emit(None)

    def _on_downloaded(self, path: Path) -> None:
        self._download = None
        self.download_finished.emit(path)

    def _on_download_error(self, exc: BaseException) -> None:
        self._download = None
        from persam_studio.core.errors import Cancelled

        if isinstance(exc, Cancelled):
            self.download_finished.emit(None)
        else:
            self.download_failed.emit(str(exc))
