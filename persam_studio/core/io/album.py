"""An album's editing state as plain data, saved beside the photos as JSON.

An :class:`Album` is the list of images the user opened (a folder or chosen
files), each with an :class:`ImageRecord`: its :class:`ImageState`, the
prompts that made its mask (points, box), brush strokes on top, and how the
mask's base is stored. References (masks used to personalise SAM) are
:class:`ReferenceRecord`.

Everything lives in a sidecar folder ``<root>/.persam-studio/``::

    album.json                 this module's JSON (FORMAT_VERSION)
    masks/<id>.png             the current mask at display size (what the
                               user saw; thumbnails, restore without a model)
    masks/<id>.logits.npy      float16 (256, 256) SAM low-res logits of the
                               mask's base (exact full-size export later)
    masks/<id>.bitmap.png      a base mask loaded from a file, full size
    references/<id>-<n>.png    full-size reference masks
    trash/<id>-<n>.png         masks of forgotten references, kept so that
                               the app's Undo can bring them back; emptied
                               when the app closes the album

Every write is atomic (:mod:`persam_studio.core.io.atomic`), so a crash leaves
the state of the last completed action. Hidden folders are skipped when
listing images, so the sidecar never shows up as album content.

Coordinates (points, boxes, strokes) are pixels of the EXIF-oriented image,
x = column, y = row. No Qt here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from persam_studio.core.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from persam_studio.core.errors import OutputError
from persam_studio.core.types import Box, Point

SIDECAR = ".persam-studio"
ALBUM_FILE = "album.json"
TRASH = "trash"  # forgotten references' masks, until the album closes
FORMAT_VERSION = 1


class ImageState(str, Enum):
    """Where an image stands; shown as a coloured badge in the album."""

    UNTOUCHED = "untouched"
    MASKED = "masked"  # the user made or edited its mask
    PROPAGATED = "propagated"  # PerSAM found the subject confidently
    NEEDS_REVIEW = "needs_review"  # PerSAM was unsure (or found nothing)
    ACCEPTED = "accepted"  # the user approved the mask


@dataclass(frozen=True)
class Stroke:
    """A brush (``mode="add"``) or eraser (``"erase"``) stroke.

    ``radius`` and ``points`` are in image pixels, so a stroke renders the
    same at display size and at full size on export.
    """

    mode: str
    radius: float
    points: tuple[tuple[float, float], ...]


@dataclass
class ImageRecord:
    """One image of the album and how its mask was made.

    Attributes:
        path: as stored: relative to the album root (POSIX separators), or
            absolute for an image outside it.
        state: see :class:`ImageState`.
        points, box: the prompts of the current mask (empty for a
            propagated or loaded mask).
        strokes: brush and eraser touch-ups applied on top of the base.
        base: "none", "logits" (``masks/<id>.logits.npy``) or "bitmap"
            (``masks/<id>.bitmap.png``).
        confidence: PerSAM's confidence for a propagated mask, else None.
        size: (H, W) of the oriented image once known.
    """

    path: str
    state: ImageState = ImageState.UNTOUCHED
    points: tuple[Point, ...] = ()
    box: Box | None = None
    strokes: tuple[Stroke, ...] = ()
    base: str = "none"
    confidence: float | None = None
    size: tuple[int, int] | None = None

    @property
    def id(self) -> str:
        """File-name-safe identity of the image within the album."""
        return hashlib.blake2b(self.path.encode("utf-8"), digest_size=8).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "state": self.state.value,
            "points": [[p.x, p.y, p.label] for p in self.points],
            "box": None if self.box is None else [self.box.x0, self.box.y0, self.box.x1, self.box.y1],
            "strokes": [
                {"mode": s.mode, "radius": s.radius, "points": [list(q) for q in s.points]}
                for s in self.strokes
            ],
            "base": self.base,
            "confidence": self.confidence,
            "size": None if self.size is None else list(self.size),
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> ImageRecord:
        box = d.get("box")
        size = d.get("size")
        return ImageRecord(
            path=str(d["path"]),
            state=ImageState(d.get("state", "untouched")),
            points=tuple(Point(float(x), float(y), int(lab)) for x, y, lab in d.get("points", [])),
            box=None if box is None else Box(*map(float, box)),
            strokes=tuple(
                Stroke(str(s["mode"]), float(s["radius"]), tuple((float(x), float(y)) for x, y in s["points"]))
                for s in d.get("strokes", [])
            ),
            base=str(d.get("base", "none")),
            confidence=None if d.get("confidence") is None else float(d["confidence"]),
            size=None if size is None else (int(size[0]), int(size[1])),
        )


@dataclass(frozen=True)
class ReferenceRecord:
    """A reference: an image and a full-size mask of the subject named ``name``."""

    name: str
    image: str  # stored like ImageRecord.path
    mask: str  # file name under references/


@dataclass
class Album:
    """The images of an album and their state; see the module docstring."""

    root: Path
    records: list[ImageRecord]
    references: list[ReferenceRecord] = field(default_factory=list)
    method: str = ""  # PerSAM's method last used ("": none yet, the front end's default)
    exact_fit: bool = False  # PerSAM-F's full-size fit, last used
    instances: int | None = 1  # instances per photo last asked for (None: all)
    subject: str = ""  # the name last typed for the subject ("" = none yet)
    # Records of images in the saved state that were not opened this time:
    # kept verbatim so opening a few files never forgets the rest.
    _other: list[dict[str, Any]] = field(default_factory=list, repr=False)

    # -- opening ------------------------------------------------------------

    @classmethod
    def open(cls, images: Sequence[str | Path], root: str | Path | None = None) -> Album:
        """An album over ``images`` (already listed), restored from its sidecar.

        Args:
            images: image files, in display order.
            root: the folder the user opened; default the deepest folder
                holding all ``images``.
        """
        paths = [Path(p).absolute() for p in images]
        root = Path(root).absolute() if root is not None else album_root(paths)
        album = cls(root=root, records=[ImageRecord(path=_stored(p, root)) for p in paths])
        album._restore()
        return album

    @property
    def sidecar(self) -> Path:
        return self.root / SIDECAR

    def path_of(self, record: ImageRecord) -> Path:
        """Absolute path of a record's image."""
        p = Path(record.path)
        return p if p.is_absolute() else self.root / p

    def index_of(self, path: str | Path) -> int | None:
        key = _stored(Path(path).absolute(), self.root)
        for i, r in enumerate(self.records):
            if r.path == key:
                return i
        return None

    def counts(self) -> dict[ImageState, int]:
        out = {s: 0 for s in ImageState}
        for r in self.records:
            out[r.state] += 1
        return out

    # -- saving and restoring -------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "method": self.method,
            "exact_fit": self.exact_fit,
            "instances": self.instances,
            "subject": self.subject,
            "images": [r.to_json() for r in self.records] + self._other,
            "references": [{"name": r.name, "image": r.image, "mask": r.mask} for r in self.references],
        }

    def save(self) -> None:
        """Write ``album.json`` atomically.

        Raises:
            OutputError: the sidecar folder cannot be written (read-only album).
        """
        write_album_json(self.sidecar, self.to_json())

    def _restore(self) -> None:
        path = self.sidecar / ALBUM_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # no state yet, or unreadable: start fresh, never crash
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            return
        self.method = str(data.get("method", self.method))
        self.exact_fit = data.get("exact_fit") is True
        n = data.get("instances", 1)
        # A hand-edited or foreign value falls back to the default, never crashes.
        self.instances = None if n is None else (n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1)
        self.subject = str(data.get("subject") or "")
        by_path: dict[str, dict[str, Any]] = {}
        for d in data.get("images", []):
            if isinstance(d, dict) and "path" in d:
                by_path[str(d["path"])] = d
        for i, r in enumerate(self.records):
            d = by_path.pop(r.path, None)
            if d is not None:
                try:
                    self.records[i] = ImageRecord.from_json(d)
                except (KeyError, TypeError, ValueError):
                    pass  # one damaged entry: that image starts fresh
        self._other = list(by_path.values())
        for d in data.get("references", []):
            try:
                ref = ReferenceRecord(str(d["name"]), str(d["image"]), str(d["mask"]))
            except (KeyError, TypeError):
                continue
            if (self.sidecar / "references" / ref.mask).exists():
                self.references.append(ref)

    # -- mask files -------------------------------------------------------------

    def mask_file(self, record: ImageRecord, kind: str = "display") -> Path:
        """``masks/<id>.png`` (display), ``.logits.npy`` or ``.bitmap.png``."""
        suffix = {"display": ".png", "logits": ".logits.npy", "bitmap": ".bitmap.png"}[kind]
        return self.sidecar / "masks" / f"{record.id}{suffix}"

    def save_display_mask(self, record: ImageRecord, mask: np.ndarray | None) -> None:
        """Store (or, for ``None``, remove) the display-size mask, bool (h, w)."""
        path = self.mask_file(record, "display")
        if mask is None:
            _guarded(path, lambda: path.unlink(missing_ok=True))
            return
        _guarded(path, lambda: write_mask_png(path, mask))

    def load_display_mask(self, record: ImageRecord) -> np.ndarray | None:
        return read_mask_png(self.mask_file(record, "display"))

    def save_logits(self, record: ImageRecord, logits: np.ndarray) -> None:
        """Store the base's low-res logits, float (256, 256), as float16."""
        path = self.mask_file(record, "logits")
        data = np.asarray(logits, dtype=np.float32).reshape(256, 256).astype(np.float16)

        def write() -> None:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, data)

        _guarded(path, write)

    def load_logits(self, record: ImageRecord) -> np.ndarray | None:
        """float32 (256, 256) or None when missing or damaged."""
        try:
            data = np.load(self.mask_file(record, "logits"), allow_pickle=False)
        except (OSError, ValueError):
            return None
        if data.shape != (256, 256):
            return None
        return data.astype(np.float32)

    def save_bitmap(self, record: ImageRecord, mask: np.ndarray) -> None:
        """Store a full-size base mask, bool (H, W)."""
        path = self.mask_file(record, "bitmap")
        _guarded(path, lambda: write_mask_png(path, mask))

    def load_bitmap(self, record: ImageRecord) -> np.ndarray | None:
        return read_mask_png(self.mask_file(record, "bitmap"))

    # -- references ---------------------------------------------------------------

    def new_reference_file(self, record: ImageRecord) -> Path:
        """A fresh path under ``references/`` for a reference mask of ``record``."""
        n = 0
        while (self.sidecar / "references" / f"{record.id}-{n}.png").exists() or (
            self.sidecar / TRASH / f"{record.id}-{n}.png"
        ).exists() or any(
            r.mask == f"{record.id}-{n}.png" for r in self.references
        ):
            n += 1
        return self.sidecar / "references" / f"{record.id}-{n}.png"

    def add_reference(self, name: str, record: ImageRecord, mask: np.ndarray | Path) -> ReferenceRecord:
        """Record a reference of the subject ``name`` on ``record``'s image.

        Args:
            mask: bool (H, W) full size (written now), or the path of a mask
                already written under ``references/`` (e.g. by a worker
                into :meth:`new_reference_file`).
        """
        if isinstance(mask, Path):
            path = mask
        else:
            path = self.new_reference_file(record)
            data = mask
            _guarded(path, lambda: write_mask_png(path, data))
        ref = ReferenceRecord(name=name, image=record.path, mask=path.name)
        self.references.append(ref)
        return ref

    def remove_references(self) -> list[ReferenceRecord]:
        """Forget every reference; returns them (their mask files stay: see :func:`move_reference_file`)."""
        removed, self.references = self.references, []
        return removed

    def reference_mask(self, ref: ReferenceRecord) -> np.ndarray | None:
        return read_mask_png(self.sidecar / "references" / ref.mask)

    def reference_image(self, ref: ReferenceRecord) -> Path:
        p = Path(ref.image)
        return p if p.is_absolute() else self.root / p

    def reference_names(self) -> list[str]:
        return list(dict.fromkeys(r.name for r in self.references))


def write_album_json(sidecar: Path, data: dict[str, Any]) -> None:
    """Write :meth:`Album.to_json`'s ``data`` as ``sidecar/album.json``, atomically.

    Takes a snapshot, not the album, so that a worker can write it while the
    GUI goes on changing the album.

    Raises:
        OutputError: the sidecar folder cannot be written (read-only album).
    """
    text = json.dumps(data, indent=1)
    _guarded(sidecar, lambda: atomic_write_text(sidecar / ALBUM_FILE, text))


def move_reference_file(sidecar: Path, name: str, to_trash: bool) -> None:
    """Move the reference mask ``name`` into ``trash/`` (or back to ``references/``).

    Idempotent: a file already where it should be, or in neither place, is
    left alone, so an undo that follows a forget before either was written
    does no harm.

    Raises:
        OutputError: the file cannot be moved.
    """
    live, trashed = sidecar / "references" / name, sidecar / TRASH / name
    src, dst = (live, trashed) if to_trash else (trashed, live)
    if not src.exists():
        return

    def move() -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)

    _guarded(dst, move)


def empty_trash(sidecar: Path) -> None:
    """Delete the masks of forgotten references for good (album closed)."""
    folder = sidecar / TRASH
    try:
        files = list(folder.iterdir())
    except OSError:
        return
    for f in files:
        try:
            f.unlink()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def album_root(paths: Iterable[Path]) -> Path:
    """The deepest folder that holds every one of ``paths`` (absolute)."""
    parents = [str(Path(p).absolute().parent) for p in paths]
    if not parents:
        return Path.cwd()
    try:
        return Path(os.path.commonpath(parents))
    except ValueError:  # different drives on Windows
        return Path(parents[0])


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    """Write a bool (H, W) mask as a 1-bit PNG, atomically.

    1 bit a pixel: the app writes one after every click, and a bilevel PNG
    compresses a ragged 1920x1440 mask in about a third of the time of an
    8-bit one (23 vs 69 ms), time the save would otherwise take from the next
    click on a 2-core laptop. Any PNG reader gives 0/255 grey
    (:func:`read_mask_png` reads both this and the 8-bit files of older albums).
    """
    import cv2

    m = np.ascontiguousarray(np.asarray(mask, bool), dtype=np.uint8)
    ok, data = cv2.imencode(".png", m * np.uint8(255), [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"{path}: cannot encode the mask as PNG")
    atomic_write_bytes(path, data.tobytes())


def read_mask_png(path: Path) -> np.ndarray | None:
    """A mask written by :func:`write_mask_png`, bool (H, W); None if unreadable."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > 127
    except (OSError, ValueError):
        return None


def _stored(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _guarded(path: Path, write) -> None:
    try:
        write()
    except OSError as e:
        raise OutputError(path, f"cannot save album state ({e.strerror or e})") from None
