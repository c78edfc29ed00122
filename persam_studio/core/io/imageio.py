"""Read images and masks exactly as a user sees them, and list album inputs.

Every pixel array leaving this module is in the frame of the *oriented*
image: EXIF orientation applied, so a mask drawn on the displayed photo lines
up with it. x = column, y = row, origin at the top-left corner.

Errors a user can cause (a missing, empty, truncated or foreign file, a mask
of the wrong size) raise :class:`ImageReadError` or :class:`MaskError` with a
one-line message naming the file.

Saving masks, cutouts and images is in :mod:`persam_studio.core.io.export`.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from persam_studio.core.errors import ImageReadError, MaskError

#: File extensions :func:`list_images` picks up in folders (lower case).
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}
)

#: PIL decoders we let run. Restricting them keeps exotic plugins (EPS calls
#: Ghostscript, for one) away from files users drop on the app. "JPEG" also
#: opens MPO, camera JPEGs that embed a second (preview) picture.
_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP")

#: Largest image we decode, in pixels. PIL's default guard warns at 89 MP and
#: refuses at 179 MP, which would refuse 100-150 MP medium-format camera files;
#: 250 MP is 750 MB of decoded RGB, about the most a laptop can segment. The
#: PIL limit is process-wide: we set it once, here, to the same number so PIL
#: and this module agree (PIL still raises by itself above twice the limit).
MAX_PIXELS = 250_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Never decode a damaged file into a half-grey picture: truncation is an error.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_OUR_ERRORS = (ImageReadError, MaskError)

# What PIL and zlib raise on damaged data (besides OSError).
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error, IndexError)


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded, oriented image.

    Attributes:
        path: the file it came from.
        pixels: uint8 (H, W, 3) RGB, read-only, EXIF orientation applied.
            Transparent pixels keep their stored colour (not composited).
        alpha: uint8 (H, W) opacity when the file had transparency that is
            not fully opaque everywhere, else None.
    """

    path: Path
    pixels: np.ndarray
    alpha: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the oriented image in pixels."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def load_image(path: str | Path) -> LoadedImage:
    """Decode an image file to oriented uint8 RGB.

    Reads JPEG, PNG, WebP, TIFF and BMP in any PIL pixel mode: grey, palette
    (with or without transparency), RGBA, CMYK, bilevel, 16-bit and float
    (scaled to 8 bits, see :func:`_to_uint8`), 48-bit RGB TIFF. The whole
    file is decoded here, so a truncated file fails now, not later.

    Raises:
        ImageReadError: one line naming the file: not found, empty, not an
            image, unsupported format, truncated or corrupt, too large,
            permission denied.
    """
    path = Path(path)
    im = _open_decoded(path, ImageReadError)
    try:
        alpha = None
        w, h = im.size
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
            # PIL's own convert clips these to 0..255 instead of scaling.
            grey = _to_uint8(np.asarray(im))
            pixels = np.repeat(grey[:, :, None], 3, axis=2)
        elif im.has_transparency_data:
            pixels = np.empty((h, w, 3), np.uint8)
            alpha = np.empty((h, w), np.uint8)
            for y0, y1, rgba in _strips(im, "RGBA"):
                pixels[y0:y1] = rgba[:, :, :3]
                alpha[y0:y1] = rgba[:, :, 3]
            if alpha.min() == 255:
                alpha = None
        else:
            pixels = np.empty((h, w, 3), np.uint8)
            for y0, y1, rgb in _strips(im, "RGB"):
                pixels[y0:y1] = rgb
    except MemoryError:
        raise ImageReadError(path, f"not enough memory to decode ({w} x {h} pixels)") from None
    finally:
        im.close()
    for arr in (pixels, alpha):
        if arr is not None:
            arr.flags.writeable = False
    return LoadedImage(path=path, pixels=pixels, alpha=alpha)


def load_mask(
    path: str | Path, size: tuple[int, int] | None = None, allow_empty: bool = False
) -> np.ndarray:
    """Read a mask file as bool (H, W), True = object, EXIF orientation applied.

    Which pixels are object:

    * alpha (RGBA, LA, PA, palette or RGB with transparency): alpha > 127,
      unless the alpha is fully opaque, then the colour rule below applies;
    * palette (PerSeg, DAVIS): the pixel's palette colour is not black;
    * RGB: any channel non-zero (label colours like (128, 0, 0) are object);
    * grey and bilevel: value > 127 (half scale; 16-bit: > 32767, float:
      > 0.5), except a grey mask holding only 0 and 1 (a label image),
      where 1 is object;
    * lossy files (JPEG, WebP): grey value > 127, since compression noise
      makes "non-zero" meaningless.

    Args:
        size: (H, W) of the oriented image the mask belongs to, or None.
        allow_empty: accept a mask without any object pixel.

    Raises:
        MaskError: unreadable file, size mismatch with ``size`` (the message
            gives both as W x H), or an empty mask unless ``allow_empty``.
    """
    path = Path(path)
    im = _open_decoded(path, MaskError)
    try:
        mask = _mask_from_pil(im)
    except MemoryError:
        raise MaskError(path, "not enough memory to decode the mask") from None
    finally:
        im.close()
    if size is not None and mask.shape != tuple(size):
        mh, mw = mask.shape
        h, w = size
        hint = " (rotated? masks must match the image as displayed)" if (mh, mw) == (w, h) else ""
        raise MaskError(path, f"mask is {mw}x{mh} but the image is {w}x{h}{hint}")
    if not allow_empty and not mask.any():
        raise MaskError(path, "mask is empty (no object pixels)")
    return mask


def list_images(inputs: Sequence[str | Path], recursive: bool = False) -> list[Path]:
    """Expand files and folders into the list of images to work on.

    Files are taken as given, whatever their extension (a wrong one fails
    later with a clear error). Folders contribute their files with a
    :data:`SUPPORTED_EXTENSIONS` extension, in natural order (``img2`` before
    ``img10``), including sub-folders when ``recursive``. Hidden files and
    folders (name starts with ``.``, which includes our sidecar folders) are
    skipped. A file reached twice is listed once, at its first position.

    Raises:
        ImageReadError: an input does not exist or a folder cannot be read.
    """
    out: list[Path] = []
    seen: set[str] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = _scan_folder(p, recursive)
        elif p.exists():
            found = [p]
        else:
            raise ImageReadError(p, "not found")
        for f in found:
            key = os.path.normcase(os.path.realpath(f))
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: ``img2`` < ``img10``."""
    parts = re.split(r"(\d+)", text)
    # Even positions are text, odd ones digit runs: types align position-wise.
    return tuple(int(s) if i % 2 else s.casefold() for i, s in enumerate(parts)), text


# -- internals ---------------------------------------------------------------


def _open_decoded(path: Path, error: type[ImageReadError] | type[MaskError]) -> Image.Image:
    """Open, size-check, fully decode and orient ``path``; errors are one line."""
    try:
        st = path.stat()
        nbytes = st.st_size
    except FileNotFoundError:
        raise error(path, "not found") from None
    except PermissionError:
        raise error(path, "permission denied") from None
    except OSError as e:
        raise error(path, f"cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or /dev/zero has size 0 but is not "empty"; reading one
        # could block or never end.
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if (
            stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket or special file"
        raise error(path, f"is {kind}, not an image file")
    if nbytes == 0:
        raise error(path, "empty file (0 bytes)")
    try:
        # PIL warns (on stderr) between MAX_PIXELS and twice that; the size
        # check below turns those into our one-line error instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path, formats=_FORMATS)
    except PermissionError:
        raise error(path, "permission denied") from None
    except UnidentifiedImageError:
        raise error(path, _unidentified_problem(path)) from None
    except Image.DecompressionBombError as e:
        raise error(path, _too_large(str(e))) from None
    except _DECODE_ERRORS:
        raise error(path, "truncated or corrupt image data") from None
    try:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise error(path, _too_large(f"({w} x {h} pixels)"))
        if w == 0 or h == 0:
            raise error(path, f"image has no pixels ({w} x {h})")
        im.load()
        # Orientation is applied in place: no second full-size image kept.
        ImageOps.exif_transpose(im, in_place=True)
    except _OUR_ERRORS:
        im.close()
        raise
    except MemoryError:
        im.close()
        raise error(path, f"not enough memory to decode ({w} x {h} pixels)") from None
    except _DECODE_ERRORS:
        im.close()
        raise error(path, "truncated or corrupt image data") from None
    return im


def _unidentified_problem(path: Path) -> str:
    """Name the format of a real image we refuse, else say it is not one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # header only: nothing is decoded
                fmt = im.format
    except Exception:  # any failure here just means: not an image we know
        fmt = None
    if fmt:
        return f"unsupported image format {fmt} (use JPEG, PNG, WebP, TIFF or BMP)"
    return "not an image (cannot identify format)"


def _too_large(detail: str) -> str:
    m = re.search(r"\((\d+) pixels\)", detail)
    if m:  # PIL's own bomb error only states the pixel count
        detail = f"({int(m.group(1)) / 1e6:.0f} MP)"
    return f"image too large {detail}, limit {MAX_PIXELS // 1_000_000} MP"


_STRIP_PIXELS = 4_000_000


def _strips(im: Image.Image, mode: str) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (y0, y1, uint8 rows y0:y1 in ``mode``) in strips of about 4 MP.

    ``np.asarray(im)`` on a whole image goes through PIL's ``tobytes``,
    which holds the encoded chunks and their joined copy at once: for a
    50 MP photo that is 300 MB on top of PIL's own 200 MB. Converting strip
    by strip into a preallocated array keeps the extra memory to a few MB,
    and a mode conversion (CMYK, palette, grey) never needs a second
    full-size PIL image.
    """
    w, h = im.size
    rows = max(1, _STRIP_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        strip = im.crop((0, y0, w, y1))
        if strip.mode != mode:
            strip = strip.convert(mode)
        yield y0, y1, np.asarray(strip)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float grey array to uint8.

    16-bit (and 32-bit holding 0..65535, how PIL reads some 16-bit files):
    the high byte. Float in [0, 1]: times 255. Anything else: stretched from
    its minimum to its maximum, so scientific data is at least visible.
    """
    if a.dtype.kind == "u" and a.dtype.itemsize == 2:
        return (a >> 8).astype(np.uint8)
    lo, hi = (a.min(), a.max()) if a.size else (0, 0)
    if a.dtype.kind in "iu" and lo >= 0 and hi <= 65535:
        return (a >> 8).astype(np.uint8) if hi > 255 else a.astype(np.uint8)
    a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0.0 and hi <= 1.0:
        return np.round(a * 255.0).astype(np.uint8)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _mask_from_pil(im: Image.Image) -> np.ndarray:
    """Apply :func:`load_mask`'s rules to a decoded, oriented PIL image."""
    lossy = im.format in ("JPEG", "MPO", "WEBP")  # convert() forgets the format
    if im.has_transparency_data:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if alpha.min() < 255:
            return alpha > 127
        # Fully opaque: the alpha says nothing, the colours decide.
        if im.mode in ("LA", "La"):
            im = im.convert("L")
        elif im.mode in ("RGBA", "RGBa", "PA"):
            im = im.convert("RGB")
    if lossy:
        return _grey_mask(np.asarray(im.convert("L")), 255)
    if im.mode == "1":
        return np.asarray(im).astype(bool)
    if im.mode == "P":
        palette = np.zeros((256, 3), np.uint8)
        colours = np.frombuffer(bytes(im.getpalette("RGB") or []), np.uint8).reshape(-1, 3)[:256]
        palette[: len(colours)] = colours
        # One lookup per palette entry, then a gather: cheap even at 12 MP.
        return palette.any(axis=1)[np.asarray(im)]
    if im.mode == "L":
        return _grey_mask(np.asarray(im), 255)
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return _grey_mask(np.asarray(im), 65535)
    if im.mode == "I":
        a = np.asarray(im)
        return _grey_mask(a, 65535 if a.max(initial=0) > 255 else 255)
    if im.mode == "F":
        return np.asarray(im) > 0.5
    rgb = im if im.mode == "RGB" else im.convert("RGB")  # CMYK, YCbCr, ...
    return np.asarray(rgb).any(axis=2)


def _grey_mask(a: np.ndarray, full_scale: int) -> np.ndarray:
    """Object = above half scale, except a 0/1 label image where 1 = object."""
    if a.size and a.max() == 1:
        return a == 1
    return a > full_scale // 2


def _scan_folder(folder: Path, recursive: bool) -> list[Path]:
    found: list[tuple[tuple, Path]] = []
    try:
        if recursive:
            walker = os.walk(folder, onerror=_raise)
        else:
            walker = iter([(str(folder), [], os.listdir(folder))])
        for root, dirs, files in walker:
            # Prune hidden and sidecar folders before os.walk descends.
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith(".") or Path(name).suffix.lower() not in SUPPORTED_EXTENSIONS:
                    continue
                p = Path(root) / name
                if not p.is_file():
                    continue
                rel = p.relative_to(folder).parts
                found.append((tuple(natural_key(part) for part in rel), p))
    except PermissionError:
        raise ImageReadError(folder, "permission denied") from None
    except OSError as e:
        raise ImageReadError(folder, f"cannot list folder ({e.strerror or e})") from None
    found.sort(key=lambda t: t[0])
    return [p for _, p in found]


def _raise(err: OSError) -> None:
    raise err
