"""Trimaps from a binary mask: an unknown band whose width follows the boundary.

A mask from SAM is decided on a 256 x 256 logit grid, so its edge is only
known to about one grid cell: ``unit = max(H, W) / 256`` image pixels (the
*mask unit*). Every width below is measured in mask units, so the same rule
works on a 0.3 MP crop and on a 12 MP photo.

The rule (see docs/cutouts.md for why and for the measurements), at each
boundary pixel, in a disc of radius ``window`` units:

* **Fine-structure score** ``s`` in [0, 1] from the *scattered edge count*:
  the colour gradient summed over the disc, divided by what one clean step
  edge of the local object/background contrast gives there (1 at any
  orientation), times (1 - structure-tensor coherence). Straight edges, even
  several parallel ones (a car's roof line and window frame), score about
  0; hair, fur and feathers, whose strands point every way, about one edge's
  worth or more. ``s`` ramps from 0 at ``rho_clean`` to 1 at ``rho_fine``.
* **Colour overlap** ``hole`` / ``haze`` in [0, 1]: how much of the object's
  colours the nearby background also has, and the other way round. Matting
  cannot separate shared colours, so the band shrinks back towards its
  minimum there.
* **Half-widths** ``r_out = unit * (out_min + (out_max - out_min) * s * (1 - haze))``
  and ``r_in = unit * (out_min + (inner_ratio * out_max - out_min) * s * (1 - hole))``:
  the band may reach further into the mask than out of it, because (a) a
  coat of hair is see-through over its whole depth, while the strands beyond
  the 50 % contour thin out quickly, and (b) unknown pixels on the
  background side are where closed-form matting leaks a faint haze of
  background into the cutout, the most visible artefact.
* **Blur floor**: a defocused edge of width ``w`` (contrast / steepest
  gradient) gets at least ``w`` on both sides.
* **Logits**: where SAM's logit is near zero (``|logit| < logit_band``,
  i.e. SAM was less than ~88 % sure) and within the maximum half-widths,
  the pixel is unknown too.
* **Soft maps**: with a subject model's soft map (select subject), pixels
  whose value is neither clearly object nor clearly background
  (``soft_band < soft < 1 - soft_band``) are unknown, and so is everything
  within ``soft_margin`` mask units of them: the model's map is smooth where
  it hesitates, and the true edge of hair or fur lies anywhere in that ramp
  or just beyond it. The margin scales with the photo (rembg's fixed 10 px
  erosion is a hairline on a 12 MP photo).
* Every connected object (background) region keeps its inner half as
  known, so a thin or small object never loses all its constraints.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

UNKNOWN = 0.5  # trimap value of unknown pixels (pymatting's convention)


@dataclass(frozen=True)
class TrimapParams:
    """Band widths in mask units (``max(H, W) / 256`` pixels); see the module doc."""

    out_min: float = 2.0  # clean edges: one mask unit of placement error, plus one of margin
    out_max: float = 5.0  # fine structure: about the length of fur tips beyond the 50 % contour
    inner_ratio: float = 1.5  # r_in / r_out at most
    window: float = 4.0  # radius of the disc where the scores and the blur width are measured
    rho_clean: float = 0.2  # scattered gradient below a fifth of one edge: a clean edge
    rho_fine: float = 0.8  # most of an edge's worth of scattered gradient: hair, fur
    logit_band: float = 2.0  # |logit| below this is "SAM unsure" (sigmoid 0.12 .. 0.88)
    # Soft maps: 0.02 is 5 grey levels of an 8-bit map; a margin of 3 units
    # is about how far fur tips reach past the model's ramp (between out_min
    # and out_max). The pair was chosen from {0.02, 0.04} x {1, 2, 3} on
    # pymatting's lemur, that lemur composited over its beach and the lemur
    # at twice its size; it was the best of the six on all three.
    soft_band: float = 0.02
    soft_margin: float = 3.0


def mask_unit(shape: tuple[int, int]) -> float:
    """Image pixels per SAM logit cell for an image of ``shape`` (H, W)."""
    return max(shape[0], shape[1]) / 256.0


def build_trimap(
    pixels: np.ndarray,
    mask: np.ndarray,
    logits: np.ndarray | None = None,
    params: TrimapParams = TrimapParams(),
    unit: float | None = None,
    soft: np.ndarray | None = None,
) -> np.ndarray:
    """Trimap for ``mask`` over ``pixels``: float32 (H, W), 0 = background, 1 = object, 0.5 = unknown.

    Args:
        pixels: uint8 (H, W, 3) RGB, same frame as ``mask``.
        mask: bool (H, W), True = object.
        logits: optional float32 (H, W) SAM mask logits in the same frame
            (positive = object).
        params: band rule parameters.
        unit: pixels per mask unit; default ``mask_unit(mask.shape)``. Pass
            the full-size image's unit scaled down when working on a
            downscaled copy.
        soft: optional float32 (H, W) in [0, 1], a subject model's soft map
            in the same frame (``mask`` is then normally ``soft >= 0.5``);
            where it hesitates the band widens (see the module doc).
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    pixels = np.ascontiguousarray(pixels)
    trimap = mask.astype(np.float32)
    m8 = mask.view(np.uint8)
    edge = m8 != cv2.erode(m8, _CROSS)  # object pixels with a background 4-neighbour
    if not edge.any() or mask.all():
        return trimap
    unit = mask_unit(mask.shape) if unit is None else float(unit)
    r_out, r_in = half_widths(pixels, mask, params, unit)

    # Every pixel takes the half-width of its nearest boundary pixel.
    not_edge = np.ascontiguousarray((~edge).view(np.uint8))
    dist, labels = cv2.distanceTransformWithLabels(not_edge, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut_in = np.zeros(int(labels.max()) + 1, np.float32)
    lut_out = np.zeros_like(lut_in)
    lut_in[labels[edge]] = r_in[edge]
    lut_out[labels[edge]] = r_out[edge]
    width = np.where(mask, lut_in[labels], lut_out[labels])
    unknown = dist < width
    if logits is not None:
        reach = np.where(mask, params.inner_ratio * params.out_max, params.out_max) * unit
        unknown |= (np.abs(logits) < params.logit_band) & (dist < reach)
    unknown &= ~_cores(mask) & ~_cores(~mask)
    if soft is not None:
        # After the cores: a "background" hole inside the mask that the model
        # hesitated over is often object (fur between limbs); keeping its
        # core known would pin it to 0. The confident pixels elsewhere are
        # constraints enough.
        unsure = ((soft > params.soft_band) & (soft < 1.0 - params.soft_band)).view(np.uint8)
        unknown |= cv2.distanceTransform(1 - unsure, cv2.DIST_L2, 5) < params.soft_margin * unit
    trimap[unknown] = UNKNOWN
    return trimap


def half_widths(
    pixels: np.ndarray, mask: np.ndarray, params: TrimapParams, unit: float
) -> tuple[np.ndarray, np.ndarray]:
    """(r_out, r_in): float32 (H, W) fields of half-widths in pixels, meaningful on the boundary."""
    radius = max(2, int(round(params.window * unit)))
    rho, blur = edge_structure(pixels, mask, radius)
    s = np.clip((rho - params.rho_clean) / (params.rho_fine - params.rho_clean), 0.0, 1.0)
    hole, haze = colour_overlap(pixels, mask, radius, skip=params.out_min * unit)
    lo = params.out_min
    r_out = unit * (lo + (params.out_max - lo) * s * (1.0 - haze))
    r_in = unit * (lo + (params.inner_ratio * params.out_max - lo) * s * (1.0 - hole))
    return np.maximum(r_out, blur).astype(np.float32), np.maximum(r_in, blur).astype(np.float32)


def edge_structure(pixels: np.ndarray, mask: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Scattered edge count ``rho`` and blur width (pixels) around every pixel, float32 (H, W) each.

    ``rho`` = (colour gradient magnitude summed over a disc of ``radius``) /
    (2 * radius * contrast) * (1 - coherence). Contrast is the distance
    between the mean object and mean background colours in the disc; a
    straight step edge through the centre makes the first factor 1 whatever
    its orientation (its gradient integrates to the contrast along a chord
    of length 2 * radius). Coherence is the structure tensor's
    (l1 - l2) / (l1 + l2) over the disc: 1 when all gradients share one
    orientation. The blur width is contrast / steepest gradient in the
    disc: about 2.5 px for a sharp edge.
    """
    f = pixels.astype(np.float32) * (1.0 / 255.0)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    grad = np.sqrt((gx * gx + gy * gy).sum(axis=2))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)).astype(np.float32)
    area = float(disc.sum())
    m = mask.astype(np.float32)

    def conv(x):
        return cv2.filter2D(x, -1, disc, borderType=cv2.BORDER_REFLECT)

    n_in = conv(m)
    sum_in = conv(f * m[:, :, None])
    sum_all = conv(f)
    mean_in = sum_in / np.maximum(n_in, 1e-3)[:, :, None]
    mean_out = (sum_all - sum_in) / np.maximum(area - n_in, 1e-3)[:, :, None]
    contrast = np.sqrt(((mean_in - mean_out) ** 2).sum(axis=2))
    # A floor of 0.05 (13 grey levels): below it there is no edge to speak of
    # and the ratio would only measure noise.
    contrast = np.maximum(contrast, 0.05)
    rho = conv(grad) / (2 * radius * contrast)
    # Structure-tensor coherence: 1 where all gradients in the disc share one
    # orientation (straight edges, even several parallel ones: a car's
    # roof line and window frame), low where orientations scatter (hair).
    jxx = conv((gx * gx).sum(axis=2))
    jyy = conv((gy * gy).sum(axis=2))
    jxy = conv((gx * gy).sum(axis=2))
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / np.maximum(jxx + jyy, 1e-12)
    rho = rho * (1.0 - coherence)
    steepest = cv2.dilate(grad, disc.astype(np.uint8))
    blur = contrast / np.maximum(steepest, 1e-3)
    return rho, np.minimum(blur, float(radius))


def colour_overlap(
    pixels: np.ndarray, mask: np.ndarray, radius: int, skip: float, levels: int = 4, share: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """How much object and background colours overlap near each boundary pixel.

    Returns (hole, haze), float32 (H, W) in [0, 1], meaningful on the
    boundary: ``hole`` is the fraction of object pixels (farther than
    ``skip`` from the edge, within ``radius``) whose coarse colour (``levels``
    per channel) is held by at least ``share`` of the background pixels
    there; ``haze`` the same the other way round. Matting cannot tell such
    colours apart: unknown object pixels of background colours become holes,
    unknown background pixels of object colours become a haze. Measured at
    boundary samples about one mask unit apart; every boundary pixel takes
    its nearest sample's values.
    """
    m8 = np.ascontiguousarray(mask.view(np.uint8))
    d_in = cv2.distanceTransform(m8, cv2.DIST_L2, 3)
    d_out = cv2.distanceTransform(1 - m8, cv2.DIST_L2, 3)
    edge = m8 != cv2.erode(m8, _CROSS)
    ys, xs = np.nonzero(edge)
    step = max(1, int(round(skip / 2)))
    pick = np.arange(0, ys.size, step)
    q = (pixels.astype(np.int32) * levels) >> 8
    code = (q[:, :, 0] * levels + q[:, :, 1]) * levels + q[:, :, 2]
    nbins = levels**3
    hole_s = np.zeros(pick.size, np.float32)
    haze_s = np.zeros(pick.size, np.float32)
    h, w = mask.shape
    for k, i in enumerate(pick):
        y, x = ys[i], xs[i]
        win = np.s_[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
        c = code[win]
        obj = c[d_in[win] > skip]
        bg = c[d_out[win] > skip]
        if obj.size < 8 or bg.size < 8:
            continue
        h_obj = np.bincount(obj, minlength=nbins)
        h_bg = np.bincount(bg, minlength=nbins)
        hole_s[k] = h_obj[h_bg >= share * bg.size].sum() / obj.size
        haze_s[k] = h_bg[h_obj >= share * obj.size].sum() / bg.size
    # Spread the samples to all pixels: nearest sample wins.
    seeds = np.ones((h, w), np.uint8)
    seeds[ys[pick], xs[pick]] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    lut_hole = np.zeros(int(labels.max()) + 1, np.float32)
    lut_haze = np.zeros_like(lut_hole)
    lut_hole[labels[ys[pick], xs[pick]]] = hole_s
    lut_haze[labels[ys[pick], xs[pick]]] = haze_s
    return lut_hole[labels], lut_haze[labels]


def _cores(region: np.ndarray) -> np.ndarray:
    """The inner half of every connected component of ``region`` (bool (H, W)).

    Pixels at least half the component's largest inner distance from its
    edge: they stay known, so a thin object keeps constraints.
    """
    r8 = np.ascontiguousarray(region.view(np.uint8))
    n, labels = cv2.connectedComponents(r8, connectivity=8)
    if n <= 1:
        return np.zeros(region.shape, bool)
    # Distance to the other side only: the image border is not an edge.
    padded = cv2.copyMakeBorder(r8, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    deepest = np.zeros(n, np.float32)
    np.maximum.at(deepest, labels.ravel(), dist.ravel())
    core = dist >= 0.5 * deepest[labels]
    return core & region


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
