"""The main window: builds the parts and wires their signals. No logic here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMainWindow, QMessageBox

from persam_studio.gui import canvas as canvas_mod
from persam_studio.gui.actions import Actions
from persam_studio.gui.album_controller import AlbumController
from persam_studio.gui.album_panel import AlbumPanel
from persam_studio.gui.background import BackgroundPicker, BackgroundPreview
from persam_studio.gui.canvas import Canvas
from persam_studio.gui.dialogs.about import AboutDialog, about_info
from persam_studio.gui.dialogs.export_dialog import ALBUM, CURRENT, ExportDialog
from persam_studio.gui.dialogs.model_dialog import ModelDialog
from persam_studio.gui.dialogs.settings_dialog import SettingsDialog
from persam_studio.gui.dialogs.shortcuts import ShortcutsDialog
from persam_studio.gui.icon import app_icon
from persam_studio.gui.image_controller import ImageController
from persam_studio.gui.jobs_controller import JobsController, default_export_dir
from persam_studio.gui.launch import SETTINGS, LaunchOptions, describe_model, effective_choice
from persam_studio.gui.log_panel import LogPanel
from persam_studio.gui.model_controller import EngineFactory, ModelController
from persam_studio.gui.references import describe
from persam_studio.gui.settings import AppSettings
from persam_studio.gui.side_panel import SidePanel
from persam_studio.gui.statusbar import StatusBar
from persam_studio.gui.subject_controller import SubjectController
from persam_studio.gui.targets_view import TargetsView
from persam_studio.gui.workers import Lane

TITLE = "PerSAM Studio"
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.tif *.tiff *.bmp);;All files (*)"


def screen_display_cap() -> int:
    """Longest side for display masks: the screen's, in device pixels (1024..4096)."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return 2048
    size = screen.size()
    return int(min(4096, max(1024, max(size.width(), size.height()) * screen.devicePixelRatio())))


class MainWindow(QMainWindow):
    """PerSAM Studio's window.

    Args:
        settings: where preferences live (tests pass a temporary file).
        engine_factory: how to build the engine (default: find and load a
            checkpoint); tests pass one returning a random SAM.
        synchronous: run background work inline (logic tests only).
        launch: the command line's ``--checkpoint`` and ``--model`` (win over
            PERSAM_CHECKPOINT and Settings).
    """

    def __init__(self, settings: AppSettings, engine_factory: EngineFactory | None = None,
                 synchronous: bool = False, launch: LaunchOptions | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.launch = launch or LaunchOptions()
        self.setWindowTitle(TITLE)
        self.setWindowIcon(app_icon())  # also when built without create_application (tests, embedding)
        self.setAcceptDrops(True)
        self.model_lane = Lane("model", 1, synchronous, self)
        self.io_lane = Lane("io", 2, synchronous, self)

        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self.panel = AlbumPanel(self)
        self.targets = TargetsView(self.io_lane)
        self.side = SidePanel(settings.opacity, settings.outline, self.targets, self)
        self.log = LogPanel(self)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        docks = []
        for title, widget, area in (("Album", self.panel, Qt.DockWidgetArea.LeftDockWidgetArea),
                                    ("Tools", self.side, Qt.DockWidgetArea.RightDockWidgetArea),
                                    ("Log", self.log, Qt.DockWidgetArea.BottomDockWidgetArea)):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock-{title.lower()}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            docks.append(dock)
        self.background = BackgroundPicker(self)
        self.background.recall(settings.background_colour, settings.background_picture)
        self._add_background_dock(docks[1])
        self.resizeDocks(docks[:2], [self.panel.two_columns_width(), 300], Qt.Orientation.Horizontal)
        self.resizeDocks(docks[2:], [90], Qt.Orientation.Vertical)

        self.images = ImageController(self.canvas, self.model_lane, self.io_lane, screen_display_cap())
        self.albums = AlbumController(self.panel, self.images, self.io_lane, self)
        self.model = ModelController(self.model_lane, self.io_lane, engine_factory, self)
        self.jobs = JobsController(self.albums, self.images, self.model, self.model_lane, self)
        self.subjects = SubjectController(self.images, self.jobs, self.model_lane, self._subject_choice, self)
        self.preview = BackgroundPreview(self.images, self.canvas, self.io_lane, self)
        self.actions_ = Actions(self, self.images.undo_group)
        self.actions_.install(self)
        self.model_dialog: ModelDialog | None = None
        self.about_dialog: AboutDialog | None = None
        self.error_box: QMessageBox | None = None  # the last one shown
        self._wire()
        self.canvas.set_opacity(settings.opacity)
        self.canvas.set_outline(settings.outline)
        self.resize(1280, 820)
        geometry, state = settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self._load_model()

    def _wire(self) -> None:
        a, c, s = self.actions_, self.canvas, self.status
        c.point_clicked.connect(self.images.add_point)
        c.box_drawn.connect(self.images.set_box)
        c.stroke_drawn.connect(self.images.add_stroke)
        c.zoom_changed.connect(s.set_zoom)
        a.clear.triggered.connect(self.images.clear)
        a.cycle.triggered.connect(self.images.cycle_candidate)
        a.tool_prompt.triggered.connect(lambda: c.set_tool(canvas_mod.PROMPT))
        a.tool_brush.triggered.connect(lambda: c.set_tool(canvas_mod.BRUSH))
        a.tool_eraser.triggered.connect(lambda: c.set_tool(canvas_mod.ERASER))
        a.brush_smaller.triggered.connect(lambda: self.side.brush.setValue(int(self.side.brush.value() / 1.25)))
        a.brush_larger.triggered.connect(lambda: self.side.brush.setValue(int(self.side.brush.value() * 1.25) + 1))
        a.fit.triggered.connect(c.fit)
        a.zoom_100.triggered.connect(c.zoom_100)
        a.zoom_in.triggered.connect(lambda: c.zoom_by(1.25))
        a.zoom_out.triggered.connect(lambda: c.zoom_by(0.8))
        a.next_image.triggered.connect(lambda: self.albums.step(1))
        a.previous_image.triggered.connect(lambda: self.albums.step(-1))
        a.open_folder.triggered.connect(self._ask_folder)
        a.open_images.triggered.connect(self._ask_images)
        a.load_mask.triggered.connect(self._ask_mask)
        a.export.triggered.connect(self._ask_export)
        a.quit.triggered.connect(self.close)
        a.prepare.triggered.connect(self.jobs.prepare)
        a.select_subject.triggered.connect(self.subjects.select_current)
        a.select_all.triggered.connect(self.subjects.select_all)
        a.use_reference.triggered.connect(lambda: self.jobs.use_as_reference(self.side.name.text()))
        a.propagate.triggered.connect(lambda: self._propagate(self.side.propagate_options()))
        a.accept.triggered.connect(self.albums.accept_current)
        a.forget_references.triggered.connect(self._ask_forget_references)
        a.next_review.triggered.connect(lambda: self.albums.step_review(1))
        a.previous_review.triggered.connect(lambda: self.albums.step_review(-1))
        a.review_only.toggled.connect(self.panel.set_review_only)
        a.review_only.toggled.connect(self.side.review_only.setChecked)
        a.cancel_job.triggered.connect(self.jobs.cancel)
        a.settings.triggered.connect(self._ask_settings)
        a.model.triggered.connect(self._show_model_dialog)
        a.shortcuts.triggered.connect(lambda: ShortcutsDialog(self).exec())
        a.about.triggered.connect(self._show_about)
        # Buttons doing what an action does say so with the action's words and keys.
        for button, action in ((self.side.use_button, a.use_reference), (self.side.propagate_button, a.propagate),
                               (self.side.accept_button, a.accept), (s.cancel, a.cancel_job),
                               (self.side.clear_button, a.forget_references), (self.side.next_review, a.next_review),
                               (self.side.previous_review, a.previous_review), (self.side.review_only, a.review_only)):
            button.setToolTip(action.toolTip())
        self.side.brush.setToolTip(f"Width of the brush and eraser on screen ({a.keys(a.brush_smaller)} smaller, "
                                   f"{a.keys(a.brush_larger)} larger)")

        self.side.opacity_changed.connect(c.set_opacity)
        self.side.outline_toggled.connect(c.set_outline)
        self.side.brush_changed.connect(lambda px: setattr(c, "brush_px", float(px)))
        self.side.reference_requested.connect(self.jobs.use_as_reference)
        self.side.propagate_requested.connect(self._propagate)
        self.side.clear_references_requested.connect(self._ask_forget_references)
        self.side.accept_requested.connect(self.albums.accept_current)
        self.side.subject_edited.connect(self.albums.set_subject)
        self.side.review_step_requested.connect(self.albums.step_review)
        self.side.review_only_toggled.connect(a.review_only.setChecked)

        self.background.changed.connect(self.preview.set_spec)
        self.preview.failed.connect(self._tell)
        self.images.busy_changed.connect(s.set_busy)
        self.images.mask_timed.connect(s.set_mask_time)
        self.images.image_opened.connect(lambda p: s.set_image_size(self.images.session.original_size))
        self.images.image_failed.connect(lambda p, msg: self._tell(msg))
        self.images.failed.connect(self._tell)
        self.albums.album_opened.connect(self._on_album_opened)
        self.albums.references_changed.connect(self._show_references)
        self.albums.current_changed.connect(self._show_review_state)
        self.albums.record_changed.connect(self._show_review_state)
        self.albums.message.connect(self._tell)
        self.albums.error.connect(self._show_error)
        self.jobs.started.connect(s.job_started)
        self.jobs.progressed.connect(s.job_progressed)
        self.jobs.fit_progressed.connect(s.job_fitting)
        self.jobs.finished.connect(s.job_finished)
        self.jobs.finished.connect(lambda label, summary: self.log.add(f"{label}: {summary}"))
        self.jobs.message.connect(self._tell)
        self.subjects.message.connect(self._tell)
        self.subjects.missing.connect(self._show_error)
        s.cancel_requested.connect(self.jobs.cancel)

        self.model.loading.connect(lambda: s.set_model("model: loading…"))
        self.model.engine_ready.connect(self._on_engine_ready)
        self.model.checkpoint_missing.connect(self._on_checkpoint_missing)
        self.model.load_failed.connect(self._on_model_failed)

    # -- opening ---------------------------------------------------------------------

    def open_paths(self, paths: Sequence[str | Path]) -> bool:
        """Open a folder or images as the album (command line, drop, menus)."""
        if not paths:
            return False
        self.jobs.cancel()  # a job over the previous album must not go on
        return self.albums.open([str(p) for p in paths])

    def _on_album_opened(self, album) -> None:
        self.setWindowTitle(f"{album.root.name} — {TITLE}")
        self.side.set_options(album.method, album.exact_fit, album.instances)
        names = album.reference_names()
        self.side.set_subject(album.subject or (names[-1] if names else "subject"))
        self.settings.last_folder = str(album.root)

    # -- references and review -----------------------------------------------------------

    def _tell(self, message: str) -> None:
        """A message the user should see now and find later: status bar and Log."""
        self.status.showMessage(message, 8000)
        self.log.add(message)

    def _show_references(self, _count: int = 0) -> None:
        album = self.albums.album
        self.targets.set_references(album, album.references if album else [])

    def _show_review_state(self, _row: int = 0) -> None:
        record = self.albums.record
        self.side.set_confidence(record.state if record else None, record.confidence if record else None)
        self.side.set_review_count(len(self.albums.to_review()))

    def _propagate(self, options) -> None:
        self.jobs.propagate(options.method, options.exact, options.instances)

    def _ask_forget_references(self) -> None:
        album = self.albums.album
        if album is None or not album.references:
            self._tell("no reference to forget")
            return
        box = QMessageBox(QMessageBox.Icon.Question, TITLE,
                          f"Forget {describe(album.references)}?\n\nMasks already made stay. "
                          "Undo (Ctrl+Z) brings the references back until the album closes.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        if box.exec() == QMessageBox.StandardButton.Yes:
            self.albums.forget_references()

    def _ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open album folder", self.settings.last_folder)
        if folder:
            self.open_paths([folder])

    def _ask_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.last_folder, IMAGE_FILTER)
        if files:
            self.open_paths(files)

    def _ask_mask(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a mask for this image", self.settings.last_folder, IMAGE_FILTER)
        if path:
            self.albums.load_mask_file(Path(path))

    def _ask_export(self) -> None:
        album = self.albums.album
        if album is None:
            return
        dialog = ExportDialog(default_export_dir(album.root), len(self.panel.selected_rows()),
                              self.jobs_refine_available(), self, self.preview.spec)
        # Its Colour and Picture offer what the dock's do (chosen now or in an earlier session).
        dialog.background.recall(self.background.colour.name(), self.background.picture)
        if dialog.exec():
            o = dialog.options()
            rows = {CURRENT: [self.albums.current], ALBUM: list(range(len(album.records)))}.get(o.scope, self.panel.selected_rows())
            self.jobs.export(rows, o.folder, o.masks, o.cutouts, o.refine, o.background, o.cutout_suffix, o.dataset)

    def _add_background_dock(self, below: QDockWidget) -> QDockWidget:
        """The Background picker, docked under the Tools (a live preview on the canvas)."""
        dock = QDockWidget("Background", self)
        dock.setObjectName("dock-background")
        dock.setWidget(self.background)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.splitDockWidget(below, dock, Qt.Orientation.Vertical)
        return dock

    @staticmethod
    def jobs_refine_available() -> bool:
        from persam_studio.gui.backend import matting_available

        return matting_available()

    # -- model ---------------------------------------------------------------------------

    def _load_model(self) -> None:
        """Load the model the flags, PERSAM_CHECKPOINT or Settings ask for (in that order)."""
        choice, origin = effective_choice(self.settings.model_choice, self.launch)
        if origin.overridden:
            self.log.add(f"Settings' checkpoint {origin.overridden} is not used: {origin.checkpoint} wins")
        self.model.load(choice, origin)

    def _on_engine_ready(self, engine, info) -> None:
        self.images.set_engine(engine)
        text, tip = describe_model(info.model_type, info.device, info.path, self.model.origin or
                                   effective_choice(self.settings.model_choice, self.launch)[1])
        self.status.set_model(text, tip)
        self.log.add(f"model: {text} ({info.path})")
        if self.model_dialog is not None:
            self.model_dialog.close()

    def _on_checkpoint_missing(self) -> None:
        self.status.set_model("no model")
        self._show_model_dialog()

    def _on_model_failed(self, message: str) -> None:
        self.status.set_model("no model")
        self._show_model_dialog()
        self._show_error(message)  # on top of the dialog, parented to it

    def _show_model_dialog(self) -> None:
        if self.model_dialog is None:
            d = self.model_dialog = ModelDialog(self)
            d.download_requested.connect(self.model.download)
            d.cancel_requested.connect(self.model.cancel_download)
            d.file_chosen.connect(self._use_checkpoint)
            d.settings_requested.connect(self._ask_settings)
            self.model.download_progressed.connect(d.set_progress)
            self.model.download_finished.connect(self._on_downloaded)
            self.model.download_failed.connect(d.download_ended)
        self.model_dialog.show()
        self.model_dialog.raise_()

    def _on_downloaded(self, path) -> None:
        if self.model_dialog is not None:
            self.model_dialog.download_ended("Download cancelled." if path is None else f"Downloaded {path}; loading…")
        if path is not None:
            self._load_model()

    def _use_checkpoint(self, path: str) -> None:
        self.settings.model_choice = replace(self.settings.model_choice, checkpoint=path)
        self._warn_if_overridden()
        self._load_model()

    def _subject_choice(self) -> tuple[str, str]:
        """Settings' subject model and its map cache (``subject/`` in a chosen embedding cache)."""
        cache = self.settings.model_choice.cache_dir
        return self.settings.subject_model, str(Path(cache) / "subject") if cache else ""

    def _ask_settings(self) -> None:
        dialog = SettingsDialog(self.settings.model_choice, self.model_dialog if self._dialog_shown() else self,
                                self.settings.subject_model)
        if dialog.exec():
            self.settings.subject_model = dialog.subject_model_file()
            self.settings.model_choice = dialog.choice()
            self._warn_if_overridden()
            self._load_model()

    def _warn_if_overridden(self) -> None:
        """A checkpoint kept in Settings does not win over a flag or PERSAM_CHECKPOINT: say so."""
        _, origin = effective_choice(self.settings.model_choice, self.launch)
        if origin.checkpoint != SETTINGS and origin.overridden:
            self._show_error(f"{origin.overridden} is kept in Settings but not used: {origin.checkpoint} is set "
                             f"and wins (flag, then PERSAM_CHECKPOINT, then Settings).")

    def _dialog_shown(self) -> bool:
        return self.model_dialog is not None and self.model_dialog.isVisible()

    def _show_about(self) -> None:
        if self.about_dialog is not None:
            self.about_dialog.close()
        album = self.albums.album
        info = about_info(self.model.info, self.settings.model_choice, album.root if album else None)
        self.about_dialog = AboutDialog(info, self)
        self.about_dialog.show()  # non-modal, like the other info dialogs

    def _show_error(self, message: str) -> None:
        # Parented to the model dialog when it is open, so the box is on top of it, not behind.
        parent = self.model_dialog if self._dialog_shown() else self
        self.log.add(message)
        box = QMessageBox(QMessageBox.Icon.Warning, TITLE, message, QMessageBox.StandardButton.Ok, parent)
        box.setModal(False)
        box.show()  # never blocks: the app keeps working behind it
        box.raise_()
        self.error_box = box

    # -- window ---------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def closeEvent(self, event) -> None:
        self.settings.set_geometry(self.saveGeometry(), self.saveState())
        self.settings.opacity = self.side.opacity.value() / 100
        self.settings.outline = self.side.outline.isChecked()
        self.settings.background_colour = self.background.colour.name()
        self.settings.background_picture = self.background.picture
        self.settings.sync()
        if self.model_dialog is not None:
            self.model_dialog.close()
        self.jobs.cancel()
        self.model.cancel_download()
        self.albums.close()  # waits for the pending save: nothing is lost
        self.io_lane.shutdown()
        self.model_lane.shutdown()
        super().closeEvent(event)
