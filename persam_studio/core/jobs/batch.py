"""The driver half of a batch: report, resume, clean-up of a killed run.

:class:`Batch` owns an output folder's ``report.csv`` for one run over a
list of :class:`~persam_studio.core.jobs.items.Item`. Its rules:

* Resume. A part is done when every output is a regular file (a folder
  called ``cat.png`` is not a mask) *and* the report has its row. An item
  whose parts are all done is not run again; its rows are kept with status
  ``skipped`` and their numbers. An item whose files exist but whose row is
  missing (a kill between the file and the report) is run again: the work
  must keep existing files untouched and only recompute the row. So a kept
  file always ends up with a row, and no file is rewritten on resume.
* Clean-up. Temporaries of :mod:`persam_studio.core.io.atomic` that a killed
  run left beside the outputs (``.cat.png.x1y2z3w4.part``) are removed; only
  those made for this batch's own output names, never another file. Two runs
  into one folder at the same time are not supported (as for the report).
* Durability. The work writes its files, then :meth:`Batch.record` writes
  the rows; the report is rewritten atomically after every item, so a kill
  loses at most the item in flight.
* A report or output folder that cannot be written stops the batch with one
  :class:`~persam_studio.core.errors.OutputError`: nothing could be recorded.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from persam_studio.core.errors import OutputError
from persam_studio.core.jobs.items import Item, Outcome, Progress, Work, run_each
from persam_studio.core.jobs.report import Key, Report, Row


class Batch:
    """One run of a batch command over ``items``, writing ``report``.

    Local use: ``for step in batch.run(work): ...``. Distributed use:
    ``for step in batch.drive(lambda pending: runner.run(spec, pending)): ...``,
    where workers run :func:`~persam_studio.core.jobs.items.run_item` and the
    outcomes, in any order, are recorded here.

    Attributes:
        kept: items whose output files all existed at the start (left untouched).
        finished: items finished so far, kept ones included.
    """

    def __init__(self, report: Report, items: Sequence[Item]) -> None:
        self.report = report
        self.items = list(items)
        self.kept = 0
        self.finished = 0
        self._previous: dict[Key, list[Row]] = {}
        self._rows: dict[Key, list[Row]] = {}  # this run's rows, by part
        self._done: set[Key] = set()  # parts finished by an earlier run
        self._errors: dict[str, None] = {}  # ordered, one entry per message
        self._pending: list[Item] | None = None  # set by start()

    @property
    def outdir(self) -> Path:
        return self.report.path.parent

    def check(self) -> None:
        """Refuse an output folder or report that cannot be used; writes nothing.

        Call it before loading a model, so a wrong ``-o`` fails at once.

        Raises:
            OutputError: the output folder is a file, or the report a folder.
        """
        if self.outdir.exists() and not self.outdir.is_dir():
            raise OutputError(self.outdir, "is a file, not a folder")
        self.report.check()

    def start(self) -> list[Item]:
        """Create the folder, clean up, read the old report; the items still to run.

        Writes the report once (kept rows), so an unwritable folder fails
        here, before any work. A command may call it early (before a slow
        step such as fitting); :meth:`run` then goes on from there.

        Raises:
            OutputError: see :meth:`check`; the folder or report cannot be written.
        """
        if self._pending is not None:
            return list(self._pending)
        self.check()
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(self.outdir, f"cannot create the folder ({exc.strerror or exc})") from None
        remove_stale_temporaries([*(p for item in self.items for p in item.outputs), self.report.path])
        self._previous = self.report.read()
        pending = []
        for item in self.items:
            written = [all(p.is_file() for p in part.outputs) for part in item.parts]
            for part, ok in zip(item.parts, written):
                if ok and part.key in self._previous:
                    self._done.add(part.key)
            self.kept += all(written)
            if all(part.key in self._done for part in item.parts):
                for part in item.parts:
                    self._rows[part.key] = self._kept_rows(part.key)
                self.finished += 1
            else:
                pending.append(item)
        self.flush()
        self._pending = pending
        return list(pending)

    def record(self, outcome: Outcome, *, flush: bool = True) -> list[Row]:
        """Store an item's rows (one or more per part) and rewrite the report; returns the rows stored.

        A failed item gets an ``error`` row per part, except parts an earlier
        run finished: their files are fine, so their kept rows stay.
        ``flush=False`` leaves the rewrite to a later :meth:`flush` (a kill
        before it only costs recomputing those rows on resume).

        Raises:
            OutputError: the report cannot be written.
            ValueError: the work returned no row for one of the item's parts (a bug).
        """
        item = outcome.item
        got: dict[Key, list[Row]] = {}
        for r in outcome.rows:
            got.setdefault(self.report.key_of(r), []).append(r)
        rows = []
        for part in item.parts:
            if part.key in self._done:
                part_rows = self._kept_rows(part.key)
            elif outcome.error is not None:
                part_rows = [self.report.row(part.key, status="error", error=outcome.error)]
            elif part.key in got:
                part_rows = [self.report.row(part.key, **r) for r in got[part.key]]
            else:
                raise ValueError(f"the work for {item.source} gave no report row for {part.key}")
            for row in part_rows:
                if row["status"] == "error":
                    self._errors[row["error"] or str(item.source)] = None
            self._rows[part.key] = part_rows
            rows.extend(part_rows)
        self.finished += 1
        if flush:
            self.flush()
        return rows

    def run(self, work: Work, *, should_cancel: Callable[[], bool] | None = None) -> Iterator[Progress]:
        """:meth:`start`, then the pending items in order; one step per item.

        The first step counts the kept items. ``should_cancel`` is polled
        between items; the report holds every item finished before it.

        Raises:
            Cancelled: ``should_cancel()`` returned True.
            OutputError: the folder or report cannot be written.
        """
        yield from self.drive(lambda pending: run_each(pending, work, should_cancel=should_cancel))

    def drive(
        self, outcomes: Callable[[list[Item]], Iterable[Outcome]], *, flush_every: float = 0.0
    ) -> Iterator[Progress]:
        """:meth:`start`, then record what ``outcomes(pending items)`` yields; one step per item.

        The outcomes may come in any order (a cluster's workers finish when
        they finish); the report keeps item order. The report is rewritten at
        most every ``flush_every`` seconds and once at the end: with thousands
        of rows and many workers, rewriting it after every item would make the
        driver the bottleneck. Rows not yet written when the driver is killed
        are recomputed on resume (their files are kept), so nothing is lost.

        Raises:
            OutputError: the folder or report cannot be written.
            whatever ``outcomes`` raises (``Cancelled``, a worker's bug), after
            writing the rows recorded so far.
        """
        pending = self.start()
        total = len(self.items)
        yield Progress(self.finished, total)
        last = time.monotonic()
        try:
            for outcome in outcomes(pending):
                due = time.monotonic() - last >= flush_every
                self.record(outcome, flush=due)
                if due:
                    last = time.monotonic()
                yield Progress(self.finished, total, outcome)
        except BaseException:
            with contextlib.suppress(OutputError):  # the first problem is the one to report
                self.flush()
            raise
        self.flush()

    def flush(self) -> None:
        """Rewrite the report: this batch's rows in item order, then an earlier
        run's rows for other inputs (a resumed run with fewer inputs keeps them)."""
        keys = [part.key for item in self.items for part in item.parts]
        ordered = [r for k in keys for r in (self._rows.get(k) or self._previous.get(k) or ())]
        known = set(keys)
        others = [r for k, rs in self._previous.items() if k not in known for r in rs]
        self.report.write(ordered + others)

    def counts(self) -> dict[str, int]:
        """Rows of this run by status (``ok``, ``skipped``, ``error``, ...), in first-seen order."""
        counts: dict[str, int] = {}
        for rows in self._rows.values():
            for row in rows:
                counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    def errors(self) -> list[str]:
        """One line per distinct problem of this run, in order."""
        return list(self._errors)

    def _kept_rows(self, key: Key) -> list[Row]:
        # Numbers of the run that made the files; the status says this run kept them.
        return [{**r, "status": "skipped", "error": ""} for r in self._previous[key]]


def remove_stale_temporaries(outputs: Iterable[Path]) -> list[Path]:
    """Remove atomic-write temporaries left for ``outputs`` by a killed run.

    Only a regular file named as :func:`persam_studio.core.io.atomic.atomic_path`
    names the temporary of one of ``outputs`` is removed; a user's
    ``notes.part`` or a temporary for another file stays. Each folder is
    listed once. Returns the removed paths.
    """
    from persam_studio.core.io.atomic import temporary_of

    wanted: dict[Path, set[str]] = {}
    for path in outputs:
        wanted.setdefault(path.parent, set()).add(path.name)
    removed = []
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no such folder yet: nothing left there
            continue
        for entry in entries:
            if temporary_of(entry.name) in names and entry.is_file(follow_symlinks=False):
                # A temporary we cannot remove (read-only folder) is harmless:
                # readers ignore .part files and the next write makes its own.
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed
