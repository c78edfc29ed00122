"""Atomic file writes: every file the app writes goes through here.

A write goes to a temporary file in the destination folder, is flushed and
fsynced, then ``os.replace``-d over the destination. A crash or kill leaves
either the old file or the new one, never a partial file; the temporary file
of an interrupted write is removed or, after a hard kill, left with a name that
starts with ``.`` and ends with ``.part`` (readers ignore those).

The destination must be a new path or a regular file
(:func:`persam_studio.core.io.guard.check_destination`): a device, FIFO,
folder or a link to one is refused with ``OutputError`` before anything is
written. A symbolic link to a regular file is replaced by the new file; the
file it pointed to is not written through.

:func:`staged_writes` groups the writes of one command: inside it, every
write is prepared in full (temporary file written and fsynced) but only moved
into place when the block ends without an error. A command whose second
output fails therefore leaves neither output behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator

from persam_studio.core.io.guard import check_destination

# The writes staged by the innermost staged_writes() block: (tmp, dest) pairs.
_staged: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "persam_staged_writes", default=None
)

# The temporary of ``dest`` is ".<dest name>.<8 random characters>.part":
# mkstemp's random part is 8 characters of [a-z0-9_]. One pattern, so that
# clean-up after a killed run removes only what this module made.
_TEMP_SUFFIX = ".part"
_TEMP_NAME = re.compile(r"^\.(?P<dest>.+)\.[a-z0-9_]{8}\.part$")


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success move it over ``dest``.

    Use this for libraries that want a file name (``PIL.Image.save``,
    ``numpy.save``). The caller writes the whole file to the yielded path.
    On an exception the temporary file is removed and ``dest`` is untouched.
    Inside :func:`staged_writes` the move happens when that block ends.

    Raises:
        OutputError: ``dest`` exists and is not a regular file (see
            :func:`~persam_studio.core.io.guard.check_destination`).
        OSError: the folder or the file cannot be written.
    """
    dest = Path(dest)
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=_TEMP_SUFFIX, dir=dest.parent)
    # mkstemp creates 0600; give the file the mode a plain open() would
    # (0666 less the umask) so exported masks are readable as usual.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        staged = _staged.get()
        if staged is not None:
            staged.append((tmp_path, dest))
            return
        check_destination(dest)  # again: it may have changed while we wrote
        os.replace(tmp_path, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def staged_writes() -> Iterator[None]:
    """Make the atomic writes inside the block all-or-nothing.

    Each write inside is complete on disk (in its temporary file) before any
    destination is touched; when the block ends normally they are moved into
    place in order. On an exception no destination is touched and the
    temporary files are removed. If moving one into place fails, the files
    this block already moved to new paths are removed again (an existing
    file that was already replaced cannot be brought back), and the error
    propagates.
    """
    outer = _staged.get()
    pending: list[tuple[Path, Path]] = []
    token = _staged.set(pending)
    try:
        yield
    except BaseException:
        _staged.reset(token)
        _discard(pending)
        raise
    _staged.reset(token)
    if outer is not None:  # nested: the outer block decides
        outer.extend(pending)
        return
    created: list[Path] = []
    try:
        for i, (tmp, dest) in enumerate(pending):
            check_destination(dest)
            existed = os.path.lexists(dest)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            if not existed:
                created.append(dest)
    except BaseException:
        _discard(pending[i:])
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        raise


def _discard(pending: list[tuple[Path, Path]]) -> None:
    for tmp, _ in pending:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(dest: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``dest`` on success."""
    if "w" not in mode:
        raise ValueError("atomic_open is for writing only")
    with atomic_path(dest) as tmp:
        with open(tmp, mode) as fh:
            yield fh


def atomic_write_bytes(dest: str | Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_open(dest, "wb") as fh:
        fh.write(data)


def atomic_write_text(dest: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``dest`` atomically."""
    atomic_write_bytes(dest, text.encode("utf-8"))


def temporary_of(name: str) -> str | None:
    """The destination file name a temporary called ``name`` was made for, or None.

    ``temporary_of(".cat.png.k3x_9a2b.part") == "cat.png"``; any other name
    (a user's own ``notes.part``, say) gives None.
    """
    match = _TEMP_NAME.match(name)
    return match.group("dest") if match else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the rename durable; not supported everywhere.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
