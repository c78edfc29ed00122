"""Select subject's core: soft map -> mask numbers and SAM prompt (core/segment/selection.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from persam_studio.core.geometry import mask_box, sam_input_size, upscale_logits
from persam_studio.core.segment.selection import (
    LOGIT_LIMIT,
    Selection,
    add_click,
    soft_to_mask_input,
    subject_box,
    subject_prompt,
    subject_stats,
)
from persam_studio.core.types import Box, Point
from tests.conftest import SHARED, shared_data


def _disc(h: int, w: int, cx: float, cy: float, r: float, blur: float = 0.0) -> np.ndarray:
    """float32 (h, w) soft map of a disc; ``blur`` = Gaussian sigma of its edge, in pixels."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - cx, yy - cy) - r
    if blur == 0.0:
        return (d <= 0).astype(np.float32)
    return (1.0 / (1.0 + np.exp(d / blur))).astype(np.float32)


def _round_trip(soft: np.ndarray) -> np.ndarray:
    """The mask SAM's own post-processing reads back from soft_to_mask_input(soft)."""
    h, w = soft.shape
    return upscale_logits(soft_to_mask_input(soft)[None], sam_input_size((h, w)), (h, w))[0, 0] > 0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_mask_input_is_sam_shaped_bounded_logits_with_background_padding():
    soft = _disc(300, 800, 400, 150, 100, blur=2.0)  # wide photo: SAM pads its bottom
    low = soft_to_mask_input(soft)
    assert low.shape == (1, 256, 256) and low.dtype == np.float32
    assert low.max() <= LOGIT_LIMIT + 1e-4 and low.min() >= -LOGIT_LIMIT - 1e-4
    h_in = sam_input_size((300, 800))[0]  # 384 of 1024 rows hold the photo: 96 of 256
    assert np.all(low[0, h_in // 4 + 1 :] == pytest.approx(-LOGIT_LIMIT, abs=1e-3))
    # The disc's centre (400, 150) lands at (128, 48) in the 256 frame.
    assert low[0, 48, 128] > 5 and low[0, 5, 5] < -5


@pytest.mark.parametrize("shape", [(300, 800), (901, 640), (1500, 1500)])
def test_round_trip_through_sams_upsampling_gives_the_mask_back(shape):
    h, w = shape
    soft = _disc(h, w, 0.55 * w, 0.45 * h, 0.3 * min(h, w), blur=1.5)
    assert _iou(_round_trip(soft), soft >= 0.5) >= 0.98


def test_box_is_the_masks_bounding_box_at_any_map_size():
    soft = np.zeros((200, 300), np.float32)
    soft[40:121, 70:251] = 0.9
    soft[10, 10] = 0.49  # below the threshold: not subject
    box = subject_box(soft)
    assert box == Box(70, 40, 250, 120)
    assert np.array_equal(box.as_array(), mask_box(soft >= 0.5))
    # A subject on a 20 x 30 map (the model's grid: cells of 10 x 10 photo pixels): its cells' outer edges.
    small = np.zeros((20, 30), np.float32)
    small[4:13, 7:25] = 1.0
    assert subject_box(small, (200, 300)) == Box(70, 40, 249, 129)
    assert subject_box(np.zeros((5, 5), np.float32)) is None


def test_prompt_holds_box_and_map_and_a_click_extends_it():
    soft = _disc(240, 320, 160, 120, 50, blur=1.0)
    prompt = subject_prompt(soft, (240, 320))
    assert prompt.box == subject_box(soft) and prompt.points == ()
    assert np.array_equal(prompt.mask_input, soft_to_mask_input(soft))
    inside = add_click(prompt, Point(150, 110, 1))
    assert inside.box == prompt.box and inside.points == (Point(150, 110, 1),)
    assert inside.mask_input is prompt.mask_input
    # An object click outside the box widens it (a box would veto that object); a background one never does.
    outside = add_click(inside, Point(300, 20, 1))
    assert outside.box == Box(prompt.box.x0, 20, 300, prompt.box.y1) and len(outside.points) == 2
    assert add_click(prompt, Point(300, 20, 0)).box == prompt.box
    assert subject_prompt(np.zeros((10, 10), np.float32)).is_empty()
    assert Selection(soft, *subject_stats(soft)).prompt().box == prompt.box


def test_stats_coverage_and_edge_confidence():
    crisp = _disc(400, 400, 200, 200, 100)
    coverage, confidence = subject_stats(crisp)
    assert coverage == pytest.approx(np.pi * 100**2 / 400**2, rel=0.02) and confidence == 1.0
    hesitant = _disc(400, 400, 200, 200, 100, blur=8.0)
    assert subject_stats(hesitant)[0] == pytest.approx(coverage, rel=0.02)
    assert subject_stats(hesitant)[1] < 0.5 < subject_stats(_disc(400, 400, 200, 200, 100, blur=1.0))[1]
    assert subject_stats(np.zeros((50, 50), np.float32)) == (0.0, 0.0)
    assert subject_stats(np.ones((50, 50), np.float32)) == (1.0, 0.0)
    # A 12 MP map is measured shrunk; the numbers barely move.
    big = cv2.resize(hesitant, (4000, 3000), interpolation=cv2.INTER_LINEAR)
    small = cv2.resize(hesitant, (1000, 750), interpolation=cv2.INTER_AREA)
    assert subject_stats(big)[1] == pytest.approx(subject_stats(small)[1], abs=0.02)


def test_sam_refines_the_subject_prompt(tiny_engine, rgb_image):
    # Random weights cannot say whether the answer is good; this checks SAM takes the prompt
    # (box + mask_input + clicks) and answers at the photo's size.
    soft = _disc(300, 400, 250, 140, 60, blur=1.0)
    embedding = tiny_engine.encode(rgb_image)
    prompt = add_click(subject_prompt(soft, embedding.original_size), Point(250, 140, 1))
    result = tiny_engine.predict(embedding, prompt, multimask_output=False)
    assert len(result) == 1 and result.mask().shape == (300, 400)


@pytest.mark.slow
def test_round_trip_on_a_real_subject_map():
    from persam_studio.core.io.imageio import load_image
    from persam_studio.core.models.subject import SubjectModel

    model_path = SHARED / "models" / "isnet-medium.onnx"
    if not model_path.is_file():
        pytest.skip(f"shared model not available: {model_path}")
    pixels = load_image(shared_data("perseg-examples", "duck_toy_01.jpg")).pixels
    soft = SubjectModel(model_path).predict(pixels)
    subject = soft >= 0.5
    assert _iou(_round_trip(soft), subject) >= 0.98
    assert np.array_equal(subject_box(soft).as_array(), mask_box(subject))

