"""The fast ViT encoder forward gives the stock embeddings and masks, per instance, reversibly."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import get_rel_pos

from persam_studio.core.models import fast_vit
from persam_studio.core.segment.engine import Engine
from persam_studio.core.models.sam_build import random_sam


def _sharpen(encoder: torch.nn.Module, seed: int = 0) -> None:
    """Make attention peaky and rel-pos terms large, so a wrong bias would show.

    Random SAM weights give nearly uniform attention, where almost any bias
    error averages away.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "rel_pos" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif name.endswith("attn.qkv.weight"):
                p.mul_(4.0)


def _small_encoder(img: int = 160, window: int = 4, global_idx: tuple[int, ...] = (1,)) -> ImageEncoderViT:
    """6 heads, windowed blocks whose grid (img/16) is not a multiple of the window."""
    torch.manual_seed(1)
    enc = ImageEncoderViT(
        img_size=img, patch_size=16, embed_dim=96, depth=3, num_heads=6, mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
        global_attn_indexes=global_idx, window_size=window, out_chans=32,
    ).eval()
    _sharpen(enc)
    return enc


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|: the error relative to the output's scale."""
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("window,global_idx", [(4, (1,)), (3, (0, 2)), (5, ())])
def test_small_encoder_matches_stock(batch, window, global_idx):
    enc = _small_encoder(window=window, global_idx=global_idx)
    x = torch.randn(batch, 3, 160, 160)
    with torch.inference_mode():
        want = enc(x)
        assert fast_vit.accelerate_encoder(enc)
        got = enc(x)
        chunked = fast_vit.fast_encode(enc, x, chunk_bytes=2 * 10 * 100 * 4)  # 2 query rows a chunk
    assert got.shape == want.shape
    assert _rel_err(got, want) < 1e-4
    assert _rel_err(chunked, want) < 1e-4


def test_rel_pos_terms_match_stock_on_a_rectangular_grid_and_resized_tables():
    torch.manual_seed(0)
    h, w, hd = 5, 7, 8
    q = torch.randn(2, 3, h * w, hd)
    for lh, lw in [(2 * h - 1, 2 * w - 1), (6, 20)]:  # exact tables, then tables to interpolate
        rp_h, rp_w = torch.randn(lh, hd), torch.randn(lw, hd)
        rel_h, rel_w = fast_vit.rel_pos_tables(q, rp_h, rp_w, (h, w))
        r_q = q.reshape(6, h, w, hd)
        want_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(h, h, rp_h)).reshape(2, 3, h, w, h)
        want_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(w, w, rp_w)).reshape(2, 3, h, w, w)
        torch.testing.assert_close(rel_h, want_h, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rel_w, want_w, rtol=1e-5, atol=1e-5)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _check_engine_equivalence(sam, image: np.ndarray, tol: float, accelerated_too: bool = True) -> None:
    """Stock vs fast embeddings through the Engine, and the masks they give.

    The engine's own way to the fast forward (``fast=True`` calls
    ``fast_encode``) and, with ``accelerated_too``, an accelerated module
    under a stock engine.
    """
    engine = Engine(sam, model_key="fast-vit-test", fast=False)
    assert not engine.fast and not fast_vit.is_accelerated(sam.image_encoder)
    stock = engine.encode(image)
    fast_engine = Engine(sam, model_key="fast-vit-test")
    assert fast_engine.fast
    fast = fast_engine.encode(image)
    results = [fast.features]
    if accelerated_too:
        assert fast_vit.accelerate_encoder(sam.image_encoder)
        try:
            results.append(engine.encode(image).features)
        finally:
            fast_vit.restore_encoder(sam.image_encoder)
    want = stock.features
    assert want.shape == (256, 64, 64)
    for got in results:
        assert got.shape == want.shape
        assert np.abs(got - want).max() / np.abs(want).max() < tol
    h, w = image.shape[:2]
    prompts = [
        dict(point_coords=np.array([[w * 0.6, h * 0.45]]), point_labels=np.array([1])),
        dict(point_coords=np.array([[w * 0.2, h * 0.8], [w * 0.7, h * 0.3]]), point_labels=np.array([1, 0])),
        dict(box=np.array([w * 0.1, h * 0.1, w * 0.8, h * 0.9])),
    ]
    for prompt in prompts:
        a, b = engine.predict(stock, **prompt), engine.predict(fast, **prompt)
        for i in range(len(a)):
            assert _iou(a.mask(i), b.mask(i)) >= 0.999


def test_engine_masks_equal_with_the_tiny_sam(rgb_image):
    sam = random_sam("tiny", seed=3)  # 1024 input: 64x64 global block, 14-windows padded to 70
    _sharpen(sam.image_encoder)
    _check_engine_equivalence(sam, rgb_image, tol=1e-4)


@pytest.mark.slow
def test_engine_masks_equal_with_vit_b(rgb_image):
    """The real size: vit_b weights (random), one image, stock vs fast (~30-60 s)."""
    _check_engine_equivalence(random_sam("vit_b"), rgb_image, tol=1e-3, accelerated_too=False)


def test_accelerate_is_per_instance_idempotent_and_reversible():
    a, b = _small_encoder(), _small_encoder()
    keys = {k: v.clone() for k, v in a.state_dict().items()}
    assert fast_vit.accelerate_encoder(a) and fast_vit.accelerate_encoder(a)
    assert fast_vit.is_accelerated(a) and not fast_vit.is_accelerated(b)
    assert type(a).forward is ImageEncoderViT.forward  # the class is untouched
    assert all(torch.equal(keys[k], v) for k, v in a.state_dict().items()) and keys.keys() == a.state_dict().keys()
    assert fast_vit.restore_encoder(a)
    assert not fast_vit.is_accelerated(a) and not fast_vit.restore_encoder(a)
    assert "forward" not in a.__dict__


def test_declines_encoders_it_does_not_reproduce():
    class Custom(ImageEncoderViT):
        pass

    custom = Custom(img_size=64, embed_dim=32, depth=1, num_heads=2, use_rel_pos=True, window_size=2)
    assert not fast_vit.accelerate_encoder(custom)
    assert not fast_vit.accelerate_encoder(torch.nn.Conv2d(3, 3, 1))
    assert "forward" not in custom.__dict__


def test_stock_path_runs_when_gradients_are_wanted():
    enc = _small_encoder()
    fast_vit.accelerate_encoder(enc)
    x = torch.randn(1, 3, 160, 160)
    out = enc(x)  # parameters require grad and grad mode is on: autograd's stock graph
    out.sum().backward()
    assert enc.blocks[0].attn.rel_pos_h.grad is not None


def test_bench_gflop_count_equals_torch_flop_counter():
    """The bench's matmul-bound limit rests on this count (vit_b: 972 GFLOP)."""
    from torch.utils.flop_counter import FlopCounterMode

    from persam_studio.bench.encoder_bench import vit_gflop
    from persam_studio.core.models.sam_build import build_sam

    for enc in (_small_encoder(), _small_encoder(window=3, global_idx=(0, 2))):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            ImageEncoderViT.forward(enc, torch.randn(1, 3, 160, 160))
        assert vit_gflop(enc) == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-12)
    assert vit_gflop(build_sam("vit_b", meta=True).image_encoder) == pytest.approx(972.08, abs=0.01)
