"""Saving the album off the GUI thread, a burst of edits at a time.

Every edit hands :meth:`AlbumSaver.schedule` a snapshot: the files it
changed (:func:`persam_studio.gui.persist.store` returns them as writes of
arrays that are never changed afterwards) and the album's JSON as plain
dicts (``album.to_json()``, made on the GUI thread: cheap, and immutable
once made). One *drain* job in the I/O lane writes what is pending, mask
files first and the JSON last, each atomically; edits made meanwhile are
merged into the pending set (the latest write of a file replaces an older
one) and written by the same drain when it loops. So a burst of 50 clicks
costs a few writes of the latest state, never 50.

The drain starts :data:`DELAY_MS` after the first edit of a burst, not at
once: the edit's own repaint comes first. (Started at once, the save's PNG
encoding ran beside the repaint of the click's answer and of the next
click's decoder on a 2-core laptop: 8 ms more from click to overlay and
15 ms more decoder time, measured by ``bench --only app``.)

Crash guarantee: every file is written atomically and the JSON, written
last, only names files already on disk, so a crash leaves the state of a
completed save; at most the edits of the last DELAY_MS and of the save in
progress are lost.
:meth:`flush` waits for the pending save (closing the window, switching
albums), so nothing is lost on a normal close.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

from persam_studio.core.errors import PersamError
from persam_studio.core.io.album import Album, write_album_json
from persam_studio.gui.workers import HIGH, Job, Lane

log = logging.getLogger(__name__)

Write = Callable[[], None]

#: How long after an edit its save starts (ms): after the edit's repaint.
DELAY_MS = 150


class AlbumSaver(QObject):
    """See the module docstring. ``failed`` carries the first error of a drain."""

    failed = Signal(str)

    def __init__(self, lane: Lane, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lane = lane
        self._lock = threading.Lock()
        self._writes: dict[Any, Write] = {}
        self._json: dict[Path, dict] = {}
        self._running = False  # a drain job is queued or running
        self._started = False
        self._idle = threading.Event()
        self._idle.set()
        self._job: Job | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DELAY_MS)  # a synchronous lane (tests) saves at once instead
        self._timer.timeout.connect(self._submit)
        self.json_writes = 0  # album.json files written (tests check the coalescing)

    @property
    def pending(self) -> bool:
        """True while something scheduled is not on disk yet."""
        return not self._idle.is_set()

    def schedule(self, album: Album, writes: dict[Any, Write] | None = None) -> None:
        """Queue ``writes`` and a snapshot of ``album``'s JSON (GUI thread)."""
        data = album.to_json()
        with self._lock:
            self._writes.update(writes or {})
            self._json[album.sidecar] = data
            self._idle.clear()
            if self._running:
                return  # the running drain picks it up
        if self.lane.synchronous:
            self._submit()
        elif not self._timer.isActive():
            self._timer.start()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Block until no save is pending (worker threads only: a job that reads the saved masks)."""
        return self._idle.wait(timeout_s)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Write everything pending before returning (GUI thread; closing)."""
        self._timer.stop()
        with self._lock:
            running = self._running
        job = self._job
        if running:
            if job is not None and job.unqueue():
                # No worker took the drain: it is written here, inline. (Cancelling
                # instead would race: a worker taking the job at that instant sends
                # its "cancelled" notice to this thread, which is blocked below.)
                self._job = None
            elif not self._idle.wait(timeout_s):  # a worker drains; it sets idle itself
                log.error("album save still running after %.0f s", timeout_s)
                return
        errors = self._drain()  # everything pending, inline (nothing if a worker drained it)
        if errors:
            self.failed.emit(errors[0])

    # -- internals -------------------------------------------------------------

    def _submit(self) -> None:
        """Start the drain job (GUI thread: the timer, or at once in a synchronous lane)."""
        with self._lock:
            if self._running or (not self._writes and not self._json):
                return
            self._running, self._started = True, False
        self._job = self.lane.submit(
            self._drain, priority=HIGH, on_done=self._on_drained,
            on_error=lambda exc: self._on_drained([str(exc)]), on_cancelled=self._on_dropped,
        )

    def _drain(self) -> list[str]:
        """Worker: write until nothing is pending; returns the errors met."""
        errors: list[str] = []
        while True:
            with self._lock:
                self._started = True
                writes, self._writes = self._writes, {}
                jsons, self._json = self._json, {}
                if not writes and not jsons:
                    self._running = False
                    self._idle.set()
                    return errors
            for write in writes.values():
                try:
                    write()
                except PersamError as exc:
                    errors.append(str(exc))
                except Exception as exc:  # a bug must not stop the drain (flush would wait)
                    log.exception("album save failed")
                    errors.append(f"cannot save album state ({exc})")
            for sidecar, data in jsons.items():  # last: it names the files above
                try:
                    write_album_json(sidecar, data)
                    self.json_writes += 1
                except PersamError as exc:
                    errors.append(str(exc))

    def _on_drained(self, errors: list[str]) -> None:
        self._job = None
        if errors:
            self.failed.emit(errors[0])

    def _on_dropped(self) -> None:
        self._job = None
        with self._lock:
            if not self._started:
                self._running = False
                self._idle.set()  # flush writes what is pending itself
