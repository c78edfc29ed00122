"""MobileSAM's TinyViT encoder: released checkpoint layout, strict loading, shapes, numerics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from persam_studio.core import models
from persam_studio.core.models import sam_build
from persam_studio.core.segment.engine import Engine
from persam_studio.core.models.tinyvit import TinyViT, TinyViTBlock
from tests.conftest import SHARED

KEYS_TSV = SHARED / "docs" / "mobilesam-image-encoder-keys.tsv"


def _released_shapes() -> dict[str, tuple[int, ...]]:
    """image_encoder.* key -> shape, from the list of the released mobile_sam.pt."""
    if not KEYS_TSV.exists():
        pytest.skip(f"shared docs not available: {KEYS_TSV}")
    shapes = {}
    for line in KEYS_TSV.read_text().splitlines():
        key, shape = line.split("\t")
        dims = shape.strip().strip("[]").strip()
        shapes[key] = tuple(int(d) for d in dims.split(",")) if dims else ()
    return shapes


def _random_like(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly these keys and shapes and plausible random values."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith(("bn.weight", "norm.weight", "neck.1.weight", "neck.3.weight", "norm_head.weight")):
            sd[key] = 1.0 + 0.2 * torch.randn(shape, generator=gen)
        else:
            fan_in = max(1, int(np.prod(shape[1:]))) if len(shape) > 1 else 25
            sd[key] = torch.randn(shape, generator=gen) / fan_in**0.5
    return sd


def test_state_dict_has_the_released_keys_and_shapes():
    shapes = _released_shapes()
    assert len(shapes) == 302
    ours = {f"image_encoder.{k}": tuple(v.shape) for k, v in TinyViT().state_dict().items()}
    assert ours == shapes


def test_encoder_holds_the_released_number_of_values():
    sd = TinyViT().state_dict()
    assert len(sd) == 302
    assert sum(v.numel() for v in sd.values()) == 6_075_415  # parameters and BN buffers
    classifier = sum(v.numel() for k, v in sd.items() if k.startswith(("head.", "norm_head.")))
    params = sum(p.numel() for p in TinyViT().parameters())
    assert 5.7e6 < params - classifier < 5.8e6  # "about 5.78 M" without the unused classifier


def test_released_layout_loads_strictly_into_encoder_and_sam():
    shapes = _released_shapes()
    sd = _random_like(shapes)
    enc = TinyViT()
    enc.load_state_dict({k.removeprefix("image_encoder."): v for k, v in sd.items()}, strict=True)
    sam = sam_build.build_sam("vit_t")
    rest = {k: v for k, v in sam.state_dict().items() if not k.startswith("image_encoder.")}
    sam.load_state_dict({**rest, **sd}, strict=True)
    assert isinstance(sam.image_encoder, TinyViT)
    assert torch.equal(sam.image_encoder.layers[2].blocks[3].attn.attention_biases,
                       sd["image_encoder.layers.2.blocks.3.attn.attention_biases"])


def test_load_model_reads_a_mobile_sam_checkpoint(tmp_path):
    shapes = _released_shapes()
    encoder_sd = _random_like(shapes, seed=1)
    full = {**{k: v for k, v in sam_build.build_sam("vit_t").state_dict().items()
               if not k.startswith("image_encoder.")}, **encoder_sd}
    path = tmp_path / "mobile_sam.pt"
    torch.save(full, path)
    loaded = models.load_model(path, device="cpu")
    assert loaded.model_type == "vit_t"
    reference = TinyViT().eval()
    reference.load_state_dict({k.removeprefix("image_encoder."): v for k, v in encoder_sd.items()})
    x = torch.randn(1, 3, 256, 256)  # any multiple of 64 works; small keeps the test fast
    with torch.inference_mode():
        got = loaded.sam.image_encoder(x)
    with torch.enable_grad():  # grad mode: the plain, unfolded path
        want = reference(x).detach()
    assert got.shape == (1, 256, 16, 16)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-4


def test_vit_t_sam_encodes_and_predicts_through_the_engine(rgb_image):
    sam = sam_build.random_sam("vit_t", seed=0)
    engine = Engine(sam, model_key="vit_t-test")
    emb = engine.encode(rgb_image)
    assert emb.features.shape == (256, 64, 64) and emb.features.dtype == np.float32
    assert np.isfinite(emb.features).all() and emb.features.std() > 0
    result = engine.predict(emb, point_coords=np.array([[250.0, 140.0]]), point_labels=np.array([1]))
    assert len(result) == 3
    assert result.mask().shape == rgb_image.shape[:2]
    with torch.inference_mode():
        assert sam.image_encoder(torch.randn(2, 3, 256, 256)).shape == (2, 256, 16, 16)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    sd = _random_like({k: tuple(v.shape) for k, v in module.state_dict().items()}, seed)
    module.load_state_dict(sd)


def test_folded_batchnorm_equals_the_plain_path_and_follows_new_weights():
    enc = TinyViT().eval()
    _randomise(enc, 2)
    x = torch.randn(1, 3, 256, 256)

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            fast = enc(x)  # conv+BN folded
        with torch.enable_grad():
            plain = enc(x).detach()  # separate conv and BN
        return fast, plain

    fast, plain = both()
    assert float((fast - plain).abs().max() / plain.abs().max()) < 1e-4
    _randomise(enc, 3)  # in-place load: the folded weights must be recomputed
    fast2, plain2 = both()
    assert not torch.allclose(plain2, plain, atol=1e-3)
    assert float((fast2 - plain2).abs().max() / plain2.abs().max()) < 1e-4
    sd = _random_like({k: tuple(v.shape) for k, v in enc.state_dict().items()}, 4)
    enc.load_state_dict(sd, assign=True)  # new tensors
    fast3, plain3 = both()
    assert float((fast3 - plain3).abs().max() / plain3.abs().max()) < 1e-4


def _literal_block(blk: TinyViTBlock, x: torch.Tensor) -> torch.Tensor:
    """The published TinyViT block, step by step: (B, H, W, C) -> (B, H, W, C).

    Zero-pad to whole windows, LayerNorm + attention per window with a learned
    bias per (|dy|, |dx|) offset, numbered in order of first appearance over
    row-major token pairs; crop; residual; depthwise conv + BN; MLP residual.
    """
    B, H, W, C = x.shape
    ws, attn = blk.window, blk.attn
    heads, hd = attn.heads, attn.head_dim
    ph, pw = -H % ws, -W % ws
    xp = F.pad(x, (0, 0, 0, pw, 0, ph))
    nH, nW = (H + ph) // ws, (W + pw) // ws
    win = xp.view(B, nH, ws, nW, ws, C).transpose(2, 3).reshape(-1, ws * ws, C)
    qkv = attn.qkv(attn.norm(win)).view(win.shape[0], ws * ws, heads, 3 * hd)
    q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split(hd, dim=3))
    points = list(itertools.product(range(ws), range(ws)))
    offsets: dict[tuple[int, int], int] = {}
    idx = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idx.append(offsets.setdefault(off, len(offsets)))
    bias = attn.attention_biases[:, torch.tensor(idx).view(ws * ws, ws * ws)]
    a = ((q @ k.transpose(-2, -1)) * hd**-0.5 + bias).softmax(-1)
    out = attn.proj((a @ v).transpose(1, 2).reshape(-1, ws * ws, C))
    out = out.view(B, nH, nW, ws, ws, C).transpose(2, 3).reshape(B, H + ph, W + pw, C)[:, :H, :W]
    x = x + out
    lc = blk.local_conv
    x = lc.bn(lc.c(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
    m = blk.mlp
    return x + m.fc2(F.gelu(m.fc1(m.norm(x))))


@pytest.mark.parametrize("size", [(14, 14), (10, 9), (7, 7)])
def test_block_equals_the_published_block_with_window_padding(size):
    torch.manual_seed(0)
    blk = TinyViTBlock(dim=40, heads=5, window=7, mlp_ratio=4.0, local_conv=3).eval()
    _randomise(blk, 5)
    with torch.no_grad():
        blk.attn.attention_biases.mul_(20)  # make a misplaced bias visible
    x = torch.randn(2, *size, 40)
    with torch.no_grad():
        want = _literal_block(blk, x)
    with torch.inference_mode():
        got = blk(x.contiguous())
    assert float((got - want).abs().max() / want.abs().max()) < 1e-5
