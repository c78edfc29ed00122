"""PerSAM-F: fit the three mask weights on the reference(s), SAM frozen.

Section 5 of /work/shared/docs/persam-algorithm.md: the reference's own
positive point gives three candidate logit maps M1..M3; the weights
w = (1 - a - b, a, b) start at 1/3 and are fitted with AdamW (lr 1e-3, eps
1e-4, weight decay 0.01, cosine annealing over 1000 steps) on Dice + sigmoid
focal loss against the reference mask.

Two fits share that optimiser:

* :func:`fit_weights` (``exact``): the loss at the reference's full size,
  every one of the 1000 steps. Its cost grows with the reference's pixels
  (about 30-85 ms a step at 1.6 MP on a 2-core CPU).
* :func:`fit_weights_fast` (the default): the loss on a small frame (long
  side :data:`FAST_LONG_SIDE`, 0.26 MP whatever the photo) where each pixel
  stands for the full-size pixels it covers, and an early stop once the
  weights settle. See its
  docstring for why the two agree.

The candidates do not depend on the weights, so the decoder runs once per
reference, and the loss gradient is computed in closed form.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from persam_studio.core.errors import Cancelled
from persam_studio.core.geometry import sam_input_size, upscale_logits
from persam_studio.core.personalize.prior import extremes, similarity
from persam_studio.core.personalize.target import Target
from persam_studio.core.segment.engine import Engine
from persam_studio.core.types import Embedding

ALPHA = 0.25  # sigmoid focal loss
GAMMA = 2.0
LR = 1e-3  # AdamW (default weight decay 0.01, as the reference)
EPS = 1e-4
STEPS = 1000

#: Long side of the frame the fast fit computes its loss on (see fit_weights_fast).
#: Measured on PerSeg's cat_00 (random SAM, decoder scaled, max |w - w_exact|):
#: 128 px 0.12, 256 px 0.042, 512 px 0.0074. The decoder's native 256 x 256
#: grid is not enough: its logits vary within a cell and the loss is not
#: linear in them, so the loss needs them sampled between the grid points.
FAST_LONG_SIDE = 512
#: The fast fit stops when no weight moved more than STOP_TOL over the last STOP_WINDOW steps.
STOP_WINDOW = 50
STOP_TOL = 1e-3


def dice_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Dice loss of sigmoid(logits) against a 0/1 target, both (1, N), +1 smoothed."""
    p = logits.sigmoid().flatten(1)
    numerator = 2 * (p * gt).sum(-1)
    denominator = p.sum(-1) + gt.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum()


def focal_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss (alpha 0.25, gamma 2), mean over pixels; (1, N) inputs."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    p_t = prob * gt + (1 - prob) * (1 - gt)
    loss = ce * ((1 - p_t) ** GAMMA)
    alpha_t = ALPHA * gt + (1 - ALPHA) * (1 - gt)
    return (alpha_t * loss).mean(1).sum()


def _weights(p: torch.Tensor) -> torch.Tensor:
    """(3, 1) mask weights (1 - a - b, a, b) from the (2, 1) parameter (a, b)."""
    return torch.cat((1 - p.sum(0).unsqueeze(0), p), dim=0)


def _prior_point(engine: Engine, embedding: Embedding, target: Target) -> np.ndarray:
    """float (1, 2) XY of the target's positive point on its own reference, original pixels."""
    pos, _ = extremes(similarity(engine, embedding, target))
    return np.array([pos], dtype=np.float64)


def _candidate_maps(
    engine: Engine, embedding: Embedding, point: np.ndarray, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """The decoder's three candidates for ``point``: float32 (3, height * width).

    ``size`` (height, width) defaults to the original size; any other size
    goes through the same post-processing (1024 frame, crop, bilinear).
    """
    res = engine.predict(embedding, point, np.array([1]), multimask_output=True)
    low = torch.from_numpy(res.low_res_logits)[None]
    with torch.inference_mode():
        maps = upscale_logits(low, embedding.input_size, size or embedding.original_size)[0]
    return maps.reshape(3, -1).clone()


WEIGHT_DECAY = 0.01  # torch.optim.AdamW's default, which the reference code keeps
BETAS = (0.9, 0.999)


def _optimise(
    grad: Callable[[np.ndarray], np.ndarray],
    steps: int,
    progress: Callable[[int, int], None] | None,
    should_cancel: Callable[[], bool] | None,
    stop: tuple[int, float] | None = None,
) -> tuple[np.ndarray, int]:
    """The reference's optimiser: AdamW (lr 1e-3, eps 1e-4, weight decay
    0.01) on (a, b), cosine annealing of the learning rate over ``steps``.

    Written out on two float64 numbers: ``torch.optim.AdamW`` plus its
    scheduler cost about 1 ms a step on a busy CPU, as much as a fast-fit
    gradient; the same update in plain Python costs microseconds (the test
    checks it follows torch's trajectory).

    Args:
        grad: float64 (2,) (a, b) -> float64 (2,) d loss / d (a, b).
        stop: ``(window, tol)`` ends the loop once |a| + |b| moved less than
            ``tol`` over the last ``window`` steps. The schedule is always
            the one of ``steps`` steps, so an early stop cuts the same
            trajectory.

    Returns:
        (float32 (3,) weights (1 - a - b, a, b), number of steps run).
    """
    (b1, b2), wd = BETAS, WEIGHT_DECAY
    ab = np.full(2, 1.0 / 3.0)
    m, v = np.zeros(2), np.zeros(2)
    history: deque[np.ndarray] = deque([ab.copy()], maxlen=(stop[0] + 1) if stop else 1)
    step = 0
    while step < steps:
        if should_cancel is not None and step % 25 == 0 and should_cancel():
            raise Cancelled()
        lr = LR * (1.0 + math.cos(math.pi * step / steps)) / 2.0
        g = np.asarray(grad(ab), dtype=np.float64)
        step += 1
        ab *= 1.0 - lr * wd
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        denom = np.sqrt(v) / math.sqrt(1.0 - b2**step) + EPS
        ab -= (lr / (1.0 - b1**step)) * m / denom
        if progress is not None and (step % 50 == 1 or step == steps):
            progress(step, steps)
        if stop is not None:
            history.append(ab.copy())
            if len(history) == history.maxlen and float(np.abs(history[-1] - history[0]).sum()) < stop[1]:
                break
    if progress is not None and step < steps:
        progress(steps, steps)  # stopped early: the fit is complete
    return np.array([1.0 - ab.sum(), ab[0], ab[1]], dtype=np.float32), step


class _FusedLoss:
    """Gradient of mean-over-references (Dice + focal) w.r.t. the 3 weights, no autograd.

    The candidate maps do not depend on the weights, so they are split once
    into object and background pixels; each step then costs a few passes
    over the pixels, block by block so the temporaries stay in cache. Per
    pixel, with z = w . M, p = sigmoid(z), q = 1 - p and N pixels:
    d(Dice)/dz = p q (A - 2tB) / B^2 with A = 2 sum(p t) + 1,
    B = sum(p) + sum(t) + 1; d(focal)/dz = -alpha q^2 (2 p ce + q) / N on the
    object (ce = softplus(-z)) and (1 - alpha) p^2 (2 q ce + p) / N on the
    background (ce = softplus(z)). Sums accumulate in float64.

    Weighted pixels (:meth:`soft`): a pixel of weight u counts as u pixels
    in every sum; a pixel partly on the object is in both groups, with
    weights u c and u (1 - c) for its object fraction c.
    """

    BLOCK = 1 << 15  # pixels per block: torch's grain size, the largest that stays single-threaded

    def __init__(self, maps: Sequence[torch.Tensor], gts: Sequence[np.ndarray]) -> None:
        """``maps`` float32 (3, N) per reference; ``gts`` bool (N,) or (H, W) with H * W = N."""
        self.refs = []
        for m, gt in zip(maps, gts):
            fg = torch.from_numpy(np.ascontiguousarray(gt.reshape(-1)))
            groups = []
            for sel, is_fg in ((fg, True), (~fg, False)):
                mt = m[:, sel].t().contiguous()  # (n, 3): one row per pixel
                groups.append((mt, torch.empty(mt.shape[0]), torch.empty(mt.shape[0]), is_fg, None))
            self.refs.append((groups, float(m.shape[1]), float(fg.sum())))

    @classmethod
    def soft(cls, maps: Sequence[torch.Tensor], coverages: Sequence[np.ndarray], areas: Sequence[float]) -> _FusedLoss:
        """The loss of full-size references seen on a coarser frame.

        Args:
            maps: float32 (3, n) candidate logits on the frame, per reference.
            coverages: float32 (n,) fraction of each frame pixel on the object.
            areas: full-size pixels per frame pixel, per reference.
        """
        self = cls.__new__(cls)
        self.refs = []
        for m, cov, area in zip(maps, coverages, areas):
            c = torch.from_numpy(np.ascontiguousarray(cov.reshape(-1), dtype=np.float32))
            groups = []
            for share, is_fg in ((c, True), (1.0 - c, False)):
                sel = share > 0
                mt = m[:, sel].t().contiguous()
                u = (share[sel] * area).contiguous()
                groups.append((mt, torch.empty(mt.shape[0]), torch.empty(mt.shape[0]), is_fg, u))
            self.refs.append((groups, float(m.shape[1]) * area, float(c.double().sum()) * area))
        return self

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        """d loss / d w for weights ``w`` float32 (3,): float64 (3,).

        Every operation works on one block: below torch's parallel grain
        size, so no thread pool wakes up (on a busy laptop a parallel region
        waits for a descheduled thread, which made whole-array steps ~10x slower).
        """
        total = torch.zeros(3, dtype=torch.float64)
        step = self.BLOCK
        scratch = torch.empty(step)
        for groups, n, n_fg in self.refs:
            sums = []
            for mt, z_all, p_all, _, u in groups:
                acc = 0.0
                for s in range(0, z_all.shape[0], step):
                    z = torch.mv(mt[s : s + step], w, out=z_all[s : s + step])
                    p = torch.sigmoid(z, out=p_all[s : s + step])
                    if u is not None:
                        # Not torch.dot: BLAS wakes its thread pool even for a short vector.
                        p = torch.mul(p, u[s : s + step], out=scratch[: p.shape[0]])
                    acc += float(p.sum())
                sums.append(acc)
            a = 2.0 * sums[0] + 1.0
            b = sums[0] + sums[1] + n_fg + 1.0
            for mt, z_all, p_all, is_fg, u in groups:
                c = -ALPHA / n if is_fg else (1.0 - ALPHA) / n
                kappa = (a - 2.0 * b) / (b * b) if is_fg else a / (b * b)
                for s in range(0, z_all.shape[0], step):
                    z, p = z_all[s : s + step], p_all[s : s + step]
                    q = torch.rsub(p, 1.0)
                    x, y = (q, p) if is_fg else (p, q)
                    g = F.softplus(-z if is_fg else z)  # the cross-entropy
                    g.mul_(y).mul_(2.0).add_(x).mul_(x).mul_(c).add_(y, alpha=kappa).mul_(x)
                    if u is not None:
                        g.mul_(u[s : s + step])
                    total += (g @ mt[s : s + step]).double()
        return total / len(self.refs)


def _ab_grad(loss: _FusedLoss) -> Callable[[np.ndarray], np.ndarray]:
    """d loss / d (a, b) from d loss / d w, w = (1 - a - b, a, b)."""

    def grad(ab: np.ndarray) -> np.ndarray:
        w = torch.tensor([1.0 - ab.sum(), ab[0], ab[1]], dtype=torch.float32)
        g = loss.grad(w).numpy()
        return g[1:] - g[0]

    return grad


@dataclass(frozen=True)
class WeightFit:
    """The outcome of a PerSAM-F fit.

    Attributes:
        weights: float32 (3,) mask weights (1 - a - b, a, b).
        steps: optimiser steps run (the fast fit may stop before ``STEPS``).
        frames: (height, width) the loss was computed on, per reference.
        exact: True for the full-size fit of every step.
    """

    weights: np.ndarray
    steps: int
    frames: tuple[tuple[int, int], ...]
    exact: bool


def fast_frame(original_size: tuple[int, int], long_side: int = FAST_LONG_SIDE) -> tuple[int, int]:
    """(height, width) the fast fit uses for an (H, W) reference: long side
    ``long_side`` (SAM's rounding), or (H, W) itself when that is smaller."""
    if max(original_size) <= long_side:
        return tuple(original_size)
    return sam_input_size(original_size, long_side)


def fit_weights(
    engine: Engine,
    references: Sequence[tuple[Embedding, np.ndarray]],
    target: Target,
    *,
    steps: int = STEPS,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """PerSAM-F's mask weights at the references' full size (the exact fit).

    Same optimisation as :func:`fit_weights_reference` (AdamW lr 1e-3, eps
    1e-4, cosine annealing over ``steps``, Dice + focal at the original
    size), but the three candidate maps are computed once: they do not
    depend on the weights. The gradient is computed in closed form.

    Args:
        references: (embedding, bool (H, W) mask) pairs, masks at the
            embeddings' original sizes.
        target: gives ``t`` for each reference's positive point.

    Returns:
        float32 (3,) weights (1 - a - b, a, b).
    """
    maps = [_candidate_maps(engine, emb, _prior_point(engine, emb, target)) for emb, _ in references]
    loss = _FusedLoss(maps, [np.asarray(m, dtype=bool) for _, m in references])
    del maps  # the loss keeps its own pixel-major copy (3 x 4 bytes per reference pixel)
    return _optimise(_ab_grad(loss), steps, progress, should_cancel)[0]


def fit_weights_fast(
    engine: Engine,
    references: Sequence[tuple[Embedding, np.ndarray]],
    target: Target,
    *,
    steps: int = STEPS,
    long_side: int = FAST_LONG_SIDE,
    stop_window: int = STOP_WINDOW,
    stop_tol: float = STOP_TOL,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> WeightFit:
    """PerSAM-F's mask weights, fitted on a small frame with an early stop.

    Why it gives the exact fit's weights:

    * The loss is an integral over the image. Both the focal term (a mean
      over pixels) and Dice (ratios of sums; its +1 smoothing is negligible
      against object areas in pixels) change little when each full-size pixel
      is replaced by the frame pixel that covers it, *provided* the frame
      pixel keeps the exact object fraction c of its area (cv2 area
      interpolation of the mask) and counts as the ``area`` full-size pixels
      it covers. A pixel on the object's edge is then c parts object and
      1 - c parts background, which is what the full-size loss sums.
    * The candidate logits are 256 x 256 in the padded input frame, and at
      full size a bilinear interpolation of those: smooth at the scale of a
      frame pixel of :data:`FAST_LONG_SIDE` = 512 (half a decoder cell), so
      the loss is sampled finely enough where it is not linear in the logits
      (at the candidate masks' edges). Thresholding the mask instead of the
      area fraction would move the object's edge by up to half a frame
      pixel, a bias the soft target avoids. Coarser frames were measured
      to drift (see :data:`FAST_LONG_SIDE`).
    * Same optimiser and cosine schedule as the exact fit: the trajectory is
      the same, and AdamW normalises the gradient's scale away. Once the
      weights sit at the loss minimum they stop moving (Adam's momentum
      averages the alternating gradients out), and the remaining steps,
      at a decaying learning rate, keep them there; the fit stops when
      |a| + |b| moved less than ``stop_tol`` over ``stop_window`` steps.

    ``pytest -m slow tests/core/test_fit.py`` checks the agreement on the
    PerSeg examples: weights within 0.02; masks IoU >= 0.98 (0.985 and 0.988
    measured on two objects, short of the issue's 0.99; see docs/persam.md).

    Args:
        references: (embedding, bool (H, W) mask) pairs.
        target: gives ``t`` for each reference's positive point.
        steps: length of the cosine schedule, and the most steps run.
        long_side: long side of the loss frame (:func:`fast_frame`).
    """
    import cv2

    maps, coverages, areas, frames = [], [], [], []
    for emb, mask in references:
        frame = fast_frame(emb.original_size, long_side)
        maps.append(_candidate_maps(engine, emb, _prior_point(engine, emb, target), frame))
        # The object fraction of each frame pixel: INTER_AREA averages exactly
        # the full-size pixels the frame pixel covers.
        cov = cv2.resize(np.asarray(mask, dtype=np.float32), (frame[1], frame[0]), interpolation=cv2.INTER_AREA)
        coverages.append(np.clip(cov, 0.0, 1.0))
        areas.append(emb.original_size[0] * emb.original_size[1] / (frame[0] * frame[1]))
        frames.append(frame)
    loss = _FusedLoss.soft(maps, coverages, areas)
    weights, run = _optimise(_ab_grad(loss), steps, progress, should_cancel, stop=(stop_window, stop_tol))
    return WeightFit(weights, run, tuple(frames), exact=False)


def fit(
    engine: Engine,
    references: Sequence[tuple[Embedding, np.ndarray]],
    target: Target,
    *,
    exact: bool = False,
    steps: int = STEPS,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> WeightFit:
    """PerSAM-F's weights: the fast fit (default) or, with ``exact``, the full-size one."""
    if not exact:
        return fit_weights_fast(engine, references, target, steps=steps, progress=progress,
                                should_cancel=should_cancel)
    weights = fit_weights(engine, references, target, steps=steps, progress=progress, should_cancel=should_cancel)
    return WeightFit(weights, steps, tuple(emb.original_size for emb, _ in references), exact=True)


def fit_weights_reference(
    engine: Engine,
    references: Sequence[tuple[Embedding, np.ndarray]],
    target: Target,
    *,
    steps: int = STEPS,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """PerSAM-F's weights as the reference code fits them: decoder + autograd loss every step.

    Slow on purpose: the yardstick for :func:`fit_weights` in tests and the bench.
    """
    points = [_prior_point(engine, emb, target) for emb, _ in references]
    gts = [torch.from_numpy(np.asarray(m, dtype=bool).reshape(1, -1).astype(np.float32)) for _, m in references]

    def grad(ab: np.ndarray) -> np.ndarray:
        p = torch.tensor(ab, dtype=torch.float32).reshape(2, 1).requires_grad_()
        loss = 0.0
        for (emb, _), point, gt in zip(references, points, gts):
            maps = _candidate_maps(engine, emb, point)
            fused = (maps * _weights(p)).sum(0).unsqueeze(0)
            loss = loss + dice_loss(fused, gt) + focal_loss(fused, gt)
        (loss / len(references)).backward()
        return p.grad.reshape(2).double().numpy()

    return _optimise(grad, steps, progress, None)[0]
