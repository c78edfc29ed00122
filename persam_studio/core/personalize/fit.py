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
* :func:`fit_weights_fast` (the default): the same 1000 steps, with the
  loss on a smaller frame (long side :data:`FAST_LONG_SIDE`, 0.6 MP
  whatever the photo) where each pixel stands for the full-size pixels it
  covers, and its gradient from a second-order model of the loss
  re-centred every 0.02 of weight movement: about 20 passes over the
  pixels instead of 1000. See its docstring for why the two agree.

The candidates do not depend on the weights, so the decoder runs once per
reference; the loss's gradient and Hessian are computed in closed form.
"""

from __future__ import annotations

import math
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
#: Measured on the 9 PerSeg examples, each as the reference (random SAM,
#: decoder scaled), worst max |w - w_exact| and worst mask IoU on the
#: object's other photos: 512 px 0.017 / 0.972, 768 px 0.0059 / 0.989,
#: 832 px 0.0055 / 0.987, 896 px 0.0014 / 0.998, 960 px 0.0044 / 0.996,
#: 1152 px 0.0009 / 0.998; the 1024-px input frame itself was no better than
#: 768 (0.0055 / 0.982 on cat_01). The error is not monotone in the size:
#: it comes from where the frame's pixels sample the decoder's 256 x 256
#: logit grid (the loss is not linear in the logits, which vary within a
#: cell). 768 and 1024 put a whole number of frame pixels (3, 4) in each
#: cell of a 1024 input frame, so every cell is sampled at the same places;
#: 896 puts 3.5. 256 px drifted by 0.04.
FAST_LONG_SIDE = 896
#: How far (in a, b) the fast fit trusts its second-order loss model (see
#: _TaylorGrad): ~21 evaluations a fit; the weights then differ from a
#: gradient at every step by 1e-5 to 2.4e-4 (0.01: twice the evaluations, 4e-6).
TAYLOR_RADIUS = 0.02


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
) -> tuple[np.ndarray, int]:
    """The reference's optimiser: AdamW (lr 1e-3, eps 1e-4, weight decay
    0.01) on (a, b), cosine annealing of the learning rate over ``steps``.

    Written out on two float64 numbers: ``torch.optim.AdamW`` plus its
    scheduler cost about 1 ms a step on a busy CPU, as much as a fast-fit
    gradient; the same update in plain Python costs microseconds (the test
    checks it follows torch's trajectory).

    Args:
        grad: float64 (2,) (a, b) -> float64 (2,) d loss / d (a, b).

    Returns:
        (float32 (3,) weights (1 - a - b, a, b), number of steps run).
    """
    (b1, b2), wd = BETAS, WEIGHT_DECAY
    ab = np.full(2, 1.0 / 3.0)
    m, v = np.zeros(2), np.zeros(2)
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

    def grad_hess(self, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and Hessian of the loss w.r.t. the weights ``w`` float32 (3,).

        Returns float64 (3,) and (3, 3). One pass over the pixels; with
        z = w . M, p = sigmoid(z), q = 1 - p, ce the pixel's cross-entropy
        and N pixels:

        * Dice = 1 - A / B (A = 2 S_obj + 1, B = S_all + sum(t) + 1, S the
          sums of p) from its sums' derivatives: grad S = sum p q M,
          Hess S = sum p q (q - p) M M^T.
        * focal, per pixel, with x the probability of the wrong class and
          y = 1 - x: f' = -+c x^2 (2 y ce + x), f'' = c y x^2 (5 x - 2 ce (x - 2 y)),
          c = alpha / N on the object (sign -), (1 - alpha) / N on the background.

        ``tests/core/test_fit.py`` checks both against torch's autograd.
        """
        g_total, h_total = np.zeros(3), np.zeros((3, 3))
        step = self.BLOCK
        for groups, n, n_fg in self.refs:
            sums, s_grad, s_hess = [], [], []
            g = np.zeros(3)
            h = np.zeros((3, 3))
            for mt, z_all, p_all, is_fg, u in groups:
                feats = self._features(mt)
                total_p = 0.0
                # rows: dS/dz, d2S/dz2, |f'|, f''; columns: M (3), then M M^T (6)
                coef = torch.zeros(4, 9, dtype=torch.float64)
                for s in range(0, mt.shape[0], step):
                    z = torch.mv(mt[s : s + step], w, out=z_all[s : s + step])
                    p = torch.sigmoid(z, out=p_all[s : s + step])
                    q = torch.rsub(p, 1.0)
                    x, y = (q, p) if is_fg else (p, q)
                    ce = F.softplus(-z if is_fg else z)
                    # Row by row: a (4, block) array would exceed torch's grain size
                    # and wake its thread pool (see grad).
                    x2 = x * x
                    rows = (
                        p * q,
                        p * q * (q - p),
                        (ce * y * 2.0 + x) * x2,
                        (x * 5.0 - ce * 2.0 * (x - 2.0 * y)) * y * x2,
                    )
                    f = feats[s : s + step]
                    if u is not None:
                        uu = u[s : s + step]
                        rows = tuple(r.mul_(uu) for r in rows)
                        p = p * uu
                    total_p += float(p.sum())
                    for k, r in enumerate(rows):
                        coef[k] += (r @ f).double()
                coef = coef.numpy()
                c_f = ALPHA / n if is_fg else (1.0 - ALPHA) / n
                sums.append(total_p)
                s_grad.append(coef[0, :3])
                s_hess.append(_sym(coef[1, 3:]))
                g += (-c_f if is_fg else c_f) * coef[2, :3]
                h += c_f * _sym(coef[3, 3:])
            a = 2.0 * sums[0] + 1.0
            b = sums[0] + sums[1] + n_fg + 1.0
            ga, gb = 2.0 * s_grad[0], s_grad[0] + s_grad[1]
            ha, hb = 2.0 * s_hess[0], s_hess[0] + s_hess[1]
            g += -ga / b + a * gb / b**2
            h += (-ha / b + (np.outer(ga, gb) + np.outer(gb, ga)) / b**2 + a * hb / b**2
                  - 2.0 * a * np.outer(gb, gb) / b**3)
            g_total += g / len(self.refs)
            h_total += h / len(self.refs)
        return g_total, h_total

    _OUTER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))

    def _features(self, mt: torch.Tensor) -> torch.Tensor:
        """float32 (n, 9): ``mt`` (n, 3), then the per-pixel products M_i M_j (i <= j); made once."""
        cache = self.__dict__.setdefault("_feature_cache", {})
        if id(mt) not in cache:
            cache[id(mt)] = torch.cat([mt] + [(mt[:, i] * mt[:, j])[:, None] for i, j in self._OUTER], dim=1)
        return cache[id(mt)]


def _sym(v: np.ndarray) -> np.ndarray:
    """(3, 3) symmetric matrix from its 6 entries in :data:`_FusedLoss._OUTER` order."""
    h = np.empty((3, 3))
    for k, (i, j) in enumerate(_FusedLoss._OUTER):
        h[i, j] = h[j, i] = v[k]
    return h


def _ab_grad(loss: _FusedLoss) -> Callable[[np.ndarray], np.ndarray]:
    """d loss / d (a, b) from d loss / d w, w = (1 - a - b, a, b)."""

    def grad(ab: np.ndarray) -> np.ndarray:
        w = torch.tensor([1.0 - ab.sum(), ab[0], ab[1]], dtype=torch.float32)
        g = loss.grad(w).numpy()
        return g[1:] - g[0]

    return grad


#: Maps d/dw (3,) to d/d(a, b) for w = (1 - a - b, a, b).
_AB = np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])


class _TaylorGrad:
    """d loss / d (a, b) from a second-order model, re-centred when the weights leave it.

    At a centre c the loss gives its exact gradient g and Hessian H
    (:meth:`_FusedLoss.grad_hess`, about 2.5 gradients' cost); at nearby
    ``ab`` the gradient is g + H (ab - c), whose error grows with
    |ab - c|^2. AdamW moves the weights at most about the learning rate
    (1e-3) a step, so a centre serves ``radius`` / 1e-3 steps or more at the
    start and hundreds once the cosine schedule has slowed them; a new
    centre is taken when a weight is more than ``radius`` from it.
    """

    def __init__(self, loss: _FusedLoss, radius: float) -> None:
        self.loss, self.radius = loss, radius
        self.centres = 0  # exact evaluations made (the bench reports them)
        self._centre: np.ndarray | None = None
        self._g = np.zeros(2)
        self._h = np.zeros((2, 2))

    def __call__(self, ab: np.ndarray) -> np.ndarray:
        if self._centre is None or np.abs(ab - self._centre).max() > self.radius:
            w = torch.tensor([1.0 - ab.sum(), ab[0], ab[1]], dtype=torch.float32)
            g, h = self.loss.grad_hess(w)
            self._centre, self._g, self._h = ab.copy(), _AB @ g, _AB @ h @ _AB.T
            self.centres += 1
        return self._g + self._h @ (ab - self._centre)


@dataclass(frozen=True)
class WeightFit:
    """The outcome of a PerSAM-F fit.

    Attributes:
        weights: float32 (3,) mask weights (1 - a - b, a, b).
        steps: optimiser steps run (both fits run all of them).
        frames: (height, width) the loss was computed on, per reference.
        exact: True for the full-size fit of every step.
        evaluations: full passes over the loss's pixels (the exact fit: one a step).
    """

    weights: np.ndarray
    steps: int
    frames: tuple[tuple[int, int], ...]
    exact: bool
    evaluations: int = 0


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
    radius: float = TAYLOR_RADIUS,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> WeightFit:
    """PerSAM-F's mask weights: the exact fit's optimiser, on a smaller frame, with a loss model.

    Why it gives the exact fit's weights:

    * The loss is an integral over the image. Both the focal term (a mean
      over pixels) and Dice (ratios of sums; its +1 smoothing is negligible
      against object areas in pixels) change little when each full-size pixel
      is replaced by the frame pixel that covers it, *provided* the frame
      pixel keeps the exact object fraction c of its area (cv2 area
      interpolation of the mask) and counts as the ``area`` full-size pixels
      it covers. A pixel on the object's edge is then c parts object and
      1 - c parts background, which is what the full-size loss sums.
    * The candidate logits are 256 x 256 in the padded 1024 input frame and
      bilinear between those points; a frame of long side
      :data:`FAST_LONG_SIDE` samples them finely enough where the loss is
      not linear in them (the candidate masks' edges). Coarser frames were
      measured to drift (see :data:`FAST_LONG_SIDE`).
    * Same optimiser, schedule and number of steps as the exact fit: the
      same trajectory. Its gradients come from a second-order model of the
      loss (:class:`_TaylorGrad`), re-centred whenever a weight moved more
      than ``radius``: a few dozen exact evaluations instead of ``steps``.

    ``pytest -m slow tests/core/test_fit.py`` checks the agreement with the
    exact fit on the PerSeg examples (weights within 0.02, masks on the
    object's other photos IoU >= 0.99).

    Args:
        references: (embedding, bool (H, W) mask) pairs.
        target: gives ``t`` for each reference's positive point.
        steps: length of the cosine schedule (all are run).
        long_side: long side of the loss frame (:func:`fast_frame`).
        radius: how far (in a, b) the loss model is trusted.
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
    model = _TaylorGrad(_FusedLoss.soft(maps, coverages, areas), radius)
    del maps
    weights, run = _optimise(model, steps, progress, should_cancel)
    return WeightFit(weights, run, tuple(frames), exact=False, evaluations=model.centres)


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
    return WeightFit(weights, steps, tuple(emb.original_size for emb, _ in references), exact=True,
                     evaluations=steps)


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
