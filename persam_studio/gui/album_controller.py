"""The open album: which image is shown, its state saved after every action.

Each change of the image on the canvas is stored in the album's record at
once and written to the sidecar by :class:`~persam_studio.gui.autosave.AlbumSaver`
in the I/O lane (bursts coalesced; flushed when the album closes). Thumbnails are decoded in the I/O lane (to numpy, never Qt:
see :mod:`persam_studio.gui.thumbnails`); unreadable photos are marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PySide6.QtCore import QObject, Signal

from persam_studio.core.io.album import Album, ImageRecord, ImageState, empty_trash
from persam_studio.core.errors import PersamError
from persam_studio.core.types import REVIEW_THRESHOLD
from persam_studio.gui import persist
from persam_studio.gui.album_panel import THUMB, AlbumPanel
from persam_studio.gui.autosave import AlbumSaver
from persam_studio.gui.backend import Propagated
from persam_studio.gui.editing import Bitmap, EditState
from persam_studio.gui.image_controller import ImageController
from persam_studio.gui.references import ForgetReferences
from persam_studio.gui.subject_backend import Selected
from persam_studio.gui.thumbnails import thumbnail_job, unreadable_reason
from persam_studio.gui.workers import LOW, Lane

__all__ = ["AlbumController", "PROPAGATABLE", "REVIEW_THRESHOLD"]
#: States that propagation may overwrite (never the user's own work).
PROPAGATABLE = (ImageState.UNTOUCHED, ImageState.PROPAGATED, ImageState.NEEDS_REVIEW)


class AlbumController(QObject):
    """See the module docstring."""

    album_opened = Signal(object)  # Album
    current_changed = Signal(int)
    record_changed = Signal(int)
    references_changed = Signal(int)  # how many
    message = Signal(str)
    error = Signal(str)

    def __init__(self, panel: AlbumPanel, images: ImageController, io_lane: Lane, parent=None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.images = images
        self.io_lane = io_lane
        self.album: Album | None = None
        self.current = -1
        self._stored: EditState | None = None  # last state written for the current image
        self._save_error_shown = False
        self.saver = AlbumSaver(io_lane, self)
        self.saver.failed.connect(self._on_save_failed)
        panel.image_activated.connect(self.show)
        images.state_changed.connect(self._on_state_changed)

    # -- opening -------------------------------------------------------------------

    def open(self, inputs: Sequence[str | Path]) -> bool:
        """Open a folder or images; restores the saved state. False if nothing to show."""
        from persam_studio.core.io.imageio import list_images

        try:
            paths = list_images(list(inputs))
        except PersamError as exc:
            self.error.emit(str(exc))
            return False
        if not paths:
            self.error.emit(f"{inputs[0] if inputs else 'album'}: no images found")
            return False
        root = Path(inputs[0]) if len(inputs) == 1 and Path(inputs[0]).is_dir() else None
        self.close()
        self.album = Album.open(paths, root=root)
        self._save_error_shown = False
        records = self.album.records
        self.panel.set_images([Path(r.path).name for r in records], [r.state for r in records],
                              [r.confidence for r in records])
        for row, record in enumerate(records):
            self.io_lane.submit(
                thumbnail_job, self.album.path_of(record), THUMB, self.album, record, priority=LOW,
                on_done=lambda res, row=row: self.panel.set_thumbnail(row, *res),
                on_error=lambda exc, row=row: self.panel.set_unreadable(row, unreadable_reason(exc)),
            )
        self.current = -1
        self.album_opened.emit(self.album)
        self.references_changed.emit(len(self.album.references))
        self.show(0)
        return True

    def close(self) -> None:
        """Write what is pending, empty the trash of forgotten references, forget histories."""
        if self.album is None:
            return
        self.saver.flush()
        empty_trash(self.album.sidecar)
        self.images.forget_histories()

    @property
    def record(self) -> ImageRecord | None:
        if self.album is None or not 0 <= self.current < len(self.album.records):
            return None
        return self.album.records[self.current]

    def show(self, index: int) -> None:
        """Put image ``index`` on the canvas (and encode its neighbours ahead)."""
        if self.album is None or not 0 <= index < len(self.album.records) or index == self.current:
            return
        self.current = index
        self.panel.select_row(index)
        record = self.album.records[index]
        self._stored = None
        n = len(self.album.records)
        ahead = [self.album.path_of(self.album.records[i]) for i in (index + 1, index - 1) if 0 <= i < n]
        album = self.album

        def restore(size: tuple[int, int], disp: tuple[int, int]) -> EditState:
            record.size = size
            state = persist.restore(album, record, size, disp)
            self._stored = state
            return state

        self.images.open(album.path_of(record), restore, ahead)
        self.current_changed.emit(index)

    def step(self, delta: int) -> None:
        if self.album is not None and self.album.records:
            self.show(max(0, min(len(self.album.records) - 1, self.current + delta)))

    # -- saving -----------------------------------------------------------------------

    def _on_state_changed(self, path: Path, state: EditState, previous: EditState) -> None:
        record = self.record
        if record is None or self.album.path_of(record) != path:
            return
        if state.pending:
            # Its mask is being computed: saved when the answer comes (a crash
            # meanwhile loses only this action), and the thumbnail keeps the
            # previous mask instead of blinking empty.
            return
        self._save(record, state, self.images.session.mask())

    def _save(self, record: ImageRecord, state: EditState, mask: np.ndarray | None,
              image_state: ImageState | None = None) -> None:
        is_current = record is self.record
        writes = persist.store(self.album, record, state, mask, self._stored if is_current else None, image_state)
        self.saver.schedule(self.album, writes)
        if is_current:
            self._stored = state
        row = self.album.records.index(record)
        self.panel.set_state(row, record.state, mask, record.confidence)
        self.record_changed.emit(row)

    def _on_save_failed(self, message: str) -> None:
        if not self._save_error_shown:
            self._save_error_shown = True
            self.error.emit(f"{message} (changes are kept only until the app closes)")

    def accept_current(self) -> None:
        """Mark the current image's mask as approved."""
        record, state = self.record, self.images.state
        if record is None or state is None or state.is_empty:
            self.message.emit("nothing to accept: the image has no mask")
            return
        self._save(record, state, self.images.session.mask(), ImageState.ACCEPTED)

    def load_mask_file(self, path: Path) -> None:
        """Use a mask file as the current image's mask (undoable)."""
        from persam_studio.core.io.imageio import load_mask

        session = self.images.session
        if session is None:
            return
        try:
            mask = load_mask(path, session.original_size)
        except PersamError as exc:
            self.error.emit(str(exc))
            return
        self.images.set_state(EditState(bitmap=Bitmap(mask)), "Load mask")

    # -- references and propagation results ---------------------------------------------------

    def add_reference(self, name: str, mask_file: Path) -> None:
        """Record ``mask_file`` (written under references/) for the current image."""
        record = self.record
        if record is None:
            return
        self.album.add_reference(name, record, mask_file)
        self.album.subject = name
        self.saver.schedule(self.album)
        self.references_changed.emit(len(self.album.references))
        n = sum(r.name == name for r in self.album.references)
        self.message.emit(f"reference added for {name!r} ({n} reference{'s' if n != 1 else ''} of it)")

    def set_subject(self, name: str) -> None:
        """Remember the subject's name with the album (restored on reopening)."""
        name = name.strip()
        if self.album is not None and name and name != self.album.subject:
            self.album.subject = name
            self.saver.schedule(self.album)

    def forget_references(self) -> bool:
        """Forget every reference, undoably (Ctrl+Z); the caller has asked the user."""
        if self.album is None or not self.album.references:
            return False
        command = ForgetReferences(self.album, self.saver,
                                   lambda: self.references_changed.emit(len(self.album.references)),
                                   self.message.emit)
        stack = self.images.undo_group.activeStack()
        if stack is None:
            command.redo()  # no photo on the canvas: not undoable, still reported
        else:
            stack.push(command)
        return True

    # -- review ---------------------------------------------------------------------------

    def to_review(self) -> list[int]:
        """Rows flagged *needs review*, in album order."""
        if self.album is None:
            return []
        return [i for i, r in enumerate(self.album.records) if r.state == ImageState.NEEDS_REVIEW]

    def step_review(self, delta: int) -> None:
        """Show the next (``delta`` 1) or previous (-1) photo to review; wraps around."""
        rows = self.to_review()
        if not rows:
            self.message.emit("no photo needs review")
            return
        if delta > 0:
            after = [r for r in rows if r > self.current]
            target, wrapped = (after[0], False) if after else (rows[0], True)
        else:
            before = [r for r in rows if r < self.current]
            target, wrapped = (before[-1], False) if before else (rows[-1], True)
        if target == self.current:
            self.message.emit("this is the only photo that needs review")
            return
        self.show(target)
        where = f"{rows.index(target) + 1} of {len(rows)} to review"
        self.message.emit(f"{where} (wrapped around)" if wrapped else where)

    def propagation_targets(self) -> list[ImageRecord]:
        """Images propagation may write: not the user's work, not a reference image."""
        if self.album is None:
            return []
        refs = {r.image for r in self.album.references}
        return [r for r in self.album.records if r.state in PROPAGATABLE and r.path not in refs]

    def apply_propagated(self, item: Propagated) -> None:
        """Store one propagation result (unless the user touched the image meanwhile)."""
        if item.prediction is None:
            self._apply_found(item.path, item.error)
            return
        flag = ImageState.PROPAGATED if item.confidence >= REVIEW_THRESHOLD else ImageState.NEEDS_REVIEW
        self._apply_found(item.path, item.error, item.original_size,
                          EditState(prediction=item.prediction, confidence=item.confidence),
                          flag, item.prediction.display_mask(0))

    def _apply_found(self, path: Path, error: str | None, size: tuple[int, int] | None = None,
                     state: EditState | None = None, flag: ImageState | None = None,
                     display: np.ndarray | None = None) -> None:
        """Store a mask a job found for ``path`` (``state`` None: it failed, ``error`` says why).

        Never over the user's work: a photo masked or accepted meanwhile is left alone.
        """
        index = self.album.index_of(path) if self.album else None
        if index is None:
            return
        record = self.album.records[index]
        if record.state not in PROPAGATABLE or state is None:
            if error:
                self.message.emit(f"{path.name}: {error}")
            return
        record.size = size
        if record is not self.record:
            self.images.forget_history(self.album.path_of(record))  # its base changed under it
        if record is self.record and self.images.session is not None:
            self.images.replace_state(state)
            display = self.images.session.mask()
        self._save(record, state, display, flag)

    def selection_targets(self) -> list[ImageRecord]:
        """Photos *Select subject in all photos* may write: those propagation may write."""
        if self.album is None:
            return []
        return [r for r in self.album.records if r.state in PROPAGATABLE]

    def apply_selected(self, item: Selected) -> None:
        """Store one photo's subject (unless the user masked or accepted it meanwhile).

        Flagged *propagated* (found) or *needs review* (the subject model was
        unsure: :meth:`~persam_studio.core.segment.selection.Selection.is_doubtful`).
        """
        if item.bitmap is None:
            self._apply_found(item.path, item.error)
            return
        flag = ImageState.NEEDS_REVIEW if item.doubtful else ImageState.PROPAGATED
        self._apply_found(item.path, item.error, item.original_size,
                          EditState(bitmap=item.bitmap, subject=item.base, confidence=item.base.confidence),
                          flag, item.display)
