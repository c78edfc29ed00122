"""Writing a cutout: the one place that turns (photo, mask[, logits]) into a file.

Every front end (``segment --cutout``, ``propagate --cutouts``, ``cutout``,
``select --cutouts`` and the app's Export) calls :func:`write_cutout`, so a
refined cutout is the same wherever it is made: SAM's logits are passed to
the matting when there are some (they widen the edge band where SAM was
unsure), and the format follows the file's extension.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Union

import numpy as np

from persam_studio.core.edges.composite import BLUR, Colour, composite, cutout_rgba, parse_colour
from persam_studio.core.errors import PersamError
from persam_studio.core.io.export import JPEG_SUFFIXES, save_cutout_png, save_image

#: A new background: an RGB colour, ``"blur"`` (the photo, blurred) or a uint8
#: (h, w, 3) RGB picture of any size (scaled to cover, centre-cropped).
Background = Union[Colour, str, np.ndarray]


@dataclass(frozen=True)
class CutoutInfo:
    """What was written, for the one-line report of a command or a status bar.

    Attributes:
        path: the file written.
        background: words for the background ("" for transparent).
        refined: soft edges were computed (matting), else hard mask edges.
    """

    path: Path
    background: str
    refined: bool


def parse_background(spec: str, inputs: list[Path] | None = None) -> tuple[Background, str]:
    """A background from a user's text: a colour, ``blur`` or an image file.

    An existing file wins over a colour name. The file's path is appended to
    ``inputs`` (so that no output may overwrite it).

    Returns:
        (background, words describing it).

    Raises:
        PersamError: one line, when ``spec`` is none of these.
        ImageReadError: the file exists but cannot be read.
    """
    from persam_studio.core.io.imageio import load_image

    if spec.strip().lower() == BLUR:
        return BLUR, "a blurred background"
    path = Path(spec)
    if path.exists():  # a folder, FIFO or bad file then fails with one line from the reader
        if inputs is not None:
            inputs.append(path)
        return load_image(path).pixels, path.name
    try:
        colour = parse_colour(spec)
    except ValueError:
        raise PersamError(
            None,
            f"--background {spec!r} is not a colour (#rrggbb, #rgb, r,g,b, white...), 'blur', "
            "or an existing image file",
        ) from None
    return colour, "#%02x%02x%02x" % colour


def write_cutout(
    path: str | Path,
    pixels: np.ndarray,
    mask: np.ndarray,
    logits: np.ndarray | None = None,
    *,
    refine: bool = False,
    soft: np.ndarray | None = None,
    background: Background | None = None,
    background_words: str = "",
    inputs: Iterable[str | Path] = (),
    should_cancel: Callable[[], bool] | None = None,
) -> CutoutInfo:
    """Cut the object out of a photo and write it, atomically, to ``path``.

    Args:
        path: ``.png`` (RGBA), ``.webp``/``.tif`` (RGBA), ``.jpg`` (on a
            background; white when none is given, JPEG has no transparency).
        pixels: uint8 (H, W, 3) RGB of the oriented photo.
        mask: bool (H, W) object mask, same frame.
        logits: float32 (H, W) SAM logits of that mask at full size, or
            None (a mask from a file, a brushed mask): used by ``refine``.
        refine: soft alpha for hair and fur and colours without the old
            background (:func:`~persam_studio.core.edges.matting.refine_alpha`).
        soft: float32 (H, W) in [0, 1], a subject model's map when ``mask``
            came from one (``soft >= 0.5``), or None: with ``refine``, the
            matting leaves unknown where the model hesitated (hair).
        background: None for a transparent cutout, else see :data:`Background`.
        background_words: how to name ``background`` in the report.
        inputs: files the command read; never overwritten.
        should_cancel: polled during refinement.

    Raises:
        OutputError: unsupported extension, ``path`` is an input, or the write failed.
        Cancelled: ``should_cancel()`` returned True.
    """
    path = Path(path)
    alpha: np.ndarray = mask
    colours = pixels
    if refine:
        from persam_studio.core.edges.matting import refine_alpha

        alpha, colours = refine_alpha(pixels, mask, logits, soft=soft, should_cancel=should_cancel)
    if background is None and path.suffix.lower() in JPEG_SUFFIXES:
        background, background_words = (255, 255, 255), "white (JPEG has no transparency)"
    if background is None:
        if path.suffix.lower() == ".png":
            save_cutout_png(path, colours, alpha, inputs=inputs)
        else:
            save_image(path, cutout_rgba(colours, alpha), inputs=inputs)
        return CutoutInfo(path, "", refine)
    save_image(path, composite(colours, alpha, background, original=pixels), inputs=inputs)
    return CutoutInfo(path, background_words or "a new background", refine)
