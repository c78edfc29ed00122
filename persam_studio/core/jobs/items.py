"""The items of a batch and the per-item half of its loop.

:func:`plan` gives each input a unique, stable output stem and its *parts*
(a report key and the files that part writes: one part per target for
propagate, one part for most commands). :func:`run_item` runs a command's
work function on one item and turns a problem of that item's data or disk
into :attr:`Outcome.error`, so one bad photo never stops the others. It
holds no state and its :class:`Outcome` is picklable: a distributed worker
(a Ray actor holding the model) runs it, and the driver's
:class:`~persam_studio.core.jobs.batch.Batch` records the outcomes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from persam_studio.core.errors import Cancelled, PersamError
from persam_studio.core.io.naming import output_names
from persam_studio.core.jobs.report import Key, Row


@dataclass(frozen=True)
class Part:
    """One report row of an item and the files behind it.

    Attributes:
        key: values of the report's key columns, e.g. ``(file, target)``.
        outputs: the files this part writes; the work writes the one whose
            presence matters most (the mask) last.
    """

    key: Key
    outputs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Item:
    """One input of a batch.

    Attributes:
        index: 0-based position in the batch's input list.
        source: the input file.
        name: its unique output stem (no extension).
        parts: its report rows and their outputs (at least one for a report).
    """

    index: int
    source: Path
    name: str
    parts: tuple[Part, ...]

    @property
    def outputs(self) -> tuple[Path, ...]:
        return tuple(p for part in self.parts for p in part.outputs)


@dataclass(frozen=True)
class Outcome:
    """What running one item gave; picklable, so a worker can send it back.

    Attributes:
        item: the item.
        rows: the work's rows (one per part), empty when it failed.
        error: one line when the whole item failed (the work raised), else None.
        seconds: wall time of the work.
    """

    item: Item
    rows: tuple[Row, ...]
    error: str | None
    seconds: float


@dataclass(frozen=True)
class Progress:
    """One step of a batch: ``done`` of ``total`` items finished.

    ``outcome`` is None for the first step, which counts the items kept from
    an earlier run.
    """

    done: int
    total: int
    outcome: Outcome | None = None


#: The per-item function: writes the item's files, returns one row per part.
Work = Callable[[Item], Sequence[Row]]


def plan(
    sources: Sequence[str | Path],
    parts: Callable[[Path, str], Iterable[Part]] | None = None,
) -> list[Item]:
    """The items of a batch over ``sources``, in order, with unique names.

    Args:
        sources: input files in processing order (this order fixes the names).
        parts: ``(source, name) -> parts``; default: one part keyed by the
            source path with no files (for commands without outputs).
    """
    paths = [Path(s) for s in sources]
    names = output_names(paths)
    make = parts or (lambda source, name: [Part((str(source),))])
    return [Item(i, p, n, tuple(make(p, n))) for i, (p, n) in enumerate(zip(paths, names))]


def item_error(exc: BaseException, source: Path) -> str | None:
    """The one-line message of a per-item problem, or None for a bug.

    Per-item problems are those of the photo or the disk: our typed errors,
    OSError (read-only folder, full disk, an output name taken by a folder),
    ValueError (data a library refuses, e.g. a 1 x 5000 image in SAM's
    resize) and running out of memory (host or GPU). They must not stop the
    other items. Anything else is a bug and should be seen, not tabulated.
    """
    if isinstance(exc, PersamError):
        return str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's, a RuntimeError
        return str(PersamError(source, "not enough memory for this image"))
    if isinstance(exc, OSError):
        return str(PersamError(exc.filename or source, exc.strerror or str(exc)))
    if isinstance(exc, ValueError):
        return str(PersamError(source, str(exc) or type(exc).__name__))
    return None


def run_item(work: Work, item: Item) -> Outcome:
    """Run ``work`` on one item, turning a per-item problem into ``Outcome.error``.

    The pure half of a batch: no report, no shared state. Raises whatever
    :func:`item_error` calls a bug, and :class:`Cancelled`.
    """
    t0 = time.perf_counter()
    try:
        rows = tuple(dict(r) for r in work(item))
    except Exception as exc:  # noqa: BLE001 - sorted by item_error, bugs re-raised
        message = item_error(exc, item.source)
        if message is None:
            raise
        return Outcome(item, (), message, time.perf_counter() - t0)
    return Outcome(item, rows, None, time.perf_counter() - t0)


def run_each(
    items: Iterable[Item], work: Work, *, should_cancel: Callable[[], bool] | None = None
) -> Iterator[Outcome]:
    """:func:`run_item` over ``items`` in order, polling ``should_cancel`` between them.

    For commands without an output folder (``embed``); :meth:`Batch.run` adds
    the report and resume.

    Raises:
        Cancelled: ``should_cancel()`` returned True.
    """
    for item in items:
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        yield run_item(work, item)
