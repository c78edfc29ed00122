"""References grouped into targets, and *Forget references* as an undoable command.

References sharing a name are one target (PerSAM averages them). Forgetting
moves their mask files into the sidecar's ``trash/`` (through the album
saver, off the GUI thread); Undo moves them back and restores the list; the
trash is emptied when the album closes (see
:func:`persam_studio.core.io.album.empty_trash`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

from PySide6.QtGui import QUndoCommand

from persam_studio.core.io.album import Album, ReferenceRecord, move_reference_file
from persam_studio.gui.autosave import AlbumSaver


def targets(references: Sequence[ReferenceRecord]) -> list[tuple[str, list[ReferenceRecord]]]:
    """(name, references) per target, in the order names first appear."""
    by_name: dict[str, list[ReferenceRecord]] = {}
    for ref in references:
        by_name.setdefault(ref.name, []).append(ref)
    return list(by_name.items())


def describe(references: Sequence[ReferenceRecord]) -> str:
    """``3 references: 'my cat' (2), 'dog' (1)``."""
    n = len(references)
    parts = ", ".join(f"{name!r} ({len(refs)})" for name, refs in targets(references))
    return f"{n} reference{'s' if n != 1 else ''}: {parts}"


class ForgetReferences(QUndoCommand):
    """Forget every reference of the album; undo brings them (and their masks) back.

    Args:
        album: the album (while it is open: the command is dropped with the
            photo histories when it closes).
        saver: writes the JSON and moves the mask files, off the GUI thread.
        changed: called after each change of the list (refresh the panel).
        tell: shows a message to the user.
    """

    def __init__(self, album: Album, saver: AlbumSaver, changed: Callable[[], None],
                 tell: Callable[[str], None]) -> None:
        super().__init__("Forget references")
        self.album, self.saver, self.changed, self.tell = album, saver, changed, tell
        self.references = list(album.references)

    def redo(self) -> None:
        self._set(forgotten=True)
        self.tell(f"Forgot {describe(self.references)}. Undo (Ctrl+Z) brings them back; "
                  "their mask files are deleted when the album closes.")

    def undo(self) -> None:
        self._set(forgotten=False)
        self.tell(f"Restored {describe(self.references)}.")

    def _set(self, forgotten: bool) -> None:
        album = self.album
        # References added after the forget are kept either way.
        others = [r for r in album.references if r not in self.references]
        album.references = others if forgotten else self.references + others
        sidecar = album.sidecar
        moves = {("reference", r.mask): partial(move_reference_file, sidecar, r.mask, forgotten)
                 for r in self.references}
        self.saver.schedule(album, moves)
        self.changed()
