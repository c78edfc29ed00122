"""Edge refinement: a soft alpha and clean foreground colours from a hard mask.

SAM decides its masks on a 256 x 256 grid; hair and fur come out as blobs.
:func:`refine_alpha` turns such a mask into a soft matte:

1. a trimap whose unknown band follows the boundary (:mod:`.trimap`);
2. closed-form matting (Levin et al. 2008, via pymatting) inside the band;
3. foreground colours by multi-level foreground estimation (Germer et al.
   2020, pymatting), so the cutout carries no halo of the old background.

Only the band is solved. Images larger than :attr:`MattingParams.work_size`
are solved on a downscaled copy (the band in mask units keeps its meaning),
and the matte is brought back to full resolution with a fast guided filter
(He & Sun 2015): the local linear colour model ``alpha = a . I + b`` fitted
at low resolution is applied to the full-resolution pixels, which restores
strand-level detail. Full-resolution work touches only the band's pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from persam_studio.core.errors import Cancelled, PersamError
from persam_studio.core.edges.trimap import UNKNOWN, TrimapParams, build_trimap, mask_unit


@dataclass(frozen=True)
class MattingParams:
    """Knobs of :func:`refine_alpha`; the defaults are what the docs measure."""

    trimap: TrimapParams = field(default_factory=TrimapParams)
    work_size: int = 800  # longest side solved at (mask unit ~3 px); larger images are downscaled
    max_unknown: int = 120_000  # solve at a smaller size when the band holds more pixels (ragged masks)
    epsilon: float = 1e-7  # closed-form matting regulariser (pymatting's default)
    cg_rtol: float = 1e-5  # conjugate-gradient tolerance: finer changes nothing visible
    guide_radius: int = 2  # fast guided filter window radius, in work pixels
    guide_eps: float = 1e-5  # its regulariser (colours in [0, 1])


def refine_alpha(
    pixels: np.ndarray,
    mask: np.ndarray,
    logits: np.ndarray | None = None,
    *,
    soft: np.ndarray | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft alpha and background-free colours for the object in ``mask``.

    Args:
        pixels: uint8 (H, W, 3) RGB of the oriented image.
        mask: bool (H, W), True = object, same frame.
        logits: optional float32 (H, W) SAM mask logits upscaled to the image
            (``MaskResult.logits(i)``); where SAM was unsure the band widens.
        soft: optional float32 (H, W) in [0, 1], a subject model's soft map
            (select subject; ``mask`` is then ``soft >= 0.5``); where the
            model hesitated the band widens.
        should_cancel: polled between stages and during the solve; when it
            returns True, :class:`~persam_studio.core.errors.Cancelled` is raised.

    Returns:
        (alpha, foreground): float32 (H, W) in [0, 1], and uint8 (H, W, 3)
        RGB colours of the object with the old background removed (equal to
        ``pixels`` where alpha is 1; estimated colours where it is below 1).

    Raises:
        PersamError: out of memory (one line). Full-resolution work is done
            in strips, so a 50 MP photo refines in well under 2 GB.
    """
    try:
        return refine_matte(pixels, mask, logits, soft=soft, should_cancel=should_cancel)
    except MemoryError:
        h, w = np.shape(mask)[:2]
        raise PersamError(None, f"not enough memory to refine the edges of a {w}x{h} image "
                          "(try without --refine)") from None


def refine_matte(
    pixels: np.ndarray,
    mask: np.ndarray,
    logits: np.ndarray | None = None,
    params: MattingParams = MattingParams(),
    *,
    soft: np.ndarray | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine_alpha` with explicit :class:`MattingParams`."""
    pixels, mask, logits = _check(pixels, mask, logits)
    _, _, soft = _check(pixels, mask, soft)  # the same checks as the logits
    check = _canceller(should_cancel)
    h, w = mask.shape
    alpha = mask.astype(np.float32)
    fg = pixels.copy()
    if mask.all() or not mask.any():
        return alpha, fg

    scale = min(1.0, params.work_size / max(h, w))
    for _ in range(3):
        small, small_mask, small_logits = _downscale(pixels, mask, logits, scale)
        small_soft = soft if soft is None or scale >= 1.0 else cv2.resize(
            soft, small_mask.shape[::-1], interpolation=cv2.INTER_AREA)
        sh, sw = small_mask.shape
        check()
        trimap = build_trimap(small, small_mask, small_logits, params.trimap, unit=mask_unit((h, w)) * sw / w,
                              soft=small_soft)
        unknown = trimap == UNKNOWN
        count = int(unknown.sum())
        if count <= params.max_unknown:
            break
        # The solve's cost grows with the band's pixel count: a ragged mask gets a smaller copy.
        scale *= 0.9 * (params.max_unknown / count) ** 0.5
    if not unknown.any():
        return alpha, fg
    y0, y1, x0, x1 = _bbox(unknown, pad=2)
    image = small[y0:y1, x0:x1].astype(np.float64) * (1.0 / 255.0)
    check()
    a_small = _solve_alpha(image, trimap[y0:y1, x0:x1], params, check)
    check()
    f_small, b_small = _foreground(image, a_small)
    check()

    if small_mask is mask:
        alpha[y0:y1, x0:x1] = a_small
        crop = fg[y0:y1, x0:x1]
        soft = a_small < 1.0
        crop[soft] = _to_u8(f_small[soft])
        return alpha, fg
    solved = unknown[y0:y1, x0:x1]
    _upsample_into(alpha, fg, pixels, image, solved, a_small, f_small, b_small, (y0, x0), (sh, sw), params)
    return alpha, fg


def _downscale(pixels, mask, logits, scale: float):
    """(pixels, mask, logits) at ``scale`` (area-averaged), or as given at 1."""
    if scale >= 1.0:
        return pixels, mask, logits
    h, w = mask.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    small_logits = None if logits is None else cv2.resize(logits, size, interpolation=cv2.INTER_AREA)
    return small, small_mask, small_logits


def warm_up() -> None:
    """Import pymatting and run one tiny refinement, so the first real one is fast.

    The first import of pymatting on a machine compiles its numba kernels
    (about a minute, once; cached on disk after that); later processes only
    load them (about 1.5 s). Call this from a background thread at start-up.
    """
    yy, xx = np.mgrid[0:48, 0:48]
    mask = (yy - 24) ** 2 + (xx - 24) ** 2 < 15**2
    pixels = np.where(mask[:, :, None], (200, 60, 40), (40, 150, 70)).astype(np.uint8)
    refine_alpha(pixels, mask)


def _solve_alpha(image: np.ndarray, trimap: np.ndarray, params: MattingParams, check) -> np.ndarray:
    """Closed-form matting of one crop: float32 (h, w) in [0, 1]."""
    import pymatting

    calls = [0]

    def poll(*_args) -> None:
        calls[0] += 1
        if calls[0] % 16 == 0:
            check()

    if min(image.shape[:2]) < _MIN_SOLVE_SIDE:
        # A crop a few pixels thin (a 1 x 5000 image) has no 3x3 windows for
        # the matting Laplacian: pymatting divides by zero and its
        # preconditioner fails. Keep the mask there.
        return (trimap >= UNKNOWN).astype(np.float32)
    try:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            a = pymatting.estimate_alpha_cf(
                image,
                trimap.astype(np.float64),
                laplacian_kwargs={"epsilon": params.epsilon},
                cg_kwargs={"rtol": params.cg_rtol, "callback": poll, "maxiter": 5000},
            )
    except ValueError:
        # CG did not converge (a degenerate crop): keep the mask there.
        a = (trimap >= UNKNOWN).astype(np.float64)
    if not np.isfinite(a).all():
        a = np.where(np.isfinite(a), a, (trimap >= UNKNOWN).astype(np.float64))
    return np.clip(a, 0.0, 1.0).astype(np.float32)


#: Shortest crop side the matting solve accepts (its windows are 3 x 3).
_MIN_SOLVE_SIDE = 4


def _foreground(image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-level foreground and background colours, float32 (h, w, 3) in [0, 1]."""
    import pymatting

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        f, b = pymatting.estimate_foreground_ml(image, alpha, return_background=True)
    f, b = np.nan_to_num(f), np.nan_to_num(b)
    return np.clip(f, 0, 1).astype(np.float32), np.clip(b, 0, 1).astype(np.float32)


def _upsample_into(alpha, fg, pixels, image, solved, a_small, f_small, b_small, origin, small_shape, params) -> None:
    """Bring a matte solved at low resolution back to full size, in place.

    ``alpha`` holds the full-size mask on entry; it stays where the trimap
    was known. Solved pixels take the rounded low-resolution alpha, and
    soft ones the guided filter's linear model evaluated on the full-size
    colours; their foreground is the low-resolution estimate corrected so
    the compositing equation holds at full resolution.
    """
    h, w = alpha.shape
    sh, sw = small_shape
    y0, x0 = origin
    ch, cw = a_small.shape
    soft = (a_small > 1e-3) & (a_small < 1 - 1e-3)
    soft = cv2.dilate(soft.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    # Solved pixels take the rounded matte (soft ones are overwritten below).
    fy0, fy1 = int(np.floor(y0 * h / sh)), int(np.ceil((y0 + ch) * h / sh))
    fx0, fx1 = int(np.floor(x0 * w / sw)), int(np.ceil((x0 + cw) * w / sw))
    size = (fx1 - fx0, fy1 - fy0)
    region = alpha[fy0:fy1, fx0:fx1]
    up = cv2.resize(a_small, size, interpolation=cv2.INTER_LINEAR)
    solved8 = np.ascontiguousarray(solved).view(np.uint8)
    was_solved = cv2.resize(solved8, size, interpolation=cv2.INTER_NEAREST).astype(bool)
    region[was_solved] = up[was_solved] >= 0.5
    del up, was_solved
    band = cv2.resize(soft.view(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    coef = _guided_coefficients(image.astype(np.float32), a_small, params.guide_radius, params.guide_eps)
    # The soft band of a ragged mask on a 50 MP photo holds tens of millions
    # of pixels, and each needs about 100 bytes of temporaries below: done
    # in strips of rows, the peak stays a few hundred MB whatever the band.
    step = max(1, _BAND_CHUNK // max(1, band.shape[1]))
    for r0 in range(0, band.shape[0], step):
        ys, xs = np.nonzero(band[r0 : r0 + step])
        if ys.size == 0:
            continue
        ys = ys.astype(np.int32) + (r0 + fy0)  # full-image rows and columns
        xs = xs.astype(np.int32) + fx0
        _refine_band_pixels(alpha, fg, pixels, ys, xs, coef, f_small, b_small, origin, small_shape)


#: Full-size band pixels handled at once by :func:`_upsample_into`.
_BAND_CHUNK = 1 << 20


def _refine_band_pixels(alpha, fg, pixels, ys, xs, coef, f_small, b_small, origin, small_shape) -> None:
    """Alpha (guided-filter model) and foreground of full-size pixels (ys, xs), in place."""
    h, w = alpha.shape
    sh, sw = small_shape
    y0, x0 = origin
    # Full-size pixel centres in crop coordinates at low resolution.
    gy = ((ys + 0.5) * (sh / h) - 0.5 - y0).astype(np.float32)
    gx = ((xs + 0.5) * (sw / w) - 0.5 - x0).astype(np.float32)
    ab = _sample(coef, gx, gy)
    colour = pixels[ys, xs].astype(np.float32) * (1.0 / 255.0)
    a = np.clip((ab[:, :3] * colour).sum(axis=1) + ab[:, 3], 0.0, 1.0)
    alpha[ys, xs] = a

    f_up = _sample(f_small, gx, gy)
    b_up = _sample(b_small, gx, gy)
    # Smallest change (dF, dB) with alpha dF + (1 - alpha) dB = residual.
    al = a[:, None]
    residual = colour - (al * f_up + (1 - al) * b_up)
    f_full = f_up + al * residual / (al * al + (1 - al) ** 2)
    keep = a < 1.0
    fg[ys[keep], xs[keep]] = _to_u8(f_full[keep])


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of float32 (h, w, c) ``image`` at points (x, y): (n, c)."""
    n = x.size
    cols = 4096  # remap maps must stay under 32767 rows and columns
    rows = -(-n // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n], my[:n] = x, y
    mx, my = mx.reshape(rows, cols), my.reshape(rows, cols)
    out = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(rows * cols, image.shape[2])[:n]


def _guided_coefficients(guide: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Mean linear coefficients (a_r, a_g, a_b, b) of a colour guided filter, float32 (h, w, 4).

    He, Sun & Tang's guided filter: in each (2r+1)^2 window, ``p ~ a . I + b``
    by ridge regression with regulariser ``eps``; the coefficients are then
    averaged over the windows covering each pixel.
    """
    k = (2 * r + 1, 2 * r + 1)

    def box(x):
        return cv2.boxFilter(x, -1, k, normalize=True, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    mean_p = box(p)
    mean_ip = box(guide * p[:, :, None])
    cov_ip = mean_ip - mean_i * mean_p[:, :, None]
    # Covariance of the guide: 3x3 per pixel.
    var = np.empty(guide.shape[:2] + (3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            c = box(guide[:, :, i] * guide[:, :, j]) - mean_i[:, :, i] * mean_i[:, :, j]
            var[:, :, i, j] = var[:, :, j, i] = c
    var += eps * np.eye(3, dtype=np.float32)
    a = np.linalg.solve(var, cov_ip[:, :, :, None])[:, :, :, 0]
    b = mean_p - (a * mean_i).sum(axis=2)
    out = np.empty(guide.shape[:2] + (4,), np.float32)
    out[:, :, :3] = box(a)
    out[:, :, 3] = box(b)
    return out


def _check(pixels, mask, logits):
    pixels = np.asarray(pixels)
    mask = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be uint8 (H, W, 3), got {pixels.dtype} {pixels.shape}")
    if mask.shape != pixels.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match pixels {pixels.shape[:2]}")
    if logits is not None:
        logits = np.asarray(logits, dtype=np.float32)
        if logits.shape != mask.shape:
            raise ValueError(f"logits shape {logits.shape} does not match mask {mask.shape}")
    return np.ascontiguousarray(pixels), mask, logits


def _canceller(should_cancel):
    def check() -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled()

    return check


def _bbox(region: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    h, w = region.shape
    return (
        max(0, rows[0] - pad),
        min(h, rows[-1] + pad + 1),
        max(0, cols[0] - pad),
        min(w, cols[-1] + pad + 1),
    )


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
