"""The one place in the app that owns threads.

A :class:`Lane` is a thread pool plus the bookkeeping the GUI needs:

* the **model lane** has one thread, so model calls never overlap (and a
  click never waits behind two encodings): interactive jobs run at
  :data:`HIGH` priority, background encodings at :data:`NORMAL`, and long
  jobs run one step at a time at :data:`LOW`, so a click made during
  "Prepare album" is answered after the current step, not after the album;
* the **I/O lane** (two threads) decodes images and thumbnails and runs
  downloads.

Jobs submitted with a ``slot`` replace the job queued in that slot (the
previous click's request, the previous "encode ahead") instead of piling up.
Results, errors and long-job items come back to the GUI thread through
signals on a QObject companion (:class:`_Relay`), and callbacks run there.
A long job is a generator: each ``next()`` is one step in the worker; the
cancel flag is checked between steps, and items reach the GUI in batches at
most :data:`DELIVERY_INTERVAL_S` apart.

``synchronous=True`` runs everything inline (logic tests). :func:`live_lanes`
lets tests check that no thread outlives its window.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any, Callable, Iterator

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, QTimer, Signal, Slot

log = logging.getLogger(__name__)

HIGH, NORMAL, LOW = 10, 5, 0
DELIVERY_INTERVAL_S = 0.2  # long-job items and progress reach the GUI <= 5 times a second

_LANES: "weakref.WeakSet[Lane]" = weakref.WeakSet()


def live_lanes() -> list[Lane]:
    """Every lane whose Qt object still exists (tests check they are idle)."""
    return [lane for lane in list(_LANES) if shiboken6.isValid(lane) and shiboken6.isValid(lane.pool)]


class Job:
    """A unit of work on a :class:`Lane`; its callbacks run on the GUI thread.

    Inside the worker, a function submitted with ``with_job=True`` receives
    the job as ``job=`` and may call :meth:`cancelled` and :meth:`report`.
    """

    def __init__(self, lane: Lane, fn: Callable[..., Any], args: tuple, kwargs: dict, priority: int) -> None:
        self.lane = lane
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.priority = priority
        self.on_done: Callable[[Any], None] | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        self.on_progress: Callable[[int, int], None] | None = None
        self.on_cancelled: Callable[[], None] | None = None
        self.finished = False
        self._cancel = threading.Event()
        self._runnable: _Runnable | None = None
        self._last_report = 0.0

    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called (poll it between items)."""
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the job to stop; a queued job is dropped at once."""
        self._cancel.set()
        self.lane._cancel_queued(self)

    def unqueue(self) -> bool:
        """Drop the job if no worker has taken it yet, without any callback (GUI thread).

        True: it will never run, and the caller does its work itself. False:
        it has started (or finished) and runs to the end; unlike
        :meth:`cancel`, this never turns a job a worker just took into a
        cancelled one, whose notice would wait for the GUI thread.
        """
        return self.lane._take_queued(self)

    def report(self, done: int, total: int) -> None:
        """Progress from the worker; forwarded at most 5 times a second."""
        now = time.monotonic()
        if done >= total or now - self._last_report >= DELIVERY_INTERVAL_S:
            self._last_report = now
            self.lane._relay.progressed.emit(self, int(done), int(total))

    # Runs in the worker thread.
    def _execute(self) -> None:
        relay = self.lane._relay
        if self.cancelled():
            relay.cancelled.emit(self)
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # delivered to the GUI, never lost in a thread
            relay.failed.emit(self, exc)
        else:
            relay.done.emit(self, result)


class LongJob(Job):
    """A job made of the steps of a generator (one ``next()`` per step).

    ``on_items(items)`` receives the yielded values in batches; ``on_done``
    the generator's return value.
    """

    def __init__(self, lane: Lane, steps: Iterator[Any], priority: int) -> None:
        super().__init__(lane, lambda: None, (), {}, priority)
        self.steps = steps
        self.on_items: Callable[[list], None] | None = None
        self._pending: list[Any] = []
        self._last_delivery = 0.0
        self._timer: QTimer | None = None

    def _execute(self) -> None:
        relay = self.lane._relay
        if self.cancelled():
            self.steps.close()
            relay.cancelled.emit(self)
            return
        try:
            item = next(self.steps)
        except StopIteration as stop:
            relay.done.emit(self, stop.value)
        except BaseException as exc:
            relay.failed.emit(self, exc)
        else:
            relay.item.emit(self, item)

    # GUI thread: batch items so the GUI updates a few times a second at most.
    def _collect(self, item: Any) -> None:
        self._pending.append(item)
        wait = DELIVERY_INTERVAL_S - (time.monotonic() - self._last_delivery)
        if wait <= 0:
            self._deliver()
        elif self._timer is None:
            self._timer = QTimer(self.lane)
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self._deliver)
            self._timer.start(int(wait * 1000) + 1)

    def _deliver(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.deleteLater()
            self._timer = None
        items, self._pending = self._pending, []
        self._last_delivery = time.monotonic()
        if items and self.on_items is not None:
            self.on_items(items)


class _Runnable(QRunnable):
    def __init__(self, job: Job) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the Job keeps it alive; Python owns it
        self.job = job

    def run(self) -> None:
        self.job._execute()


class _Relay(QObject):
    """Signals emitted in workers, received on the GUI thread (queued)."""

    done = Signal(object, object)
    failed = Signal(object, object)
    item = Signal(object, object)
    progressed = Signal(object, int, int)
    cancelled = Signal(object)


class Lane(QObject):
    """A thread pool for one kind of work; see the module docstring.

    Args:
        name: for logs and thread names.
        threads: pool size (1 for the model lane).
        synchronous: run jobs inline in :meth:`submit` (tests).
    """

    idle_changed = Signal(bool)

    def __init__(self, name: str, threads: int = 1, synchronous: bool = False, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.synchronous = synchronous
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._relay = _Relay()
        self._relay.done.connect(self._on_done)
        self._relay.failed.connect(self._on_failed)
        self._relay.item.connect(self._on_item)
        self._relay.progressed.connect(self._on_progressed)
        self._relay.cancelled.connect(self._on_cancelled)
        self._slots: dict[str, Job] = {}
        self._jobs: set[Job] = set()
        self._closed = False
        _LANES.add(self)

    # -- submitting --------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        slot: str | None = None,
        priority: int = HIGH,
        with_job: bool = False,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> Job:
        """Run ``fn(*args)`` in the pool; ``slot`` replaces the job queued there."""
        job = Job(self, fn, args, {}, priority)
        if with_job:
            job.kwargs["job"] = job
        job.on_done, job.on_error, job.on_progress = on_done, on_error, on_progress
        job.on_cancelled = on_cancelled
        self._start(job, slot)
        return job

    def start_long(
        self,
        steps: Iterator[Any],
        *,
        priority: int = LOW,
        on_items: Callable[[list], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> LongJob:
        """Run a generator step by step; see :class:`LongJob`.

        ``on_progress`` receives what a step reports through :meth:`Job.report`
        while it runs (a step that takes seconds, like PerSAM-F's fitting).
        """
        job = LongJob(self, steps, priority)
        job.on_items, job.on_done, job.on_error, job.on_cancelled = on_items, on_done, on_error, on_cancelled
        job.on_progress = on_progress
        self._start(job, None)
        return job

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def shutdown(self) -> None:
        """Cancel everything, drop queued work and wait for the running step."""
        self._closed = True
        for job in list(self._jobs):
            job._cancel.set()
        self.pool.clear()
        self.pool.waitForDone(-1)
        self._jobs.clear()
        self._slots.clear()

    # -- internals -----------------------------------------------------------

    def _start(self, job: Job, slot: str | None) -> None:
        if self._closed:
            return
        if slot is not None:
            previous = self._slots.get(slot)
            if previous is not None:
                self._cancel_queued(previous)
            self._slots[slot] = job
        was_busy = self.busy
        self._jobs.add(job)
        if not was_busy:
            self.idle_changed.emit(False)
        self._queue(job)

    def _queue(self, job: Job) -> None:
        if self.synchronous:
            job._execute()
            return
        job._runnable = _Runnable(job)
        self.pool.start(job._runnable, job.priority)

    def _take_queued(self, job: Job) -> bool:
        """Take ``job`` out of the pool's queue if no worker has it yet; True if taken."""
        if job.finished or job._runnable is None or not self.pool.tryTake(job._runnable):
            return False
        self._finish(job)
        return True

    def _cancel_queued(self, job: Job) -> None:
        """Drop ``job`` if it has not started yet (it then finishes as cancelled)."""
        if self._take_queued(job) and job.on_cancelled is not None:
            job.on_cancelled()

    def _finish(self, job: Job) -> None:
        job.finished = True
        job._runnable = None
        self._jobs.discard(job)
        for slot, queued in list(self._slots.items()):
            if queued is job:
                del self._slots[slot]
        if not self._jobs:
            self.idle_changed.emit(True)

    def _callback(self, fn: Callable | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # a broken callback must not kill the event loop
            log.exception("callback of %s lane failed", self.name)

    @Slot(object, object)
    def _on_done(self, job: Job, result: Any) -> None:
        if job.finished:
            return
        if isinstance(job, LongJob):
            job._deliver()
        self._finish(job)
        self._callback(job.on_done, result)

    @Slot(object, object)
    def _on_failed(self, job: Job, exc: BaseException) -> None:
        if job.finished:
            return
        if isinstance(job, LongJob):
            job._deliver()
        self._finish(job)
        if job.on_error is None:
            log.error("%s lane job failed: %s", self.name, exc)
        self._callback(job.on_error, exc)

    @Slot(object, object)
    def _on_item(self, job: LongJob, item: Any) -> None:
        if job.finished:
            return
        job._collect(item)
        if self._closed:
            return
        self._queue(job)  # next step; clicks queued meanwhile run first (priority)

    @Slot(object, int, int)
    def _on_progressed(self, job: Job, done: int, total: int) -> None:
        if not job.finished:
            self._callback(job.on_progress, done, total)

    @Slot(object)
    def _on_cancelled(self, job: Job) -> None:
        if job.finished:
            return
        if isinstance(job, LongJob):
            job._deliver()
        self._finish(job)
        self._callback(job.on_cancelled)
