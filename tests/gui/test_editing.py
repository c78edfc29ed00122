"""Edit states as data: display sizes, candidates, strokes, mask restore (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from persam_studio.core.io.album import Stroke
from persam_studio.core.types import Box, Point
from persam_studio.core.geometry import logits_to_mask, sam_input_size
from persam_studio.gui.editing import (
    Bitmap,
    EditState,
    Prediction,
    display_size,
    render_strokes,
)


def test_display_size_caps_the_long_side_and_never_upscales():
    assert display_size((3000, 4000), 2048) == (1536, 2048)
    assert display_size((300, 400), 2048) == (300, 400)
    assert display_size((10000, 10), 1000) == (1000, 1)


def _prediction(c: int = 3, size=(30, 40)) -> Prediction:
    rng = np.random.default_rng(1)
    masks = rng.random((c, *size)) > 0.5
    return Prediction.from_masks(rng.normal(size=(c, 256, 256)), np.array([0.2, 0.9, 0.5][:c]), masks)


def test_prediction_packs_display_masks_losslessly():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 31, 45)) > 0.5
    pred = Prediction.from_masks(np.zeros((3, 256, 256)), np.array([0.1, 0.3, 0.2]), masks)
    assert pred.packed.nbytes * 7 < masks.nbytes  # what makes a long undo history affordable
    for i in range(3):
        np.testing.assert_array_equal(pred.display_mask(i), masks[i])
    assert pred.best_index == 1


def test_a_clicks_answer_brings_one_mask_and_makes_the_others_when_asked():
    """The worker sends the shown candidate's mask only; Tab makes the next one from its logits."""
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (3, 256, 256)).astype(np.float32)
    original, disp = (300, 400), (150, 200)
    expected = [logits_to_mask(low, original, disp) for low in logits]
    pred = Prediction.from_masks(logits, np.array([0.2, 0.9, 0.5]), {1: expected[1]}, original_size=original)
    assert list(pred.ready) == [False, True, False]
    for i in (1, 2, 0, 1):  # the given one, then made on demand, then from the packed bits
        np.testing.assert_array_equal(pred.display_mask(i), expected[i])
    assert pred.ready.all()
    with pytest.raises(ValueError):
        Prediction.from_masks(logits, np.array([0.2, 0.9, 0.5]), {1: expected[1]})  # no size to make the others


def test_transitions_and_candidate_cycling():
    s = EditState().with_point(Point(1, 2, 1))
    assert s.pending and s.multimask
    pred = _prediction()
    s = s.with_prediction(pred)
    assert not s.pending and s.candidate_index == 1  # best IoU by default
    assert s.cycled().candidate_index == 2 and s.cycled().cycled().candidate_index == 0
    s2 = s.with_point(Point(5, 5, 0))
    assert s2.pending and not s2.multimask and s2.prediction is None
    assert s.with_box(Box(0, 0, 3, 3)).box is not None
    assert EditState().cycled() == EditState()
    assert s.cleared().is_empty


def test_mask_applies_strokes_in_image_coordinates():
    state = EditState(bitmap=Bitmap(np.zeros((100, 200), bool)))
    state = state.with_stroke(Stroke("add", 10, ((50.0, 50.0), (150.0, 50.0))))
    full = state.mask((100, 200), (100, 200))
    half = state.mask((50, 100), (100, 200))
    assert full[50, 50:150].all() and full[45, 100] and not full[65, 100]
    assert half[25, 25:75].all() and not half[33, 50]
    erased = state.with_stroke(Stroke("erase", 5, ((100.0, 50.0),))).mask((100, 200), (100, 200))
    assert not erased[50, 98:102].any() and erased[50, 60]


def test_single_point_stroke_is_a_dot():
    out = render_strokes(np.zeros((20, 20), bool), [Stroke("add", 3, ((10.0, 10.0),))], (20, 20))
    assert out[10, 10] and out[10, 12] and not out[10, 15]


def test_empty_state_has_no_mask_and_bitmap_is_resized():
    assert EditState().mask((10, 10), (10, 10)) is None
    full = np.zeros((40, 60), bool)
    full[10:30, 20:40] = True
    small = EditState(bitmap=Bitmap(full)).mask((20, 30), (40, 60))
    assert small.shape == (20, 30) and small[5:15, 10:20].all() and small.sum() == 100


@pytest.mark.parametrize("size", [(300, 400), (120, 90)])
def test_opencv_restore_matches_the_engines_postprocessing(size):
    """Saved logits render (nearly) as the engine renders them."""
    from persam_studio.core.types import MaskResult

    rng = np.random.default_rng(0)
    low = rng.normal(size=(1, 256, 256)).astype(np.float32)
    low = np.cumsum(np.cumsum(low, 1), 2) / 50  # smooth, like real logits
    result = MaskResult(low, np.ones(1, np.float32), size, sam_input_size(size))
    for disp in [size, display_size(size, 100)]:
        ours = logits_to_mask(low[0], size, disp)
        ref = result.mask(0, disp)
        assert (ours != ref).mean() < 0.002
