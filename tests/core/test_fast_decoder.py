"""The fast mask-decoder forward computes the stock decoder's function."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from persam_studio.core.models import fast_decoder
from persam_studio.core.segment.engine import Engine
from persam_studio.core.types import Embedding
from persam_studio.core.models.guided_decoder import decode

# Decoder logits of the random test models are O(0.1..1); float32 rounding in
# a different summation order moves them by ~1e-7.
ATOL = 1e-5


@pytest.fixture(scope="module")
def inputs(tiny_sam):
    torch.manual_seed(1)
    with torch.inference_mode():
        feats = torch.randn(1, 256, 64, 64)
        pe = tiny_sam.prompt_encoder.get_dense_pe()
        points = (torch.tensor([[[500.0, 400.0], [100.0, 700.0]]]), torch.tensor([[1, 0]]))
        box = torch.tensor([[200.0, 150.0, 800.0, 900.0]])
        mask = torch.randn(1, 1, 256, 256)
    return tiny_sam, feats, pe, points, box, mask


def _stock(sam, feats, pe, sparse, dense, multimask):
    return sam.mask_decoder(image_embeddings=feats, image_pe=pe, sparse_prompt_embeddings=sparse,
                            dense_prompt_embeddings=dense, multimask_output=multimask)


@pytest.mark.parametrize("prompt", ["points", "box", "points+box", "points+mask"])
@pytest.mark.parametrize("multimask", [True, False])
def test_fast_decoder_equals_stock(inputs, prompt, multimask):
    sam, feats, pe, points, box, mask = inputs
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(
            points=points if "points" in prompt else None,
            boxes=box if "box" in prompt else None,
            masks=mask if "mask" in prompt else None,
        )
        fast = fast_decoder.FastDecoder(sam.mask_decoder, sam.prompt_encoder.no_mask_embed.weight)
        state = fast.prepare(feats, pe, dense if "mask" in prompt else None)
        got_low, got_iou = fast(state, sparse, multimask)
        want_low, want_iou = _stock(sam, feats, pe, sparse, dense, multimask)
    assert got_low.shape == want_low.shape == (1, 3 if multimask else 1, 256, 256)
    torch.testing.assert_close(got_low, want_low, atol=ATOL, rtol=0)
    torch.testing.assert_close(got_iou, want_iou, atol=ATOL, rtol=0)
    # The masks themselves agree wherever the logit is not within rounding of 0.
    clear = want_low.abs() > ATOL
    assert torch.equal((got_low > 0)[clear], (want_low > 0)[clear])


def test_fast_decoder_hooks_equal_reference(inputs):
    sam, feats, pe, points, _, _ = inputs
    g = torch.linspace(-1.0, 2.0, 4096)
    e = torch.linspace(0.5, -0.5, 256)
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(points=points, boxes=None, masks=None)
        fast = fast_decoder.FastDecoder(sam.mask_decoder, sam.prompt_encoder.no_mask_embed.weight)
        state = fast.prepare(feats, pe)
        for hooks in (dict(guidance=g), dict(target_embedding=e), dict(guidance=g, target_embedding=e)):
            got = fast(state, sparse, False, **hooks)
            want = decode(sam.mask_decoder, feats, pe, sparse, dense, False, **hooks)
            torch.testing.assert_close(got[0], want[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(got[1], want[1], atol=ATOL, rtol=0)
        plain = fast(state, sparse, False)
    assert not torch.allclose(plain[0], got[0], atol=1e-3)  # the hooks do change the result


def test_engine_uses_fast_decoder_and_matches_sam_predictor(tiny_sam, rgb_image):
    engine = Engine(tiny_sam, model_key="tiny-test")
    assert engine._fast_decoder is not None
    emb = engine.encode(rgb_image)
    predictor = SamPredictor(tiny_sam)
    predictor.features = engine.features(emb)
    predictor.original_size, predictor.input_size = emb.original_size, emb.input_size
    predictor.is_image_set = True
    coords, labels = np.array([[250.0, 140.0], [40.0, 250.0]]), np.array([1, 0])
    first = engine.predict(emb, coords, labels)
    for mask_input in (None, first.low_res_logits[:1]):
        res = engine.predict(emb, coords, labels, mask_input=mask_input)
        want_logits, want_iou, want_low = predictor.predict(
            coords, labels, mask_input=mask_input, multimask_output=True, return_logits=True)
        np.testing.assert_allclose(res.low_res_logits, want_low, atol=ATOL)
        np.testing.assert_allclose(res.iou_predictions, want_iou, atol=ATOL)
        np.testing.assert_allclose(res.logits(1), want_logits[1], atol=ATOL)


def test_per_image_state_follows_the_embedding(tiny_sam):
    """Clicks on another image never reuse the previous image's prepared state."""
    engine = Engine(tiny_sam, model_key="tiny-test")
    rng = np.random.default_rng(3)
    coords, labels = np.array([[120.0, 80.0]]), np.array([1])
    results = []
    for _ in range(3):
        # Each embedding is dropped before the next is made, so a memo keyed
        # on id() alone could be fooled by a reused address.
        emb = Embedding(rng.standard_normal((256, 64, 64)).astype(np.float32), (300, 400), (768, 1024),
                        "k", "tiny-test")
        got = engine.predict(emb, coords, labels).low_res_logits
        fresh = Engine(tiny_sam, model_key="tiny-test").predict(emb, coords, labels).low_res_logits
        np.testing.assert_array_equal(got, fresh)
        results.append(got)
        del emb
    assert not np.allclose(results[0], results[1], atol=1e-3)


def test_unsupported_decoder_falls_back_to_stock(tiny_sam, rgb_image):
    """A decoder that is not the stock class (a modified SAM) runs its own forward."""
    import copy

    from segment_anything.modeling.mask_decoder import MaskDecoder

    class Custom(MaskDecoder):
        pass

    sam = copy.deepcopy(tiny_sam)
    sam.mask_decoder.__class__ = Custom
    assert not fast_decoder.supports(sam.mask_decoder)
    engine = Engine(sam, model_key="tiny-custom")
    assert engine._fast_decoder is None
    emb = engine.encode(rgb_image)
    res = engine.predict(emb, np.array([[250.0, 140.0]]), np.array([1]))
    assert res.low_res_logits.shape == (3, 256, 256)
