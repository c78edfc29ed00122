"""Edge refinement: matte quality on a real ground truth, no halo, adaptive trimap, cancel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from persam_studio.core.errors import Cancelled
from persam_studio.core.edges.matting import MattingParams, refine_alpha, refine_matte
from persam_studio.core.edges.trimap import UNKNOWN, build_trimap, mask_unit
from tests.conftest import shared_data


def coarse_mask(gt: np.ndarray, resample=Image.BILINEAR) -> np.ndarray:
    """A SAM-like mask from a ground-truth alpha: > 0.5, to 256 px on the long side and back, > 0.5.

    PIL's bilinear filter in both directions (the protocol the reference
    numbers were made with; OpenCV's INTER_LINEAR gives SAD 3.28).
    """
    h, w = gt.shape
    s = 256 / max(h, w)
    m = Image.fromarray((gt > 0.5).astype(np.float32), "F")
    small = m.resize((round(w * s), round(h * s)), resample)
    return np.asarray(small.resize((w, h), resample)) > 0.5


def sad(alpha, gt) -> float:
    """Sum of absolute differences, in thousands (alpha in [0, 1])."""
    return float(np.abs(np.asarray(alpha, np.float64) - gt).sum() / 1000)


def mse(alpha, gt) -> float:
    return float(((np.asarray(alpha, np.float64) - gt) ** 2).mean())


@pytest.fixture(scope="module")
def lemur():
    pixels = np.ascontiguousarray(np.asarray(Image.open(shared_data("matting", "lemur.png")).convert("RGBA"))[:, :, :3])
    gt = np.asarray(Image.open(shared_data("matting", "lemur_alpha.png")).convert("L"), np.float64) / 255
    return pixels, gt, coarse_mask(gt)


@pytest.fixture(scope="module")
def lemur_refined(lemur):
    pixels, gt, coarse = lemur
    return refine_alpha(pixels, coarse)


def test_coarse_mask_protocol_reproduces_the_reference_numbers(lemur):
    _, gt, coarse = lemur
    assert sad(coarse, gt) == pytest.approx(3.24, abs=0.005)
    assert mse(coarse, gt) == pytest.approx(2.98e-3, abs=0.005e-3)


def test_refined_lemur_alpha_meets_sad_and_mse(lemur, lemur_refined):
    _, gt, coarse = lemur
    alpha, fg = lemur_refined
    assert alpha.dtype == np.float32 and alpha.shape == gt.shape
    assert fg.dtype == np.uint8 and fg.shape == gt.shape + (3,)
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert sad(alpha, gt) <= 1.0, sad(alpha, gt)
    assert mse(alpha, gt) <= 0.3e-3, mse(alpha, gt)
    # Soft where the fur is: a good share of the ground truth's soft pixels are soft here too.
    soft_gt = (gt > 0.05) & (gt < 0.95)
    assert ((alpha[soft_gt] > 0.02) & (alpha[soft_gt] < 0.98)).mean() > 0.5


def _green_excess(colours: np.ndarray, alpha: np.ndarray, where: np.ndarray) -> float:
    """Alpha-weighted mean of G - (R + B) / 2 over ``where``: the old green background left in the colours."""
    c = colours[where].astype(np.float64)
    a = alpha[where].astype(np.float64)
    excess = c[:, 1] - (c[:, 0] + c[:, 2]) / 2
    return float((a * excess).sum() / a.sum())


def test_cutout_on_white_shows_no_green_halo(lemur, lemur_refined):
    """The lemur is black and white on green: green in its soft edge is the old background."""
    pixels, _, _ = lemur
    alpha, fg = lemur_refined
    soft = (alpha > 0.05) & (alpha < 0.95)
    assert soft.sum() > 5000
    naive = _green_excess(pixels, alpha, soft)
    ours = _green_excess(fg, alpha, soft)
    assert naive > 15  # the original colours carry the green ...
    assert ours < 0.25 * naive  # ... the estimated foreground does not
    # On an actual composite over white, the naive edge shows a green fringe; ours does not.
    from persam_studio.core.edges.composite import composite

    def tint(rgb: np.ndarray) -> float:
        c = rgb[soft].astype(np.float64)
        return float((c[:, 1] - (c[:, 0] + c[:, 2]) / 2).mean())

    naive_tint = tint(composite(pixels, alpha, "white"))
    our_tint = tint(composite(fg, alpha, "white"))
    assert naive_tint > 5
    assert abs(our_tint) < 0.25 * naive_tint


def soft_disc(h: int, w: int, seed: int = 0):
    """A red object with a soft, wiggly 'furry' edge on a textured green background.

    Returns (pixels uint8, alpha float64, true foreground colour).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx, r = h / 2, w / 2, 0.3 * min(h, w)
    angle = np.arctan2(yy - cy, xx - cx)
    radius = r * (1 + 0.04 * np.sin(40 * angle))
    d = np.hypot(yy - cy, xx - cx) - radius
    alpha = np.clip(0.5 - d / (0.012 * min(h, w)), 0, 1)  # a soft transition about 2.4 % of the size wide
    fg = np.array([210.0, 40.0, 35.0])
    bg = np.stack([40 + 20 * np.sin(xx / 37), 150 + 30 * np.sin(yy / 23), 60 + 0 * xx], -1)
    img = alpha[..., None] * fg + (1 - alpha[..., None]) * bg + rng.normal(0, 2, (h, w, 3))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), alpha, fg


@pytest.mark.parametrize("size", [(300, 420), (1200, 1700)], ids=["full-res", "downscaled+guided"])
def test_synthetic_soft_edge_is_recovered_with_clean_colours(size):
    h, w = size
    pixels, gt, fg_colour = soft_disc(h, w)
    mask = coarse_mask(gt)
    alpha, fg = refine_alpha(pixels, mask)
    band = (gt > 0.02) & (gt < 0.98)
    err_mask = np.abs(mask - gt)[band].mean()
    err_ours = np.abs(alpha - gt)[band].mean()
    assert err_ours < 0.5 * err_mask, (err_ours, err_mask)
    # Colours in the soft edge are the object's red, not red mixed with green.
    soft = (alpha > 0.1) & (alpha < 0.9)
    naive_green = pixels[soft][:, 1].astype(float).mean()
    ours_green = fg[soft][:, 1].astype(float).mean()
    assert naive_green > fg_colour[1] + 40
    assert ours_green < fg_colour[1] + 0.25 * (naive_green - fg_colour[1])


def test_band_is_narrow_on_clean_edges_and_wide_on_fur(lemur):
    pixels, _, coarse = lemur
    h, w = coarse.shape
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.35 * h) ** 2
    clean = np.where(disc[..., None], (200, 40, 30), (40, 160, 60)).astype(np.uint8)
    perimeter = lambda m: (m ^ np.roll(m, 1, 0)).sum() + (m ^ np.roll(m, 1, 1)).sum()  # noqa: E731
    unit = mask_unit((h, w))

    def mean_width(pix, m):
        return (build_trimap(pix, m) == UNKNOWN).sum() / perimeter(m) / unit

    clean_width = mean_width(clean, disc)
    fur_width = mean_width(pixels, coarse)
    assert 3.0 <= clean_width <= 5.0  # out_min on both sides: 2 + 2 units
    assert fur_width > 1.8 * clean_width
    # Structure parallel to the edge (a car's trim line just inside its outline) is not fur.
    trim = np.abs(np.sqrt((yy - h / 2) ** 2 + (xx - w / 2) ** 2) - (0.35 * h - 2 * unit)) < 2
    striped = clean.copy()
    striped[trim] = (20, 20, 20)
    assert mean_width(striped, disc) < 1.2 * clean_width


def test_unsure_logits_widen_the_band():
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w]
    mask = xx < 150
    pixels = np.where(mask[..., None], (200, 40, 30), (40, 160, 60)).astype(np.uint8)
    sure = np.where(mask, 20.0, -20.0).astype(np.float32)
    unsure = sure.copy()
    unsure[:100] = ((150 - xx[:100]) / 10.0).astype(np.float32)  # gentle slope in the top half
    band_sure = build_trimap(pixels, mask, sure) == UNKNOWN
    band_unsure = build_trimap(pixels, mask, unsure) == UNKNOWN
    assert band_unsure[:100].sum() > 2 * band_sure[:100].sum()
    assert band_unsure[100:].sum() == band_sure[100:].sum()


def test_logits_are_accepted_by_refine_alpha(lemur):
    pixels, gt, coarse = lemur
    logits = ((gt - 0.5) * 12).astype(np.float32)  # a made-up, smooth "SAM" logit
    alpha, _ = refine_alpha(pixels, coarse, logits)
    assert sad(alpha, gt) < sad(coarse, gt)


def test_thin_object_keeps_its_core():
    h, w = 120, 160
    mask = np.zeros((h, w), bool)
    mask[20:100, 78:82] = True  # a 4 px stick, thinner than any band
    pixels = np.where(mask[..., None], (230, 230, 230), (20, 20, 20)).astype(np.uint8)
    alpha, _ = refine_alpha(pixels, mask)
    assert alpha[20:100, 79:81].mean() > 0.9


@pytest.mark.parametrize("fill", [False, True])
def test_empty_or_full_mask_is_returned_unchanged(rgb_image, fill):
    mask = np.full(rgb_image.shape[:2], fill)
    alpha, fg = refine_alpha(rgb_image, mask)
    assert (alpha == float(fill)).all()
    assert np.array_equal(fg, rgb_image)


def test_cancel_raises_cancelled(rgb_image):
    mask = np.zeros(rgb_image.shape[:2], bool)
    mask[80:200, 190:310] = True
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(Cancelled):
        refine_alpha(rgb_image, mask, should_cancel=should_cancel)


def test_bad_inputs_are_rejected(rgb_image):
    mask = np.zeros(rgb_image.shape[:2], bool)
    with pytest.raises(ValueError, match="uint8"):
        refine_alpha(rgb_image.astype(np.float32), mask)
    with pytest.raises(ValueError, match="does not match"):
        refine_alpha(rgb_image, mask[:-1])
    with pytest.raises(ValueError, match="logits"):
        refine_alpha(rgb_image, mask, np.zeros((2, 2), np.float32))


def test_work_size_trades_little_quality_for_speed(lemur):
    """Solving at half resolution and guided upsampling stays close to the full-resolution matte."""
    pixels, gt, coarse = lemur
    alpha, fg = refine_matte(pixels, coarse, params=MattingParams(work_size=340))
    assert sad(alpha, gt) <= 1.1
    assert fg.shape == pixels.shape


def test_ragged_mask_is_solved_on_a_smaller_copy(lemur):
    """A band larger than max_unknown pixels is solved smaller: still a matte, still better than the mask."""
    pixels, gt, coarse = lemur
    alpha, fg = refine_matte(pixels, coarse, params=MattingParams(max_unknown=8000))
    assert alpha.shape == gt.shape and fg.shape == pixels.shape
    assert sad(alpha, gt) < 0.6 * sad(coarse, gt)
    assert ((alpha > 0.02) & (alpha < 0.98)).sum() > 5000
