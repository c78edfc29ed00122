"""The decoder hooks: stock without them, PerSAM's changes exactly where the paper puts them."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from persam_studio.core.types import Embedding, Point, Prompt
from persam_studio.core.models.guided_decoder import decode, guided_block, two_way_forward


@pytest.fixture(scope="module")
def decoder(tiny_sam):
    return tiny_sam.mask_decoder


@pytest.fixture(scope="module")
def inputs(tiny_sam):
    """Image features, PE and prompts as the engine builds them (random features, known prompts)."""
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 256, 64, 64, generator=g)
    pe = tiny_sam.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        coords = torch.tensor([[[300.0, 200.0], [800.0, 700.0]]])
        labels = torch.tensor([[1, 0]])
        boxes = torch.tensor([[200.0, 100.0, 600.0, 500.0]])
        masks = torch.randn(1, 1, 256, 256, generator=g)
        prompts = {
            "points": tiny_sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None),
            "box+mask": tiny_sam.prompt_encoder(points=None, boxes=boxes, masks=masks),
            "points+box": tiny_sam.prompt_encoder(points=(coords, labels), boxes=boxes, masks=None),
        }
    return feats, pe, prompts


def _g(seed: int = 2) -> torch.Tensor:
    return torch.sigmoid(torch.randn(4096, generator=torch.Generator().manual_seed(seed)) * 3)


def _e(seed: int = 3) -> torch.Tensor:
    return torch.randn(256, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prompt", ["points", "box+mask", "points+box"])
@pytest.mark.parametrize("multimask", [True, False])
def test_no_hooks_equals_stock_decoder(decoder, inputs, prompt, multimask):
    feats, pe, prompts = inputs
    sparse, dense = prompts[prompt]
    with torch.no_grad():
        stock = decoder(image_embeddings=feats, image_pe=pe, sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense, multimask_output=multimask)
        ours = decode(decoder, feats, pe, sparse, dense, multimask)
    assert ours[0].shape == stock[0].shape == (1, 3 if multimask else 1, 256, 256)
    assert torch.equal(ours[0], stock[0]) and torch.equal(ours[1], stock[1])


# -- a hook-free re-implementation of SAM's attention, to say where g may act ----------


def _attn(module, q, k, v, g=None):
    """segment_anything's Attention, written out; g after the softmax, then softmax again."""
    h = module.num_heads

    def heads(x):
        b, n, c = x.shape
        return x.reshape(b, n, h, c // h).transpose(1, 2)

    q, k, v = heads(module.q_proj(q)), heads(module.k_proj(k)), heads(module.v_proj(v))
    a = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(q.shape[-1]), dim=-1)
    if g is not None:
        a = torch.softmax(a + g, dim=-1)
    out = (a @ v).transpose(1, 2)
    return module.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


def _block(block, queries, keys, qpe, kpe, g, where):
    gs = lambda name: g if where == name else None  # noqa: E731
    if block.skip_first_layer_pe:
        queries = _attn(block.self_attn, queries, queries, queries)
    else:
        q = queries + qpe
        queries = queries + _attn(block.self_attn, q, q, queries)
    queries = block.norm1(queries)
    q, k = queries + qpe, keys + kpe
    queries = block.norm2(queries + _attn(block.cross_attn_token_to_image, q, k, keys, gs("t2i")))
    queries = block.norm3(queries + block.mlp(queries))
    q, k = queries + qpe, keys + kpe
    # image-to-token: the keys attend; a 4096-long g could only apply along the query axis.
    out = _attn(block.cross_attn_image_to_token, k, q, queries)
    if where == "i2t":
        out = out * g.reshape(1, -1, 1)
    keys = block.norm4(keys + out)
    return queries, keys


def _block_inputs(decoder, inputs, prompt="points"):
    feats, pe, prompts = inputs
    sparse, dense = prompts[prompt]
    out = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], 0)[None]
    tokens = torch.cat([out, sparse], 1)
    keys = (feats + dense).flatten(2).permute(0, 2, 1)
    kpe = pe.flatten(2).permute(0, 2, 1)
    return tokens, keys, kpe


@pytest.mark.parametrize("layer", [0, 1])
def test_guidance_acts_only_in_token_to_image_attention(decoder, inputs, layer):
    tokens, keys, kpe = _block_inputs(decoder, inputs)
    block = decoder.transformer.layers[layer]
    g = _g().reshape(1, 1, 1, -1)
    with torch.no_grad():
        queries = tokens if layer == 0 else tokens * 0.5 + 0.1  # any queries will do
        ours = guided_block(block, queries, keys, tokens, kpe, g)
        expected = _block(block, queries, keys, tokens, kpe, g, "t2i")
        unguided = _block(block, queries, keys, tokens, kpe, g, None)
        elsewhere = _block(block, queries, keys, tokens, kpe, g, "i2t")
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not torch.allclose(ours[0], unguided[0], atol=1e-3)  # g really acts
    assert not torch.allclose(ours[1], elsewhere[1], atol=1e-3)
    # The unguided re-implementation is the stock block (the reference is faithful).
    stock = block(queries=queries, keys=keys, query_pe=tokens, key_pe=kpe)
    torch.testing.assert_close(unguided[0], stock[0], rtol=0, atol=1e-5)


def _transformer(tr, keys, kpe, tokens, g=None, e=None, guide_final=False, pe_mode="reference"):
    """The reference PerSAM transformer, literally (in-place += e), on the stock modules."""
    point_embedding = tokens.clone()
    queries = point_embedding
    for i, layer in enumerate(tr.layers):
        if e is not None:
            if pe_mode == "reference":
                queries += e  # in place: on the first layer this is point_embedding too
            else:
                queries = queries + e
                if pe_mode == "every":
                    point_embedding = point_embedding + e
        queries, keys = _block(layer, queries, keys, point_embedding, kpe, g, "t2i" if g is not None else None)
    q = queries + point_embedding
    if e is not None:
        q = q + e
    k = keys + kpe
    queries = tr.norm_final_attn(queries + _attn(tr.final_attn_token_to_image, q, k, keys, g if guide_final else None))
    return queries, keys


def test_final_attention_is_not_guided(decoder, inputs):
    tokens, keys, kpe = _block_inputs(decoder, inputs)
    feats_like = keys.permute(0, 2, 1).reshape(1, 256, 64, 64)
    pe_like = kpe.permute(0, 2, 1).reshape(1, 256, 64, 64)
    g = _g().reshape(1, 1, 1, -1)
    with torch.no_grad():
        ours = two_way_forward(decoder.transformer, feats_like, pe_like, tokens, g)
        expected = _transformer(decoder.transformer, keys, kpe, tokens, g)
        guided_final = _transformer(decoder.transformer, keys, kpe, tokens, g, guide_final=True)
    torch.testing.assert_close(ours[0], expected[0], rtol=0, atol=1e-5)
    assert not torch.allclose(ours[0], guided_final[0], atol=1e-4)


def test_target_embedding_matches_reference_in_place_quirk(decoder, inputs):
    tokens, keys, kpe = _block_inputs(decoder, inputs)
    feats_like = keys.permute(0, 2, 1).reshape(1, 256, 64, 64)
    pe_like = kpe.permute(0, 2, 1).reshape(1, 256, 64, 64)
    e = _e().reshape(1, 1, -1)
    with torch.no_grad():
        ours = two_way_forward(decoder.transformer, feats_like, pe_like, tokens, None, e)
        reference = _transformer(decoder.transformer, keys, kpe, tokens, None, e)
        pe_without_e = _transformer(decoder.transformer, keys, kpe, tokens, None, e, pe_mode="plain")
        pe_e_every_layer = _transformer(decoder.transformer, keys, kpe, tokens, None, e, pe_mode="every")
        no_e = two_way_forward(decoder.transformer, feats_like, pe_like, tokens)
    torch.testing.assert_close(ours[0], reference[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours[1], reference[1], rtol=0, atol=1e-5)
    # The positional encoding carries e exactly once: neither zero times nor once per layer.
    assert not torch.allclose(ours[0], pe_without_e[0], atol=1e-4)
    assert not torch.allclose(ours[0], pe_e_every_layer[0], atol=1e-4)
    assert not torch.allclose(ours[0], no_e[0], atol=1e-3)  # e changes the queries
    assert torch.equal(tokens, _block_inputs(decoder, inputs)[0])  # and never the caller's tensors


def test_both_hooks_through_decode(decoder, inputs):
    feats, pe, prompts = inputs
    sparse, dense = prompts["points"]
    with torch.no_grad():
        plain = decode(decoder, feats, pe, sparse, dense, False)
        hooked = decode(decoder, feats, pe, sparse, dense, False, guidance=_g(), target_embedding=_e())
        again = decode(decoder, feats, pe, sparse, dense, False, guidance=_g(), target_embedding=_e())
        after = decoder(image_embeddings=feats, image_pe=pe, sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense, multimask_output=False)
    assert hooked[0].shape == (1, 1, 256, 256) and hooked[1].shape == (1, 1)
    assert not torch.allclose(plain[0], hooked[0], atol=1e-3)
    assert torch.equal(hooked[0], again[0])
    assert torch.equal(after[0], plain[0])  # nothing patched: the stock decoder is untouched


def test_prompt_equals_loose_arguments_and_guided_predict_is_thread_safe(tiny_engine):
    rng = np.random.default_rng(0)
    emb = Embedding(rng.standard_normal((256, 64, 64)).astype(np.float32), (300, 400), (768, 1024), "k", "tiny-test")
    coords, labels = np.array([[120.0, 80.0], [300.0, 250.0]]), np.array([1, 0])
    stock = tiny_engine.predict(emb, coords, labels, multimask_output=True)
    # One Prompt value (as the canvas sends) gives what SAM's loose arguments give.
    prompt = Prompt(points=(Point(120.0, 80.0, 1), Point(300.0, 250.0, 0)))
    ours = tiny_engine.predict(emb, prompt, multimask_output=True)
    np.testing.assert_array_equal(ours.low_res_logits, stock.low_res_logits)
    np.testing.assert_array_equal(ours.iou_predictions, stock.iou_predictions)

    g = _g().numpy()
    e = _e().numpy()
    want = tiny_engine.predict(emb, coords, labels, guidance=g, target_embedding=e).low_res_logits
    out: dict[str, np.ndarray] = {}

    def worker(kind: str) -> None:
        for _ in range(2):
            if kind == "hooked":
                out[kind] = tiny_engine.predict(emb, coords, labels, guidance=g, target_embedding=e).low_res_logits
            else:
                out[kind] = tiny_engine.predict(emb, coords, labels, multimask_output=False).low_res_logits

    threads = [threading.Thread(target=worker, args=(k,)) for k in ("hooked", "stock")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(out["hooked"], want)
    np.testing.assert_array_equal(out["stock"], stock_single := tiny_engine.predict(
        emb, coords, labels, multimask_output=False).low_res_logits)
    assert not np.allclose(want, stock_single, atol=1e-3)
