"""Album-wide jobs: prepare (encode all), use as reference, propagate, export.

Long jobs are generators from :mod:`persam_studio.gui.backend` run step by
step in the model lane (clicks on the canvas still get answered between
steps). One long job at a time; each reports progress and can be
cancelled, and its results are applied as they arrive.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from persam_studio.core.io.album import ImageState, write_mask_png
from persam_studio.core.personalize.methods import DEFAULT_MODE
from persam_studio.gui import backend
from persam_studio.gui.album_controller import AlbumController
from persam_studio.gui.backend import ExportItem, Propagated, ReferenceSpec
from persam_studio.gui.image_controller import ImageController
from persam_studio.gui.model_controller import ModelController
from persam_studio.gui.subject_backend import Selected, SubjectModelHolder, select_steps
from persam_studio.gui.workers import HIGH, Lane, LongJob

PREPARE, PROPAGATE, EXPORT, SELECT = "Preparing album", "Propagating", "Exporting", "Selecting subjects"


def _reference_job(size, logits, bitmap, strokes, dest: Path) -> Path:
    write_mask_png(dest, backend.full_size_mask(size, logits, bitmap, strokes))
    return dest


class JobsController(QObject):
    """See the module docstring."""

    started = Signal(str)  # label
    progressed = Signal(int, int)  # done, total
    fit_progressed = Signal(str, int, int)  # label, PerSAM-F step, steps (before the first photo)
    finished = Signal(str, str)  # label, summary
    message = Signal(str)

    def __init__(self, albums: AlbumController, images: ImageController, model: ModelController,
                 model_lane: Lane, parent=None) -> None:
        super().__init__(parent)
        self.albums, self.images, self.model, self.lane = albums, images, model, model_lane
        self.job: LongJob | None = None
        self.label = ""
        self._errors: list[str] = []
        self._count = 0

    @property
    def busy(self) -> bool:
        return self.job is not None

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    # -- prepare -----------------------------------------------------------------

    def prepare(self) -> bool:
        """Encode every image ahead of time (cached embeddings are skipped fast)."""
        album = self.albums.album
        if not self._ready(album):
            return False
        paths = [album.path_of(r) for r in album.records]
        return self._start(PREPARE, backend.prepare_steps(self.model.engine, paths), len(paths))

    # -- references and propagation ---------------------------------------------

    def use_as_reference(self, name: str) -> bool:
        """Snapshot the current mask (full size, in the model lane) as a reference."""
        record, state, session = self.albums.record, self.images.state, self.images.session
        name = name.strip()
        if record is None or state is None or session is None:
            return False
        if not name:
            self.message.emit("type the subject's name first: references with one name form one target")
            return False
        if state.pending or state.is_empty:
            self.message.emit("make a mask first (or wait for it), then use it as reference")
            return False
        logits = state.prediction.low_res_logits[state.candidate_index] if state.prediction is not None else None
        bitmap = state.bitmap.mask if state.bitmap is not None and state.prediction is None else None
        dest = self.albums.album.new_reference_file(record)
        self.lane.submit(
            _reference_job, session.original_size, logits, bitmap, state.strokes, dest, priority=HIGH,
            on_done=lambda path, n=name: self.albums.add_reference(n, path),
            on_error=lambda e: self.message.emit(f"could not save the reference: {e}"),
        )
        return True

    def propagate(self, method: str = DEFAULT_MODE, exact: bool = False, instances: int | None = 1) -> bool:
        """Find the references' subject in every other image of the album.

        ``method``: ``"persam_f"`` (default) or ``"persam"``; ``exact``:
        PerSAM-F's full-size fit; ``instances``: 1..32 per photo, None for all.
        """
        album = self.albums.album
        if not self._ready(album):
            return False
        if not album.references:
            self.message.emit("no reference yet: segment the subject on one image and use it as reference")
            return False
        targets = self.albums.propagation_targets()
        if not targets:
            self.message.emit("nothing to propagate to: every other image is masked or accepted")
            return False
        album.method, album.exact_fit, album.instances = method, exact, instances
        refs = [
            ReferenceSpec(r.name, album.reference_image(r), album.sidecar / "references" / r.mask)
            for r in album.references
        ]
        paths = [album.path_of(r) for r in targets]
        steps = backend.propagate_steps(
            self.model.engine, refs, paths, method, self.images.display_cap, lambda: self._cancelled(),
            fit_progress=lambda done, total: self.job is not None and self.job.report(done, total),
            exact=exact and method == "persam_f", instances=instances,
        )
        return self._start(PROPAGATE, steps, len(paths))

    # -- select subject in all photos ------------------------------------------------

    def select_all(self, holder: SubjectModelHolder) -> bool:
        """The subject model's mask for every photo the user has not masked or accepted.

        Results are flagged like propagation's (found / needs review), so a
        later propagation or selection may replace them; masked and accepted
        photos are never touched (see :meth:`AlbumController.apply_selected`).
        """
        album = self.albums.album
        if album is None or self.job is not None:
            return False
        targets = self.albums.selection_targets()
        if not targets:
            self.message.emit("nothing to select: every photo is masked or accepted")
            return False
        paths = [album.path_of(r) for r in targets]
        steps = select_steps(holder, paths, self.images.display_cap, lambda: self._cancelled())
        return self._start(SELECT, steps, len(paths))

    # -- export --------------------------------------------------------------------------

    def export(self, rows: list[int], folder: Path, masks: bool = True, cutouts: bool = True,
               refine: bool = False, background: str = "", cutout_suffix: str = ".png", dataset: str = "") -> bool:
        """Write masks and/or cutouts of album rows ``rows`` into ``folder``, and a ``dataset``.

        ``background``: cutouts on a colour, ``blur`` or a picture (the CLI's
        ``--background`` text); ``dataset``: a key of ``gui.exports.DATASETS``.
        """
        album = self.albums.album
        if album is None or self.job is not None:
            return False
        masked = [row for row in rows if album.records[row].base != "none" or album.records[row].strokes]
        if not masked:  # the same words for every kind of export, before any file is touched
            self.message.emit("nothing to export: no mask in the chosen images")
            return False
        if not masks and not cutouts:
            return self._export_dataset(rows, Path(folder), dataset) if dataset else False
        items, stems = [], set()
        for row in masked:
            r = album.records[row]
            path = album.path_of(r)
            stem = path.stem if path.stem not in stems else f"{path.stem}_{path.suffix.lstrip('.')}"
            stems.add(stem)
            items.append(ExportItem(
                image=path, stem=stem,
                logits_file=album.mask_file(r, "logits") if r.base == "logits" else None,
                bitmap_file=album.mask_file(r, "bitmap") if r.base == "bitmap" else None,
                strokes=r.strokes,
            ))
        protected = [album.path_of(r) for r in album.records]
        steps = backend.export_steps(items, Path(folder), masks, cutouts, refine, protected, background, cutout_suffix,
                                     saved=self.albums.saver.wait_idle)
        if dataset:
            return self._export_dataset(rows, Path(folder), dataset, steps, len(items))
        return self._start(EXPORT, steps, len(items))

    def _export_dataset(self, rows: list[int], folder: Path, dataset: str, before=None, n_before: int = 0) -> bool:
        """The album's saved masks of ``rows`` as a dataset in ``folder``, after the ``before`` steps."""
        import itertools

        from persam_studio.gui.exports import dataset_steps

        album = self.albums.album
        photos = [album.path_of(album.records[row]) for row in rows]
        total = n_before + len(photos)
        steps = dataset_steps(album, photos, folder, dataset, album.subject or "subject", self._cancelled,
                              n_before, total, saved=self.albums.saver.wait_idle)
        return self._start(EXPORT, steps if before is None else itertools.chain(before, steps), total)

    # -- running --------------------------------------------------------------------------

    def _ready(self, album) -> bool:
        if album is None or self.job is not None:
            return False
        if self.model.engine is None:
            self.message.emit("the model is not loaded yet")
            return False
        return True

    def _cancelled(self) -> bool:
        return self.job is not None and self.job.cancelled()

    def _start(self, label: str, steps, total: int) -> bool:
        self.label, self._errors, self._count = label, [], 0
        self.job = self.lane.start_long(
            steps, on_items=self._on_items, on_done=lambda _: self._end("done"),
            on_error=self._on_error, on_cancelled=lambda: self._end("cancelled"),
            on_progress=lambda done, total: self.fit_progressed.emit(label, done, total),
        )
        self.started.emit(label)
        self.progressed.emit(0, total)
        return True

    def _on_items(self, items: list) -> None:
        for item in items:
            if isinstance(item, Propagated):
                self.albums.apply_propagated(item)
                self._count += item.prediction is not None
            elif isinstance(item, Selected):
                self.albums.apply_selected(item)
            if getattr(item, "error", None):
                # One line per photo, named once: the error's own text often starts with its path.
                name = Path(item.path).name
                error = str(item.error).replace(str(item.path), name)
                self._errors.append(error if error.startswith(name) else f"{name}: {error}")
        if items:
            self.progressed.emit(items[-1].done, items[-1].total)

    def _on_error(self, exc: BaseException) -> None:
        from persam_studio.core.errors import Cancelled

        self._end("cancelled" if isinstance(exc, Cancelled) else f"failed: {exc}")

    def _end(self, how: str) -> None:
        label, self.job = self.label, None
        summary = how
        if self.label in (PROPAGATE, SELECT) and how == "done":
            counts = self.albums.album.counts()
            summary = (f"done: {counts[ImageState.PROPAGATED]} found, "
                       f"{counts[ImageState.NEEDS_REVIEW]} need review")
        if self._errors:
            summary += f"; {len(self._errors)} error(s): " + "; ".join(self._errors)
        self.finished.emit(label, summary)


def default_export_dir(album_root: Path) -> Path:
    """``<album>/export`` when writable, else the home folder's."""
    folder = album_root / "export"
    return folder if os.access(album_root, os.W_OK) else Path.home() / "persam-export"
