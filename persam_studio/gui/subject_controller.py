"""*Select subject*: the current photo's mask with no click, or every photo's as an album job.

The subject model runs in the model lane (see :mod:`persam_studio.gui.subject_backend`).
On the photo on the canvas the result is an ordinary, undoable edit: a
bitmap base plus the subject's SAM prompt, so the next click refines the
subject through SAM (:class:`~persam_studio.gui.editing.SubjectBase`). The
album job is run by :class:`~persam_studio.gui.jobs_controller.JobsController`
and never touches photos the user masked or accepted.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Signal

from persam_studio.core.errors import SubjectModelError
from persam_studio.gui import subject_backend
from persam_studio.gui.editing import EditState
from persam_studio.gui.image_controller import ImageController
from persam_studio.gui.jobs_controller import JobsController
from persam_studio.gui.subject_backend import HOW_TO_GET, Selected, SubjectModelHolder
from persam_studio.gui.workers import HIGH, Lane


class SubjectController(QObject):
    """See the module docstring.

    Args:
        choice: returns (Settings' subject model, subject-map cache folder);
            read at each use, so a Settings change takes effect at once.
    """

    missing = Signal(str)  # no usable subject model: what happened and how to get one
    message = Signal(str)
    selected = Signal(object)  # Selected, applied to the photo on the canvas

    def __init__(self, images: ImageController, jobs: JobsController, model_lane: Lane,
                 choice: Callable[[], tuple[str, str]], parent=None) -> None:
        super().__init__(parent)
        self.images, self.jobs, self.lane, self._choice = images, jobs, model_lane, choice
        self._holder: SubjectModelHolder | None = None

    @property
    def holder(self) -> SubjectModelHolder:
        """The model of the current Settings choice (a new one when the choice changed)."""
        choice, cache_dir = self._choice()
        h = self._holder
        if h is None or (h.choice, h.cache_dir) != (choice, cache_dir):
            h = self._holder = SubjectModelHolder(choice, cache_dir)
        return h

    def select_current(self) -> bool:
        """Select the subject of the photo on the canvas (undoable)."""
        session, pixels = self.images.session, self.images.pixels
        if session is None or pixels is None:
            self.message.emit("open a photo first")
            return False
        self.message.emit("finding the subject…")
        self.lane.submit(
            subject_backend.select, self.holder, session.path, pixels, self.images.display_cap,
            slot="subject", priority=HIGH,
            on_done=lambda sel, s=session: self._on_selected(s, sel),
            on_error=self._on_error,
        )
        return True

    def select_all(self) -> bool:
        """Open the model (in the lane), then run the album job."""
        if self.jobs.albums.album is None or self.jobs.busy:
            return False
        holder = self.holder
        self.lane.submit(subject_backend.open_model, holder, priority=HIGH,
                         on_done=lambda _name, h=holder: self.jobs.select_all(h), on_error=self._on_error)
        return True

    def _on_selected(self, session, sel: Selected) -> None:
        if session is not self.images.session:
            return  # the user has moved on to another photo
        state = EditState(bitmap=sel.bitmap, subject=sel.base)
        self.images.set_state(state, "Select subject")
        conf = sel.base.confidence
        if sel.coverage == 0.0:
            self.message.emit("no subject found in this photo")
        elif sel.doubtful:
            self.message.emit(f"subject selected, but the model was unsure along its edge (confidence {conf:.2f}): "
                              "check it, click to refine")
        else:
            self.message.emit(f"subject selected (confidence {conf:.2f}); click to refine")
        self.selected.emit(sel)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, SubjectModelError):
            self.missing.emit(f"Select subject needs a subject model: {exc}.\n\n{HOW_TO_GET}")
        else:
            self.message.emit(f"could not select the subject: {exc}")
