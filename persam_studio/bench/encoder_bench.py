"""Bench section "encoder": image-encoder seconds, stock vs fast ViT path vs MobileSAM.

One photo, preprocessed as the engine does (1x3x1024x1024), goes through:

* the stock segment-anything ``ImageEncoderViT.forward`` of the benchmarked
  model (``ctx.sam``: random vit_b or the user's ViT checkpoint) - the
  baseline;
* the same encoder instance with :func:`~persam_studio.core.models.fast_vit.accelerate_encoder`
  (same weights), interleaved with the stock runs so that background load
  hits both alike;
* MobileSAM's TinyViT (``vit_t``, random weights: compute does not depend on
  them).

Beside the times: the matmul-bound limit (the encoder's GFLOP divided by
this machine's float32 rate on a 4096x4096 product, measured in the same
run), the embedding difference fast vs stock, and each variant's peak memory
during one encoding (Linux: the process's resident high-water mark, reset
before each run).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from persam_studio.bench import BenchContext, Row

SECTION = "encoder"


def run(ctx: BenchContext) -> list[Row]:
    from segment_anything.modeling import ImageEncoderViT

    from persam_studio.core.models import fast_vit
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.models.sam_build import random_sam

    sam, name = ctx.sam, ctx.model_key.split("-")[0]
    if not isinstance(sam.image_encoder, ImageEncoderViT):  # e.g. a vit_t checkpoint: compare with vit_b
        sam, name = random_sam("vit_b", seed=0), "vit_b"
    encoder = sam.image_encoder
    x, _ = Engine(sam, "bench").preprocess(ctx.photo_pixels)
    was_fast = fast_vit.is_accelerated(encoder)
    rows: list[Row] = []
    threads = torch.get_num_threads()
    rows.append(Row(SECTION, "torch threads (intra-op)", threads, "", note=f"{os.cpu_count()} logical CPUs"))

    def encode(fast: bool) -> tuple[float, float | None, torch.Tensor]:
        (fast_vit.accelerate_encoder if fast else fast_vit.restore_encoder)(encoder)
        with torch.inference_mode():
            return _measured(lambda: encoder(x))

    try:
        ctx.log(f"[bench] encoder: {name} fast path (warm-up), then stock/fast interleaved, 2 each")
        _, _, fast_out = encode(True)
        runs: dict[bool, list[tuple[float, float | None]]] = {False: [], True: []}
        for _ in range(2):
            for fast in (False, True):
                seconds, peak, out = encode(fast)
                runs[fast].append((seconds, peak))
                ctx.log(f"[bench] encoder: {name} {'fast' if fast else 'stock'} {seconds:.2f} s")
                if not fast:
                    stock_out = out
    finally:
        (fast_vit.accelerate_encoder if was_fast else fast_vit.restore_encoder)(encoder)
    stock_s = min(s for s, _ in runs[False])
    fast_s = min(s for s, _ in runs[True])

    gflop = vit_gflop(encoder)
    rate = matmul_gflops()
    limit = gflop / rate
    rows.append(Row(SECTION, f"{name} encoder, stock segment-anything forward", stock_s, "s",
                    note=f"min of 2; {gflop:.0f} GFLOP"))
    rows.append(Row(SECTION, f"{name} encoder, fast path (fast_vit)", fast_s, "s",
                    baseline=f"stock {name} forward", baseline_value=stock_s, ratio=stock_s / fast_s,
                    target=">= 2x", note=f"min of 2; matmul-bound limit {limit:.2f} s"))
    rows.append(Row(SECTION, f"{name} matmul-bound limit ({gflop:.0f} GFLOP at {rate:.0f} GFLOP/s)", limit, "s",
                    note="GFLOP / rate of a 4096x4096 float32 matmul, this run"))
    rows.append(Row(SECTION, "float32 matmul rate (4096x4096, best of 3)", rate, "GFLOP/s"))
    err = float((fast_out - stock_out).abs().max() / stock_out.abs().max())
    rows.append(Row(SECTION, "fast vs stock embedding: max |diff| / max |stock|", err, "", target="<= 0.001"))
    peaks = {fast: max((p for _, p in runs[fast] if p is not None), default=None) for fast in runs}
    if peaks[False] is not None and peaks[True] is not None:
        rows.append(Row(SECTION, f"{name} encoder peak memory above the model, fast path", peaks[True], "MiB",
                        baseline="stock forward", baseline_value=peaks[False], ratio=peaks[False] / peaks[True],
                        note="resident high-water mark during one encoding; ratio = times less"))

    ctx.log("[bench] encoder: vit_t (MobileSAM TinyViT), warm-up + 3")
    tiny = random_sam("vit_t", seed=0).image_encoder
    with torch.inference_mode():
        _measured(lambda: tiny(x))
        tiny_runs = [_measured(lambda: tiny(x))[:2] for _ in range(3)]
    tiny_s = min(s for s, _ in tiny_runs)
    tiny_gflop = tinyvit_gflop(tiny, x)
    rows.append(Row(SECTION, "vit_t (MobileSAM) encoder", tiny_s, "s",
                    baseline=f"stock {name} forward", baseline_value=stock_s, ratio=stock_s / tiny_s,
                    target=">= 8x", note=f"min of 3; {tiny_gflop:.1f} GFLOP, limit {tiny_gflop / rate:.2f} s"))
    rows.append(Row(SECTION, "vit_t (MobileSAM) encoder vs the fast vit_b path", tiny_s, "s",
                    baseline=f"fast {name} forward", baseline_value=fast_s, ratio=fast_s / tiny_s))
    tiny_peak = max((p for _, p in tiny_runs if p is not None), default=None)
    if tiny_peak is not None and peaks[False] is not None:
        rows.append(Row(SECTION, "vit_t encoder peak memory above the model", tiny_peak, "MiB",
                        baseline=f"stock {name} forward", baseline_value=peaks[False],
                        ratio=peaks[False] / tiny_peak, note="ratio = times less"))
    return rows


# -- measurements -----------------------------------------------------------------


def _measured(fn) -> tuple[float, float | None, torch.Tensor]:
    """(seconds, peak MiB above the starting resident size or None, result) of one call."""
    start = _reset_peak_rss()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = _status_mib("VmHWM") if start is not None else None
    return seconds, (peak - start if peak is not None else None), out


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> float | None:
    """Reset the resident high-water mark to the current size (Linux >= 4.0); that size in MiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_mib("VmRSS")


def matmul_gflops(n: int = 4096, repeats: int = 3) -> float:
    """This machine's float32 matmul rate: best of ``repeats`` n x n products, GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up (thread pool, page faults)
    best = min(_measured(lambda: a @ b)[0] for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def vit_gflop(encoder) -> float:
    """GFLOP of one stock ``ImageEncoderViT`` forward at its ``img_size`` (multiply-add = 2).

    Counted as the stock code computes: window blocks project padded windows,
    attention and the decomposed rel-pos einsums per window and head.
    Equals ``torch.utils.flop_counter.FlopCounterMode`` on the stock forward.
    """
    patch = encoder.patch_embed.proj
    side = encoder.img_size // patch.stride[0]
    tokens = side * side
    c = patch.out_channels
    flops = 2 * tokens * c * patch.in_channels * patch.kernel_size[0] * patch.kernel_size[1]
    for blk in encoder.blocks:
        ws = blk.window_size
        heads = blk.attn.num_heads
        hd = c // heads
        if ws > 0:
            padded = -(-side // ws) * ws
            windows, n, grid = (padded // ws) ** 2, ws * ws, ws
        else:
            windows, n, grid, padded = 1, tokens, side, side
        t_attn = windows * n  # tokens through qkv/proj (padding included)
        flops += 2 * t_attn * c * 3 * c + 2 * t_attn * c * c
        flops += 2 * 2 * windows * heads * n * n * hd  # q k^T and attn v
        if blk.attn.use_rel_pos:
            flops += 2 * 2 * windows * heads * n * grid * hd  # rel_h and rel_w einsums
        hidden = blk.mlp.lin1.out_features
        flops += 2 * 2 * tokens * c * hidden
    neck0, neck2 = encoder.neck[0], encoder.neck[2]
    flops += 2 * tokens * neck0.out_channels * neck0.in_channels
    flops += 2 * tokens * neck2.out_channels * neck2.in_channels * neck2.kernel_size[0] * neck2.kernel_size[1]
    return flops / 1e9


def tinyvit_gflop(encoder, x: torch.Tensor) -> float:
    """GFLOP of one forward, counted by FlopCounterMode (attention kernels included)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def sdpa(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    # The CPU fused-attention op has no formula in torch's counter; give it the generic one.
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: sdpa}
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        encoder(x)
    return counter.get_total_flops() / 1e9
