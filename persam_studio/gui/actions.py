"""The window's actions (menus, toolbar, shortcuts) in one place."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QUndoStack
from PySide6.QtWidgets import QMainWindow, QToolBar


class Actions:
    """Every QAction of the main window; :meth:`install` builds menus and toolbar."""

    def __init__(self, window: QMainWindow, undo_stack: QUndoStack) -> None:
        self.window = window
        a = self._make
        self.open_folder = a("Open folder…", "Ctrl+O")
        self.open_images = a("Open images…", "Ctrl+Shift+O")
        self.load_mask = a("Load mask file…")
        self.export = a("Export…", "Ctrl+E")
        self.quit = a("Quit", "Ctrl+Q")

        self.undo = undo_stack.createUndoAction(window, "Undo")
        self.undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.redo = undo_stack.createRedoAction(window, "Redo")
        self.redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        window.addAction(self.undo)
        window.addAction(self.redo)
        self.clear = a("Clear mask", "Esc")
        self.cycle = a("Next candidate", "Tab")

        self.tools = QActionGroup(window)
        self.tool_prompt = a("Prompt", "V", checkable=True)
        self.tool_brush = a("Brush", "B", checkable=True)
        self.tool_eraser = a("Eraser", "E", checkable=True)
        for t in (self.tool_prompt, self.tool_brush, self.tool_eraser):
            self.tools.addAction(t)
        self.tool_prompt.setChecked(True)
        self.brush_smaller = a("Smaller brush", "[")
        self.brush_larger = a("Larger brush", "]")

        self.fit = a("Fit", "F")
        self.zoom_100 = a("100 %", "1")
        self.zoom_in = a("Zoom in", "+")
        self.zoom_in.setShortcuts([QKeySequence("+"), QKeySequence("=")])
        self.zoom_out = a("Zoom out", "-")
        self.next_image = a("Next image", "PgDown")
        self.previous_image = a("Previous image", "PgUp")

        self.prepare = a("Prepare album")
        self.prepare.setToolTip("Encode every image now, so clicks are instant later")
        self.use_reference = a("Use as reference", "R")
        self.propagate = a("Propagate to album", "Ctrl+Shift+P")
        self.accept = a("Accept mask", "A")
        self.cancel_job = a("Cancel job")

        self.settings = a("Settings…")
        self.model = a("Model…")
        self.shortcuts = a("Shortcuts", "F1")

    def _make(self, text: str, shortcut: str | None = None, checkable: bool = False) -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        self.window.addAction(action)  # shortcuts work even when not in a menu
        return action

    def install(self, window: QMainWindow) -> QToolBar:
        bar = window.menuBar()
        m = bar.addMenu("&File")
        for x in (self.open_folder, self.open_images, None, self.load_mask, self.export, None, self.settings, self.model, None, self.quit):
            m.addSeparator() if x is None else m.addAction(x)
        m = bar.addMenu("&Edit")
        for x in (self.undo, self.redo, None, self.clear, self.cycle, None, self.tool_prompt, self.tool_brush, self.tool_eraser, self.brush_smaller, self.brush_larger):
            m.addSeparator() if x is None else m.addAction(x)
        m = bar.addMenu("&View")
        for x in (self.fit, self.zoom_100, self.zoom_in, self.zoom_out, None, self.next_image, self.previous_image):
            m.addSeparator() if x is None else m.addAction(x)
        m = bar.addMenu("&Album")
        for x in (self.prepare, None, self.use_reference, self.propagate, self.accept, None, self.cancel_job):
            m.addSeparator() if x is None else m.addAction(x)
        bar.addMenu("&Help").addAction(self.shortcuts)

        tb = QToolBar("Main", window)
        tb.setObjectName("main-toolbar")
        for x in (self.open_folder, None, self.tool_prompt, self.tool_brush, self.tool_eraser, None, self.undo, self.redo, None,
                  self.fit, self.zoom_100, None, self.prepare, self.use_reference, self.propagate, self.export):
            tb.addSeparator() if x is None else tb.addAction(x)
        window.addToolBar(tb)
        return tb
