"""The one rule every write obeys: never over an input, a non-file, or twice.

A command may write only to a *new path* or over an existing *regular file*
that it does not read. Everything else is refused with one
:class:`~persam_studio.core.errors.OutputError` before anything is written:

* a destination that exists and is not a regular file: a folder, a device
  (``/dev/null``, ``/dev/sda``), a FIFO, a socket. ``os.replace`` would
  swap the device node or pipe for our file (as root it can);
* a destination that is one of the command's inputs, of any kind (image,
  mask, checkpoint, annotation, background, reference): the same path, a
  symbolic link to it, or a hard link (same inode);
* two outputs of one command that name the same file.

Symbolic links: the check looks at what ``lstat`` sees. A link to a regular
file (or a dangling link) is an acceptable destination, and the atomic
writer *replaces the link itself* with the new file (``os.replace``
semantics): the file it pointed to is never written through. A link to
anything that is not a regular file (a device, a FIFO, a folder) is refused,
so a link cannot smuggle in what the plain path would be refused for.

:func:`check_destination` is applied by the atomic writer
(:mod:`persam_studio.core.io.atomic`) to every file it replaces;
:func:`check_outputs` is what commands call once, with every path they read
and every path they will write, before writing any.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Sequence

from persam_studio.core.errors import OutputError


def check_destination(dest: str | Path) -> None:
    """Refuse ``dest`` unless it is a new path or a regular file (see module doc).

    Raises:
        OutputError: ``dest`` is a folder, a device, a FIFO, a socket, or a
            symbolic link to one of those.
    """
    dest = Path(dest)
    try:
        st = os.lstat(dest)
    except OSError:
        # Nothing there, or a path that cannot exist (a parent is a file): the
        # write itself then fails with the OSError its callers already handle.
        return
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        try:
            mode = os.stat(dest).st_mode
        except OSError:
            return  # a dangling link: replaced by the new file, nothing behind it
    if stat.S_ISDIR(mode):
        raise OutputError(dest, "is a folder; give a file name")
    if not stat.S_ISREG(mode):
        raise OutputError(dest, f"is not a regular file ({_kind(mode)}); refusing to write over it")


def check_outputs(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path] = (), *, destinations: bool = True
) -> None:
    """Check every output of a command against the rule, before anything is written.

    Args:
        outputs: every file the command will write.
        inputs: every file the command reads (folders may be given; an output
            inside an input folder is fine, only the same path is refused).
        destinations: also check each output's kind now (not a device, FIFO,
            folder). Batch commands pass False: the atomic writer checks it
            again per item, so one bad output fails its photo, not the batch.

    Raises:
        OutputError: the first output that breaks the rule, with the reason.
    """
    # Linear in the number of paths: an album command checks thousands of
    # outputs against thousands of inputs.
    seen: dict[object, Path] = {}  # identity of each output so far -> that output
    inputs_by_id: dict[object, Path] = {}
    for src in inputs:
        for ident in _identities(Path(src)):
            inputs_by_id.setdefault(ident, Path(src))
    for out in (Path(p) for p in outputs):
        if destinations:
            check_destination(out)
            _check_parent(out)
        idents = _identities(out)
        for ident in idents:
            if ident in seen:
                raise OutputError(out, f"is given twice as an output (also {seen[ident]}); give two names")
        for ident in idents:
            if ident in inputs_by_id:
                src = inputs_by_id[ident]
                raise OutputError(out, f"is an input of this command ({src}); refusing to overwrite an input")
        for ident in idents:
            seen[ident] = out


def _check_parent(path: Path) -> None:
    """Refuse, before any work, an output whose folder can never exist (a file is in the way)."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(path, f"cannot write: {parent} is not a folder")
            return


def _identities(path: Path) -> list[object]:
    """What makes two paths one file: the resolved path, and (device, inode) when it exists."""
    idents: list[object] = [os.path.normcase(os.path.realpath(path))]
    try:
        st = os.stat(path)
    except OSError:
        return idents  # a new path: only its name can clash
    idents.append((st.st_dev, st.st_ino))  # hard links, bind mounts
    return idents


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: same resolved path, or same inode."""
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False  # one of them does not exist (yet)


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
