"""Batch jobs: the run-report-resume loop shared by every batch command.

``propagate``, ``embed``, the coming ``select`` and a distributed runner all
turn a list of photos into files in an output folder plus a ``report.csv``,
resume after a kill, and survive one bad photo. That loop lives here once:

* :func:`output_names` (from :mod:`persam_studio.core.io.naming`): unique, stable output stems.
* :mod:`.items`: :func:`plan` the items, :func:`run_item` one item (the pure,
  per-item half a worker runs), :func:`item_error` (which exceptions are a
  photo's or a disk's problem rather than a bug).
* :mod:`.report`: ``report.csv`` read back and rewritten atomically.
* :mod:`.batch`: :class:`Batch`, the driver half: resume, clean-up of a
  killed run's temporaries, a report row after every item, progress.

Example, a command writing ``OUTDIR/<stem>.png`` per photo::

    report = Report(outdir / REPORT_NAME, ["file", "status", "error"])
    items = plan(paths, lambda src, name: [Part((str(src),), (outdir / f"{name}.png",))])
    batch = Batch(report, items)
    for step in batch.run(work, should_cancel=flag.is_set):  # work(item) -> [row]
        bar.update(step.done, step.total)
"""

from persam_studio.core.jobs.batch import Batch, remove_stale_temporaries
from persam_studio.core.jobs.items import Item, Outcome, Part, Progress, Work, item_error, plan, run_each, run_item
from persam_studio.core.io.naming import output_names
from persam_studio.core.jobs.report import REPORT_NAME, Key, Report, Row

__all__ = [
    "Batch", "Item", "Key", "Outcome", "Part", "Progress", "REPORT_NAME", "Report", "Row", "Work",
    "item_error", "output_names", "plan", "remove_stale_temporaries", "run_each", "run_item",
]
