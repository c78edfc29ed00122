"""The image being edited: loading, encoding, prompts, undo/redo.

Turns canvas gestures into :class:`EditState` changes pushed on the photo's
own ``QUndoStack`` (every prompt and edit is undoable; each photo keeps its
history while the album is open, for the :data:`HISTORIES` photos seen
last), and keeps the model busy
with the right things: the current image's encoding first, its prompt
requests (one queued at most: a new click replaces the queued one), then
neighbours encoded ahead. Answers for another image or an older request are
dropped (see :class:`~persam_studio.gui.session.ImageSession`). While a
new mask is computed the previous one stays on the canvas (no flicker).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoGroup, QUndoStack

from persam_studio.core.io.album import Stroke
from persam_studio.core.types import Box, Point
from persam_studio.gui import backend
from persam_studio.gui.canvas import Canvas
from persam_studio.gui.convert import rgb_to_qimage
from persam_studio.gui.editing import DISPLAY_CAP, EditState, Prediction, display_size
from persam_studio.gui.session import ImageSession, PromptRequest
from persam_studio.gui.workers import HIGH, NORMAL, Lane

if TYPE_CHECKING:  # pragma: no cover
    from persam_studio.core.io.imageio import LoadedImage
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.types import Embedding

#: Photos whose undo history is kept (each state holds bit-packed masks).
HISTORIES = 30

Restore = Callable[[tuple[int, int], tuple[int, int]], EditState]


class _StateCommand(QUndoCommand):
    def __init__(self, controller: ImageController, before: EditState, after: EditState, text: str) -> None:
        super().__init__(text)
        self.controller, self.before, self.after = controller, before, after

    def redo(self) -> None:
        self.controller._apply(self.after)

    def undo(self) -> None:
        self.controller._apply(self.before)


class ImageController(QObject):
    """See the module docstring. ``engine`` is set once the model is loaded."""

    image_opened = Signal(object)  # Path
    image_failed = Signal(object, str)  # Path, message
    mask_changed = Signal()
    state_changed = Signal(object, object, object)  # Path, EditState, previous EditState
    busy_changed = Signal(bool)
    embedding_ready = Signal(object)  # Path
    mask_timed = Signal(float)  # seconds of the last model answer
    failed = Signal(str)

    def __init__(self, canvas: Canvas, model_lane: Lane, io_lane: Lane, display_cap: int = DISPLAY_CAP) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self.model_lane = model_lane
        self.io_lane = io_lane
        self.display_cap = display_cap
        self.engine: Engine | None = None
        self.session: ImageSession | None = None
        self.pixels = None
        self.undo_group = QUndoGroup(self)
        self._histories: OrderedDict[Path, tuple[QUndoStack, EditState | None]] = OrderedDict()
        self._busy = False
        self._loading = False
        self._restore: Restore | None = None
        self._ahead: list[Path] = []

    # -- opening -----------------------------------------------------------------

    def open(self, path: Path, restore: Restore, ahead: list[Path] = ()) -> None:
        """Show ``path``; ``restore(original_size, display_size)`` gives its saved state."""
        self._keep_history()
        self.session = None
        self.pixels = None
        self._restore = restore
        self._ahead = list(ahead)
        stack, _ = self._histories.get(path, (None, None))
        if stack is None:
            stack = QUndoStack(self.undo_group)
            stack.setUndoLimit(200)
            self._histories[path] = (stack, None)
        self._histories.move_to_end(path)
        while len(self._histories) > HISTORIES:
            old, _ = self._histories.popitem(last=False)[1]
            old.deleteLater()
        self.undo_group.setActiveStack(stack)
        self._pending_path = path
        self._loading = True
        self.io_lane.submit(
            # Decoded to numpy in the worker; the QImage is made on this thread
            # (Qt image code in a worker can deadlock: see gui/thumbnails.py).
            backend.load_pixels, path, slot="load", priority=HIGH,
            on_done=lambda r, p=path: self._on_loaded(p, r),
            on_error=lambda e, p=path: self._on_load_failed(p, e),
        )
        self._set_busy(True)

    @property
    def undo_stack(self) -> QUndoStack:
        """The history of the photo on the canvas."""
        return self.undo_group.activeStack()

    def forget_history(self, path: Path) -> None:
        """Drop ``path``'s history (its mask was replaced from elsewhere)."""
        entry = self._histories.get(path)
        if entry is not None and (self.session is None or self.session.path != path):
            entry[0].deleteLater()
            del self._histories[path]

    def forget_histories(self) -> None:
        """Every photo's history (the album closes)."""
        self.undo_group.setActiveStack(None)
        for stack, _ in self._histories.values():
            stack.deleteLater()
        self._histories.clear()

    def _keep_history(self) -> None:
        """Remember the state the leaving photo's history ends in."""
        s = self.session
        if s is not None and s.path in self._histories:
            self._histories[s.path] = (self._histories[s.path][0], s.state)

    def set_engine(self, engine: Engine) -> None:
        """The model is ready (or changed): (re-)encode the image on screen."""
        self.engine = engine
        if self.session is not None and self.pixels is not None:
            self.session.embedding = None
            self.session.request = None
            self._encode()

    @property
    def path(self) -> Path | None:
        return None if self.session is None else self.session.path

    @property
    def state(self) -> EditState | None:
        return None if self.session is None else self.session.state

    def _on_loaded(self, path: Path, loaded: LoadedImage) -> None:
        if path != self._pending_path:
            return  # the user has moved on
        self._loading = False
        size = loaded.size
        disp = display_size(size, self.display_cap)
        self.pixels = loaded.pixels
        self.session = ImageSession(path, size, disp)
        # No copy: set_image turns it into a pixmap at once, and self.pixels
        # keeps the array alive meanwhile.
        self.canvas.set_image(rgb_to_qimage(loaded.pixels, copy=False))
        state = self._restore(size, disp) if self._restore else EditState()
        stack, kept = self._histories.get(path, (None, None))
        if kept is not None and stack is not None and stack.count():
            # Back on a photo with a history: continue from the state it ends
            # in (the saved record holds the same mask; this one also keeps
            # SAM's other candidates and the answers undo returns to).
            state = kept
        self.session.set_state(state)
        self._refresh()
        self.image_opened.emit(path)
        self._encode()

    def _on_load_failed(self, path: Path, exc: BaseException) -> None:
        if path == self._pending_path:
            self._loading = False
            self._set_busy(False)
            self.canvas.set_image(None)
            self.image_failed.emit(path, str(exc))

    def _encode(self) -> None:
        if self.engine is None or self.session is None:
            self._update_busy()
            return
        session = self.session
        self.model_lane.submit(
            backend.encode, self.engine, self.pixels, slot="encode", priority=HIGH,
            on_done=lambda emb, s=session: self._on_embedding(s, emb),
            on_error=self._on_model_error,
        )
        for i, p in enumerate(self._ahead):
            self.model_lane.submit(backend.encode_file, self.engine, p, slot=f"ahead{i}", priority=NORMAL)
        self._update_busy()

    def _on_embedding(self, session: ImageSession, embedding: Embedding) -> None:
        if session is not self.session:
            return
        request = session.set_embedding(embedding)
        self.embedding_ready.emit(session.path)
        if request is not None:
            self._submit(request)
        self._update_busy()

    # -- edits (each one undoable) ------------------------------------------------

    def add_point(self, point: Point) -> None:
        if self.session is not None:
            self._push(self.session.state.with_point(point), "Object point" if point.label else "Background point")

    def set_box(self, box: Box) -> None:
        if self.session is not None:
            self._push(self.session.state.with_box(box), "Box")

    def add_stroke(self, stroke: Stroke) -> None:
        if self.session is not None:
            self._push(self.session.state.with_stroke(stroke), "Brush" if stroke.mode == "add" else "Eraser")

    def cycle_candidate(self) -> None:
        if self.session is not None:
            state = self.session.state.cycled()
            if state is not self.session.state:
                self._push(state, "Next candidate")

    def clear(self) -> None:
        if self.session is not None and not self.session.state.is_empty:
            self._push(EditState(), "Clear")

    def set_state(self, state: EditState, text: str) -> None:
        """An undoable state change from outside the canvas (load mask, ...)."""
        if self.session is not None:
            self._push(state, text)

    def replace_state(self, state: EditState) -> None:
        """A new base from elsewhere (propagation): not undoable, history reset."""
        if self.session is None:
            return
        if self.undo_stack is not None:
            self.undo_stack.clear()
        self._apply(state, notify=False)

    def _push(self, state: EditState, text: str) -> None:
        self.undo_stack.push(_StateCommand(self, self.session.state, state, text))

    def _apply(self, state: EditState, notify: bool = True) -> None:
        session = self.session
        if session is None:
            return
        previous = session.state
        request = session.set_state(state)
        if request is not None:
            self._submit(request)
        self._refresh()
        if notify:
            self.state_changed.emit(session.path, session.state, previous)
        self._update_busy()

    # -- model requests -------------------------------------------------------------

    def _submit(self, request: PromptRequest) -> None:
        session = self.session
        self.model_lane.submit(
            backend.predict, self.engine, session.embedding, request, slot="prompt", priority=HIGH,
            on_done=lambda pred, s=session, rid=request.id: self._on_prediction(s, rid, pred),
            on_error=lambda e, s=session, rid=request.id: self._on_prediction_failed(s, rid, e),
        )

    def _on_prediction(self, session: ImageSession, request_id: int, prediction: Prediction) -> None:
        if session is not self.session:
            return
        previous = session.state
        if session.take_result(request_id, prediction):
            self._refresh()
            self.mask_timed.emit(prediction.seconds)
            self.state_changed.emit(session.path, session.state, previous)
        self._update_busy()

    def _on_prediction_failed(self, session: ImageSession, request_id: int, exc: BaseException) -> None:
        session.request_failed(request_id)
        if session is self.session:
            self._update_busy()
            self.failed.emit(f"could not compute the mask: {exc}")

    def _on_model_error(self, exc: BaseException) -> None:
        self._update_busy()
        self.failed.emit(str(exc))

    # -- display ------------------------------------------------------------------------

    def _refresh(self) -> None:
        session = self.session
        if session is None:
            return
        self.canvas.set_prompts(session.state.points, session.state.box)
        if session.state.pending:
            return  # the previous mask stays until the new one arrives (no flicker)
        self.canvas.set_mask(session.mask())
        self.mask_changed.emit()

    def _update_busy(self) -> None:
        s = self.session
        busy = self._loading
        if s is not None:
            busy = busy or (s.embedding is None and self.engine is not None) or s.busy
        self._set_busy(busy)

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(busy)

    @property
    def busy(self) -> bool:
        return self._busy
