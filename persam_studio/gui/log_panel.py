"""The *Log* dock: job summaries and messages that stay (the status bar's fade).

Each entry is one line with the time; long summaries wrap instead of being
cut at the window's edge, and every error of a job is listed.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QPlainTextEdit

MAX_ENTRIES = 2000


class LogPanel(QPlainTextEdit):
    """Read-only, selectable, newest at the bottom."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_ENTRIES)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setPlaceholderText("Job summaries and messages appear here.")
        self.setToolTip("What the app did: job summaries, errors, refusals")
        self.entries: list[str] = []

    def add(self, text: str) -> None:
        self.entries.append(text)
        del self.entries[:-MAX_ENTRIES]
        self.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())
