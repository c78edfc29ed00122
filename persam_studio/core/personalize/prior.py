"""PerSAM's location prior: where the target's features match a test image.

Needs only the test image's embedding (section 2 of
/work/shared/docs/persam-algorithm.md). Coordinate frame of every map and
point here: pixels of the oriented image, x = column, y = row.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from persam_studio.core.geometry import upscale_logits
from persam_studio.core.personalize.target import Target
from persam_studio.core.segment.engine import Engine
from persam_studio.core.types import Embedding

GRID = 64  # embedding cells per side


def similarity(engine: Engine, embedding: Embedding, target: Target) -> torch.Tensor:
    """Cosine similarity of ``t`` to every cell, at the original size: float32 (H, W) tensor.

    64x64 map -> x4 bilinear (256x256) -> SAM's mask post-processing.
    """
    feats = engine.features(embedding)[0]  # (256, 64, 64)
    c, h, w = feats.shape
    with torch.inference_mode():
        feats = feats / feats.norm(dim=0, keepdim=True).clamp_min(1e-12)
        t = torch.as_tensor(target.target, dtype=torch.float32, device=feats.device)
        sim = (t[None] @ feats.reshape(c, h * w)).reshape(1, 1, h, w)
        sim = F.interpolate(sim, scale_factor=4, mode="bilinear", align_corners=False)
        sim = upscale_logits(sim, embedding.input_size, embedding.original_size)[0, 0]
    return sim.float().cpu()


def extremes(sim: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    """(x, y) of the arg-max and of the arg-min of a (H, W) map (first in row-major order on ties)."""
    w = sim.shape[1]
    hi = int(torch.argmax(sim))
    lo = int(torch.argmin(sim))
    return (hi % w, hi // w), (lo % w, lo // w)


def location_prior(
    engine: Engine, embedding: Embedding, target: Target
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """PerSAM's location prior on a test image.

    Returns:
        S float32 (H, W) cosine similarity at the original size, the
        positive point (x, y) = arg-max of S and the negative point (x, y) =
        arg-min of S, in original pixels.
    """
    sim = similarity(engine, embedding, target)
    pos, neg = extremes(sim)
    return sim.numpy(), pos, neg


def guidance_map(sim: torch.Tensor) -> np.ndarray:
    """Target-guided attention map ``g``: float32 (4096,), row-major 64x64 cells.

    S standardised (unbiased std), bilinear to 64x64 (no antialias), sigmoid.
    """
    with torch.inference_mode():
        s = (sim - sim.mean()) / torch.std(sim)
        s = F.interpolate(s[None, None], size=(GRID, GRID), mode="bilinear", align_corners=False)
        return torch.sigmoid(s).reshape(-1).numpy().astype(np.float32)
