"""PerSAM / PerSAM-F on a tiny random SAM: the algorithm's steps, checked one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persam_studio.core.personalize import persam
from persam_studio.core.types import Embedding, MaskResult
from persam_studio.core.geometry import upscale_logits
from persam_studio.core.errors import MaskError
from persam_studio.core.personalize.persam import PersamResult, Target


def _embedding(features: np.ndarray, size=(300, 400), key="img") -> Embedding:
    h, w = size
    s = 1024 / max(h, w)
    return Embedding(features.astype(np.float32), (h, w), (int(h * s + 0.5), int(w * s + 0.5)), key, "tiny-test")


def _target(t: np.ndarray, mode="persam", weights=None) -> Target:
    t = t.astype(np.float32)
    return Target("obj", mode, t * 3.0, t / np.linalg.norm(t), weights, 1, "tiny-test")


@pytest.fixture(scope="module")
def album(tiny_sam, rgb_image):
    """Two encoded images (the disc image and a shifted copy) and the disc's mask."""
    from persam_studio.core.segment.engine import Engine

    engine = Engine(tiny_sam, "tiny-test")
    h, w = rgb_image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    mask = (xx - 250) ** 2 + (yy - 140) ** 2 < 60**2
    other = np.ascontiguousarray(np.roll(rgb_image, (40, -90), axis=(0, 1)))
    return engine, engine.encode(rgb_image), mask, engine.encode(other)


# -- location prior ------------------------------------------------------------------


def test_location_prior_picks_arg_max_and_arg_min(tiny_engine):
    feats = np.zeros((256, 64, 64), np.float32)
    feats[1] = 1.0  # every cell orthogonal to the target ...
    feats[:, 20, 10] = 0.0
    feats[0, 20, 10] = 1.0  # ... except one cell equal to it (row 20, column 10)
    feats[:, 5, 40] = 0.0
    feats[0, 5, 40] = -1.0  # and one opposite (row 5, column 40)
    emb = _embedding(feats)
    t = np.zeros(256, np.float32)
    t[0] = 1.0
    sim, pos, neg = persam.location_prior(tiny_engine, emb, _target(t))
    assert sim.shape == (300, 400) and sim.dtype == np.float32
    assert np.unravel_index(np.argmax(sim), sim.shape) == (pos[1], pos[0])
    assert np.unravel_index(np.argmin(sim), sim.shape) == (neg[1], neg[0])
    # Cell (r, c) covers input pixels [16c, 16c + 16); the image is scaled by 1024/400.
    scale = 400 / 1024
    for (x, y), (r, c) in ((pos, (20, 10)), (neg, (5, 40))):
        assert 16 * c * scale - 1 <= x <= 16 * (c + 1) * scale + 1
        assert 16 * r * scale - 1 <= y <= 16 * (r + 1) * scale + 1
    assert sim.max() > 0.5 and sim.min() < -0.5 and abs(np.median(sim)) < 1e-6


def test_guidance_map_standardises_and_samples(tiny_engine):
    sim = torch.zeros(6, 8)
    sim[:, 4:] = 1.0  # right half similar
    g = persam.guidance_map(sim)
    assert g.shape == (4096,) and g.dtype == np.float32
    grid = g.reshape(64, 64)
    z = 0.5 / np.sqrt(0.25 * 48 / 47)  # (S - mean) / std with the unbiased std of 48 values
    assert grid[10, 60] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-5)
    assert grid[10, 2] == pytest.approx(1 / (1 + np.exp(z)), abs=1e-5)
    assert grid[:, 31:33].min() > grid[10, 2] and grid[:, 31:33].max() < grid[10, 60]  # bilinear edge


# -- the target ------------------------------------------------------------------------


def test_reference_cells_follow_the_resized_mask(tiny_engine):
    emb = _embedding(np.ones((256, 64, 64)), size=(256, 256))  # x4 to 1024: 4 pixels per 1/16 cell
    mask = np.zeros((256, 256), bool)
    mask[:64, 32:128] = True  # input rows [0, 256), columns [128, 512)
    cells = persam.reference_cells(tiny_engine, emb, mask)
    expected = np.zeros((64, 64), bool)
    expected[:16, 8:32] = True
    np.testing.assert_array_equal(cells, expected)


def test_target_embeddings_mean_and_max_mean(tiny_engine):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((256, 64, 64)).astype(np.float32)
    emb = _embedding(feats, size=(256, 256))
    mask = np.zeros((256, 256), bool)
    mask[:64, 32:128] = True
    inside = feats[:, :16, 8:32].reshape(256, -1)
    t = persam.fit_target(tiny_engine, [(emb, mask)], name="cup")
    assert t.mode == "persam" and t.weights is None and t.name == "cup" and t.n_references == 1
    np.testing.assert_allclose(t.embedding, inside.mean(1), atol=1e-5)
    np.testing.assert_allclose(t.target, t.embedding / np.linalg.norm(t.embedding), atol=1e-6)
    tf = persam.fit_target(tiny_engine, [(emb, mask)], finetune=True, steps=2)
    np.testing.assert_allclose(tf.embedding, (inside.max(1) + inside.mean(1)) / 2, atol=1e-5)
    assert tf.mode == "persam_f" and tf.weights.shape == (3,) and tf.weights.dtype == np.float32
    assert tf.weights.sum() == pytest.approx(1.0, abs=1e-6)
    # Few-shot: the average of each reference's embedding, whatever the object sizes.
    mask2 = np.zeros((256, 256), bool)
    mask2[200:204, 200:204] = True  # one cell's worth
    two = persam.fit_target(tiny_engine, [(emb, mask), (emb, mask2)])
    one2 = persam.fit_target(tiny_engine, [(emb, mask2)])
    np.testing.assert_allclose(two.embedding, (t.embedding + one2.embedding) / 2, atol=1e-5)
    assert two.n_references == 2


def test_tiny_object_uses_the_cell_it_touches_most(tiny_engine):
    feats = np.zeros((256, 64, 64), np.float32)
    feats[3, 30, 21] = 5.0  # a feature only in cell (30, 21)
    emb = _embedding(feats, size=(256, 256))
    mask = np.zeros((256, 256), bool)
    # 2x2 object at input pixels 4*(120..121), 4*(84..85): cell (30, 21), away from
    # its centre (input 487.5, 343.5), so bilinear sampling finds no cell inside.
    mask[120:122, 84:86] = True
    target = persam.fit_target(tiny_engine, [(emb, mask)])
    assert np.isfinite(target.embedding).all()
    assert target.embedding[3] == pytest.approx(5.0) and np.count_nonzero(target.embedding) == 1


def test_empty_and_wrong_size_masks_are_one_line_errors(tiny_engine):
    emb = _embedding(np.ones((256, 64, 64)))
    with pytest.raises(MaskError) as empty:
        persam.fit_target(tiny_engine, [(emb, np.zeros((300, 400), bool))])
    with pytest.raises(MaskError) as wrong:
        persam.fit_target(tiny_engine, [(emb, np.ones((400, 300), bool))])
    assert str(empty.value) == "reference 1: mask is empty (no object pixel)"
    assert str(wrong.value) == "reference 1: mask is 300x400 but its image is 400x300"
    assert "\n" not in str(empty.value) + str(wrong.value)


# -- segmentation ----------------------------------------------------------------------


class Spy:
    """Records the decoder calls PerSAM makes (guided and stock) and their results."""

    def __init__(self, monkeypatch, engine, empty_at: int | None = None):
        self.calls: list[dict] = []
        real_predict = engine.predict

        def record(fn, args, kwargs):
            # PerSAM's first, hooked call passes the guidance map; the others are stock.
            kind = "guided" if kwargs.get("guidance") is not None else "stock"
            res = fn(*args, **kwargs)
            if empty_at is not None and len(self.calls) + 1 == empty_at:
                res = MaskResult(np.full_like(res.low_res_logits, -50.0), res.iou_predictions,
                                 res.original_size, res.input_size)
            self.calls.append({"kind": kind, "args": args, "kwargs": kwargs, "result": res})
            return res

        monkeypatch.setattr(engine, "predict", lambda *a, **k: record(real_predict, a, k))


def _box_of(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)


def test_persam_cascade_uses_previous_mask_and_box(monkeypatch, album):
    engine, ref, mask, test = album
    target = persam.fit_target(engine, [(ref, mask)])
    spy = Spy(monkeypatch, engine)
    result = persam.segment(engine, test, target)
    first, second, third = spy.calls
    sim, pos, neg = persam.location_prior(engine, test, target)

    assert first["kind"] == "guided"
    np.testing.assert_array_equal(first["args"][1], [pos, neg])
    np.testing.assert_array_equal(first["args"][2], [1, 0])
    assert first["kwargs"]["multimask_output"] is False
    np.testing.assert_array_equal(first["kwargs"]["guidance"], persam.guidance_map(torch.from_numpy(sim)))
    np.testing.assert_array_equal(first["kwargs"]["target_embedding"], target.embedding)

    assert second["kind"] == "stock" and second["kwargs"].get("box") is None
    np.testing.assert_array_equal(second["kwargs"]["mask_input"], first["result"].low_res_logits[0:1])
    assert second["kwargs"]["multimask_output"] is True

    r2 = second["result"]
    best = int(np.argmax(r2.iou_predictions))
    np.testing.assert_array_equal(third["kwargs"]["box"], _box_of(r2.mask(best)))
    np.testing.assert_array_equal(third["kwargs"]["mask_input"], r2.low_res_logits[best : best + 1])
    np.testing.assert_array_equal(third["args"][1], [pos, neg])
    np.testing.assert_array_equal(second["args"][1], [pos, neg])

    r3 = third["result"]
    b3 = int(np.argmax(r3.iou_predictions))
    assert isinstance(result, PersamResult) and result.steps == 3
    np.testing.assert_array_equal(result.low_res_logits, r3.low_res_logits[b3 : b3 + 1])
    assert result.iou == pytest.approx(float(r3.iou_predictions[b3]))
    assert result.similarity_peak == pytest.approx(float(sim.max()))
    assert result.confidence == pytest.approx(np.sqrt(np.clip(result.iou, 0, 1) * np.clip(sim.max(), 0, 1)))
    np.testing.assert_array_equal(result.mask(), r3.mask(b3))
    assert result.mask((30, 40)).shape == (30, 40) and result.mask().dtype == bool


def test_persam_f_cascade_fuses_then_refines_with_boxes(monkeypatch, album):
    engine, ref, mask, test = album
    base = persam.fit_target(engine, [(ref, mask)], finetune=True, steps=1)
    target = Target(**{**base.__dict__, "weights": np.array([0.2, 0.5, 0.3], np.float32)})
    spy = Spy(monkeypatch, engine)
    result = persam.segment(engine, test, target)
    first, second, third = spy.calls
    _, pos, _ = persam.location_prior(engine, test, target)
    assert all(c["kind"] == "stock" for c in spy.calls)
    np.testing.assert_array_equal(first["args"][1], [pos])
    np.testing.assert_array_equal(first["args"][2], [1])
    assert first["kwargs"]["multimask_output"] is True and first["kwargs"].get("box") is None

    # The doc's way: fuse the three original-size maps.
    low = torch.from_numpy(first["result"].low_res_logits)[None]
    full = upscale_logits(low, test.input_size, test.original_size)[0].numpy()
    fused_mask = np.tensordot(target.weights, full, axes=1) > 0
    np.testing.assert_array_equal(second["kwargs"]["box"], _box_of(fused_mask))
    fused_low = (first["result"].low_res_logits * target.weights[:, None, None]).sum(0, keepdims=True)
    np.testing.assert_allclose(second["kwargs"]["mask_input"], fused_low, atol=1e-6)

    r2 = second["result"]
    best = int(np.argmax(r2.iou_predictions))
    np.testing.assert_array_equal(third["kwargs"]["box"], _box_of(r2.mask(best)))
    np.testing.assert_array_equal(third["kwargs"]["mask_input"], r2.low_res_logits[best : best + 1])
    assert result.steps == 3 and len(result.point_coords) == 1
    np.testing.assert_array_equal(result.box, _box_of(r2.mask(best)))


@pytest.mark.parametrize("empty_at, steps", [(3, 2), (2, 1), (1, 1)])
def test_an_empty_step_returns_the_previous_mask(monkeypatch, album, empty_at, steps):
    engine, ref, mask, test = album
    target = persam.fit_target(engine, [(ref, mask)])
    spy = Spy(monkeypatch, engine, empty_at=empty_at)
    result = persam.segment(engine, test, target)
    assert len(spy.calls) == empty_at  # stopped at the empty step
    assert result.steps == steps
    if empty_at == 1:
        assert result.empty and result.confidence == 0.0 and not result.mask().any()
    else:
        prev = spy.calls[empty_at - 2]["result"]
        i = 0 if empty_at == 2 else int(np.argmax(prev.iou_predictions))
        np.testing.assert_array_equal(result.low_res_logits, prev.low_res_logits[i : i + 1])
        assert result.mask().any() and not result.empty


# -- PerSAM-F fitting -------------------------------------------------------------------


def test_fitted_weights_equal_the_reference_procedure(album):
    engine, ref, mask, _ = album
    target = persam.fit_target(engine, [(ref, mask)], finetune=True, steps=1)
    fast = persam.fit_weights(engine, [(ref, mask)], target, steps=20)
    slow = persam.fit_weights_reference(engine, [(ref, mask)], target, steps=20)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-5)
    assert np.abs(fast - 1 / 3).max() > 5e-3  # it moved: 20 steps of lr ~1e-3


def test_closed_form_gradient_equals_autograd():
    rng = np.random.default_rng(3)
    maps = [torch.from_numpy(rng.normal(-1, 4, (3, 5000)).astype(np.float32)),
            torch.from_numpy(rng.normal(0, 6, (3, 700)).astype(np.float32))]
    gts = [rng.random(5000) < 0.3, rng.random(700) < 0.6]
    p = torch.nn.Parameter(torch.tensor([[0.2], [0.45]]))
    loss = 0.0
    for m, gt in zip(maps, gts):
        fused = (m * persam._weights(p)).sum(0).unsqueeze(0)
        g = torch.from_numpy(gt.astype(np.float32))[None]
        loss = loss + persam.dice_loss(fused, g) + persam.focal_loss(fused, g)
    (loss / 2).backward()
    w = persam._weights(p.detach()).reshape(3)
    ours = persam._FusedLoss(maps, gts).grad(w)
    np.testing.assert_allclose((ours[1:] - ours[0]).numpy(), p.grad.ravel().numpy(), rtol=1e-4, atol=1e-7)
