"""The window's actions (menus, toolbar, shortcuts) in one place."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoGroup, QUndoStack
from PySide6.QtWidgets import QMainWindow, QToolBar


class Actions:
    """Every QAction of the main window; :meth:`install` builds menus and toolbar."""

    def __init__(self, window: QMainWindow, undo_stack: QUndoStack | QUndoGroup) -> None:
        self.window = window
        a = self._make
        self.open_folder = a("Open folder…", "Ctrl+O", "Open every photo of a folder as the album")
        self.open_images = a("Open images…", "Ctrl+Shift+O", "Open chosen photos as the album")
        self.load_mask = a("Load mask file…", None, "Use a mask image (one made by hand, say) as this photo's mask")
        self.export = a("Export…", "Ctrl+E", "Save masks or cutouts of this photo, the selection or the album")
        self.quit = a("Quit", "Ctrl+Q", "Close the app (the album is saved as you work)")

        self.undo = undo_stack.createUndoAction(window, "Undo")
        self.undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.describe(self.undo, "Take back the last prompt, stroke, candidate change or clear")
        self.redo = undo_stack.createRedoAction(window, "Redo")
        self.redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.describe(self.redo, "Do again what Undo took back")
        window.addAction(self.undo)
        window.addAction(self.redo)
        self.clear = a("Clear mask", "Esc", "Remove this photo's mask, prompts and strokes")
        self.cycle = a("Next candidate", "Tab", "Show SAM's next of three masks (after one point or one box)")

        self.tools = QActionGroup(window)
        self.tool_prompt = a("Prompt", "V", "Click: object point, right click: background, drag: box", checkable=True)
        self.tool_brush = a("Brush", "B", "Paint onto the mask by hand", checkable=True)
        self.tool_eraser = a("Eraser", "E", "Paint parts out of the mask", checkable=True)
        for t in (self.tool_prompt, self.tool_brush, self.tool_eraser):
            self.tools.addAction(t)
        self.tool_prompt.setChecked(True)
        self.brush_smaller = a("Smaller brush", "[", "Shrink the brush and eraser")
        self.brush_larger = a("Larger brush", "]", "Grow the brush and eraser")

        self.fit = a("Fit", "F", "Show the whole photo in the window")
        self.zoom_100 = a("100 %", "1", "One photo pixel per screen pixel")
        self.zoom_in = a("Zoom in", "+", "Magnify the photo (or turn the wheel over it)")
        self.zoom_in.setShortcuts([QKeySequence("+"), QKeySequence("=")])
        self.describe(self.zoom_in, "Magnify the photo (or turn the wheel over it)")
        self.zoom_out = a("Zoom out", "-", "See more of the photo (or turn the wheel over it)")
        self.next_image = a("Next image", "PgDown", "Go to the album's next photo")
        self.previous_image = a("Previous image", "PgUp", "Go to the album's previous photo")

        self.select_subject = a("Select subject", "S", "Mask this photo's main subject with no click (then click to refine)")
        self.select_all = a("Select subject in all photos", "Ctrl+Shift+S",
                            "Mask the main subject of every photo you have not masked or accepted")
        self.prepare = a("Prepare album", None, "Encode every photo now, so clicks and propagation are quick later")
        self.use_reference = a("Use as reference", "R", "Teach PerSAM the subject from this photo's mask")
        self.propagate = a("Propagate to album", "Ctrl+Shift+P",
                           "Find the subject in every photo you have not masked or accepted")
        self.accept = a("Accept mask", "A", "Mark this photo's mask as checked; propagation never overwrites it")
        self.forget_references = a("Forget references…", None, "Drop every reference of this album (asks; undoable)")
        self.cancel_job = a("Cancel job", None, "Stop the running prepare, propagation, selection or export")

        self.next_review = a("Next to review", "N", "Go to the next photo flagged needs review (wraps around)")
        self.previous_review = a("Previous to review", "Shift+N", "Go to the previous photo flagged needs review")
        self.review_only = a("Show only photos to review", "Ctrl+Shift+R",
                             "Hide the album's photos that are not flagged needs review", checkable=True)

        self.settings = a("Settings…", None, "Choose the model type, checkpoint, device, cache folder and subject model")
        self.model = a("Model…", None, "Download a model checkpoint or pick a checkpoint file")
        self.shortcuts = a("Shortcuts", "F1", "List every key and mouse gesture")
        self.about = a("About PerSAM Studio", None, "Version, model, device and the folders the app uses")

    @staticmethod
    def keys(action: QAction) -> str:
        """The action's shortcuts as the platform writes them ("Ctrl+E", "⌘E")."""
        return " or ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())

    @classmethod
    def describe(cls, action: QAction, what: str) -> None:
        """Tooltip: what the action does, then its keys (toolbars show only the tooltip)."""
        keys = cls.keys(action)
        action.setToolTip(f"{what} ({keys})" if keys else what)

    def _make(self, text: str, shortcut: str | None, what: str, checkable: bool = False) -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        self.describe(action, what)
        self.window.addAction(action)  # shortcuts work even when not in a menu
        return action

    def install(self, window: QMainWindow) -> QToolBar:
        bar = window.menuBar()
        m = bar.addMenu("&File")
        for x in (self.open_folder, self.open_images, None, self.load_mask, self.export, None, self.settings, self.model, None, self.quit):
            m.addSeparator() if x is None else m.addAction(x)
        m = bar.addMenu("&Edit")
        for x in (self.undo, self.redo, None, self.select_subject, self.clear, self.cycle, None, self.tool_prompt, self.tool_brush, self.tool_eraser, self.brush_smaller, self.brush_larger):
            m.addSeparator() if x is None else m.addAction(x)
        m = bar.addMenu("&View")
        for x in (self.fit, self.zoom_100, self.zoom_in, self.zoom_out, None, self.next_image, self.previous_image,
                  None, self.next_review, self.previous_review, self.review_only):
            m.addSeparator() if x is None else m.addAction(x)
        m = bar.addMenu("&Album")
        for x in (self.prepare, None, self.select_all, None, self.use_reference, self.propagate, self.accept, self.forget_references,
                  None, self.cancel_job):
            m.addSeparator() if x is None else m.addAction(x)
        m = bar.addMenu("&Help")
        m.addAction(self.shortcuts)
        m.addAction(self.about)

        tb = QToolBar("Main", window)
        tb.setObjectName("main-toolbar")
        for x in (self.open_folder, None, self.tool_prompt, self.tool_brush, self.tool_eraser, None, self.undo, self.redo, None,
                  self.fit, self.zoom_100, None, self.select_subject, None, self.prepare, self.use_reference, self.propagate, self.export):
            tb.addSeparator() if x is None else tb.addAction(x)
        window.addToolBar(tb)
        return tb
