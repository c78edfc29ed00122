"""Cutouts and new backgrounds: put a matted object on a colour, a picture or a blur.

All blending is ``out = alpha * F + (1 - alpha) * B`` in float32 on the
8-bit sRGB values, rounded once at the end. We blend in the same encoded
space the matte was estimated in (closed-form matting fits the colour-line
model to the sRGB values), so putting the object back on its own background
reproduces the photo; blending those alphas in linear light would brighten
every soft edge instead.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

Colour = tuple[int, int, int]

NAMED_COLOURS: dict[str, Colour] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
}

BLUR = "blur"


def parse_colour(text: str) -> Colour:
    """An RGB colour from ``"#rrggbb"``, ``"#rgb"``, a name (``"white"``) or ``"r,g,b"`` (0-255).

    Raises:
        ValueError: one line saying what was expected.
    """
    t = text.strip().lower()
    if t in NAMED_COLOURS:
        return NAMED_COLOURS[t]
    if re.fullmatch(r"#[0-9a-f]{6}", t):
        return int(t[1:3], 16), int(t[3:5], 16), int(t[5:7], 16)
    if re.fullmatch(r"#[0-9a-f]{3}", t):
        return int(t[1] * 2, 16), int(t[2] * 2, 16), int(t[3] * 2, 16)
    parts = t.split(",")
    if len(parts) == 3 and all(re.fullmatch(r"\s*\d{1,3}\s*", p) for p in parts):
        values = tuple(int(p) for p in parts)
        if all(0 <= v <= 255 for v in values):
            return values  # type: ignore[return-value]
    raise ValueError(
        f"not a colour: {text!r} (use #rrggbb, #rgb, r,g,b with 0-255, or one of {', '.join(NAMED_COLOURS)})"
    )


def cutout_rgba(foreground_or_pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The object as uint8 (H, W, 4) RGBA, straight (not premultiplied) alpha.

    Args:
        foreground_or_pixels: uint8 (H, W, 3) RGB; pass the foreground from
            :func:`~persam_studio.core.edges.matting.refine_alpha` so soft edges
            carry no old background.
        alpha: (H, W) float in [0, 1], bool, or uint8 0-255.

    Fully transparent pixels get colour 0, so the file does not carry the
    hidden background.
    """
    rgb = _pixels(foreground_or_pixels)
    a8 = _alpha_u8(alpha, rgb.shape[:2])
    out = np.empty(rgb.shape[:2] + (4,), np.uint8)
    out[:, :, :3] = rgb
    out[:, :, 3] = a8
    out[a8 == 0] = 0
    return out


def composite(
    pixels_or_fg: np.ndarray,
    alpha: np.ndarray,
    background: str | Colour | np.ndarray,
    *,
    original: np.ndarray | None = None,
) -> np.ndarray:
    """The object over a new background: uint8 (H, W, 3) RGB.

    Args:
        pixels_or_fg: uint8 (H, W, 3) RGB colours of the object (the
            foreground from ``refine_alpha``, or the photo itself).
        alpha: (H, W) float in [0, 1], bool, or uint8.
        background: an RGB tuple; a colour string (see :func:`parse_colour`);
            ``"blur"`` for a blurred copy of the photo without the object
            (:func:`blurred_background`); or a uint8 RGB image of any size,
            scaled to cover the frame and centre-cropped (:func:`cover`).
        original: the photo, for ``"blur"`` when ``pixels_or_fg`` is a
            foreground estimate (default: ``pixels_or_fg``).

    Raises:
        ValueError: an unparseable colour string or a malformed array.
    """
    fg = _pixels(pixels_or_fg)
    h, w = fg.shape[:2]
    a = _alpha_f32(alpha, (h, w))
    if isinstance(background, str) and background.strip().lower() == BLUR:
        base = _pixels(fg if original is None else original)
        if base.shape != fg.shape:
            raise ValueError(f"original {base.shape} does not match the foreground {fg.shape}")
        bg = blurred_background(base, a)
    elif isinstance(background, str):
        bg = np.array(parse_colour(background), np.float32)
    elif isinstance(background, np.ndarray):
        bg = cover(_pixels(background), (h, w))
    else:
        bg = np.array(background, np.float32)
        if bg.shape != (3,):
            raise ValueError(f"a background colour needs 3 values, got {background!r}")
    out = fg.astype(np.float32)
    out -= bg
    out *= a[:, :, None]
    out += bg
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to cover ``size`` (H, W) keeping its aspect ratio, centre-cropped.

    uint8 (h, w, 3) in, uint8 (H, W, 3) out. Area averaging when shrinking,
    bicubic when enlarging.
    """
    h, w = size
    ih, iw = image.shape[:2]
    s = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * s)), max(w, round(iw * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(image, (nw, nh), interpolation=interp)
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    return np.ascontiguousarray(scaled[y0 : y0 + h, x0 : x0 + w])


def blurred_background(pixels: np.ndarray, alpha: np.ndarray | None = None, strength: float = 0.02) -> np.ndarray:
    """A strongly blurred copy of the photo with the object left out, uint8 (H, W, 3).

    Gaussian blur with sigma = ``strength`` x the long side (2 %: 80 px on a
    12 MP photo), computed on a copy reduced to 256 px on the long side
    (sigma there is about 5 px) and scaled back up: a blur that wide has no
    detail the small copy lacks, and it costs milliseconds at 12 MP. With
    ``alpha``, the blur is normalised by the background's weight
    ``1 - alpha``, so the object's colours do not smear into a halo around
    it (what a phone's portrait mode does too).
    """
    rgb = _pixels(pixels)
    h, w = rgb.shape[:2]
    s = min(1.0, 256 / max(h, w))
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    sigma = max(0.5, strength * max(h, w) * s)
    if alpha is None:
        blurred = cv2.GaussianBlur(small, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    else:
        weight = 1.0 - cv2.resize(_alpha_f32(alpha, (h, w)), (sw, sh), interpolation=cv2.INTER_AREA)
        num = cv2.GaussianBlur(small * weight[:, :, None], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        den = cv2.GaussianBlur(weight, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        plain = cv2.GaussianBlur(small, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        # Where no background is near (deep inside a large object) fall back to the plain blur.
        trust = np.clip(den / 0.05, 0.0, 1.0)[:, :, None]
        blurred = trust * num / np.maximum(den, 1e-6)[:, :, None] + (1 - trust) * plain
    big = cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(big + 0.5, 0, 255).astype(np.uint8)


def _pixels(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p)
    if p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
        raise ValueError(f"pixels must be uint8 (H, W, 3), got {p.dtype} {p.shape}")
    return p


def _alpha_f32(alpha: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    a = np.asarray(alpha)
    if a.shape != tuple(shape):
        raise ValueError(f"alpha shape {a.shape} does not match the image {tuple(shape)}")
    if a.dtype == bool:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) * (1.0 / 255.0)
    if a.dtype.kind == "f":
        return np.clip(a, 0.0, 1.0).astype(np.float32, copy=False)
    raise ValueError(f"alpha must be float, bool or uint8, got {a.dtype}")


def _alpha_u8(alpha: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    a = np.asarray(alpha)
    if a.dtype == np.uint8 and a.shape == tuple(shape):
        return a
    return np.round(_alpha_f32(alpha, shape) * 255.0).astype(np.uint8)
