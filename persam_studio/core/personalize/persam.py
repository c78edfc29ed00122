"""PerSAM and PerSAM-F: personalise SAM with one (or a few) reference masks.

Implements /work/shared/docs/persam-algorithm.md (Zhang et al., arXiv
2305.03048) on top of the stock ``segment_anything`` package:

* :func:`fit_target` turns reference images (their embeddings) and masks into
  a :class:`Target`: the target embedding ``e`` (mean of the reference
  features inside the mask; PerSAM-F: (max + mean) / 2), its unit vector
  ``t`` and, for PerSAM-F, the three mask weights (:func:`fit_weights`).
* :func:`location_prior` is the cosine-similarity map of ``t`` against a test
  embedding, at the original image size, with its arg-max / arg-min pixels.
* :func:`segment` runs PerSAM (guided first step + two cascaded refinements)
  or PerSAM-F (weighted first step + two refinements) on one test embedding.
  Only the decoder runs: an album whose embeddings are cached is personalised
  without the image encoder.

Few-shot: with several references each reference gives its own ``e_r`` (as
above) and the target is their plain average, so every reference counts the
same whatever the object's size in it; PerSAM-F fits its weights on the
average of the references' losses.

Coordinate frame: pixels of the oriented image, x = column, y = row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from persam_studio.core.segment.engine import Engine
from persam_studio.core.types import Embedding, MaskResult
from persam_studio.core.geometry import mask_box, upscale_logits
from persam_studio.core.errors import MaskError

GRID = 64  # embedding cells per side
MODES = ("persam", "persam_f")


@dataclass(frozen=True, eq=False)
class Target:
    """What PerSAM knows about the object to find, from its reference(s).

    Attributes:
        name: user-visible name (used for output folders).
        mode: ``"persam"`` (training-free) or ``"persam_f"`` (fitted weights).
        embedding: float32 (256,) target embedding ``e`` (unnormalised).
        target: float32 (256,) ``t = e / |e|``, used for the location prior.
        weights: float32 (3,) PerSAM-F mask weights ``(1 - a - b, a, b)``,
            ``None`` for PerSAM.
        n_references: how many reference images were averaged.
        model_key: the model whose features ``e`` lives in ("" = unknown).
    """

    name: str
    mode: str
    embedding: np.ndarray
    target: np.ndarray
    weights: np.ndarray | None
    n_references: int = 1
    model_key: str = ""


@dataclass(frozen=True, eq=False)
class PersamResult:
    """The mask PerSAM found on one image, kept at 256x256 until asked for.

    Attributes:
        low_res_logits: float32 (1, 256, 256) logits in the padded input frame.
        iou: the decoder's predicted IoU of this mask (PerSAM-F's fused first
            step: the weighted sum of the three candidates' predictions).
        similarity_peak: the highest cosine similarity of the target to the
            image (in [-1, 1]): how strongly the object seems to be there.
        confidence: in [0, 1], ``sqrt(clip(iou, 0, 1) * clip(peak, 0, 1))``
            (0 for an empty mask): high only when the target is found *and*
            the decoder trusts its mask.
        point_coords: float (N, 2) XY prompts used (positive first; PerSAM
            also the negative point).
        point_labels: int (N,) 1 / 0.
        box: float (4,) XYXY box prompt of the last step, or ``None``.
        steps: which step produced the mask (1 = first prediction, 2 and 3 =
            cascaded refinements; a step that gives an empty mask is dropped).
        empty: the mask has no pixel at the original size.
        original_size, input_size: as :class:`~persam_studio.core.segment.engine.Embedding`.
        seconds: wall time of the decoder work for this image.
    """

    low_res_logits: np.ndarray
    iou: float
    similarity_peak: float
    confidence: float
    point_coords: np.ndarray
    point_labels: np.ndarray
    box: np.ndarray | None
    steps: int
    empty: bool
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    target_name: str = ""
    seconds: float = 0.0

    @cached_property
    def mask_result(self) -> MaskResult:
        """This mask as the engine's :class:`MaskResult` (one candidate), for
        upsampling by the one shared path (memoised per size there)."""
        return MaskResult(self.low_res_logits, np.array([self.iou], np.float32),
                          self.original_size, self.input_size, self.seconds)

    def logits(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """float32 (height, width) logits at ``size`` (default the original size)."""
        return self.mask_result.logits(0, size)

    def mask(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """bool (height, width) mask at ``size`` (default the original size)."""
        return self.logits(size) > 0.0


def confidence(iou: float, similarity_peak: float, empty: bool = False) -> float:
    """The confidence of a result in [0, 1]: geometric mean of clipped IoU and peak."""
    if empty:
        return 0.0
    a = min(max(float(iou), 0.0), 1.0)
    b = min(max(float(similarity_peak), 0.0), 1.0)
    return float(np.sqrt(a * b))


# -- the target ----------------------------------------------------------------


def _check_mask(embedding: Embedding, mask: np.ndarray, index: int) -> np.ndarray:
    mask = np.asarray(mask)
    label = f"reference {index + 1}"
    if mask.ndim != 2:
        raise MaskError(label, f"mask must be a 2-D array, got shape {mask.shape}")
    h, w = embedding.original_size
    if mask.shape != (h, w):
        raise MaskError(label, f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise MaskError(label, "mask is empty (no object pixel)")
    return mask


def reference_cells(engine: Engine, embedding: Embedding, mask: np.ndarray) -> np.ndarray:
    """The embedding cells inside a reference mask: bool (64, 64).

    The mask is brought into the grid as the image is (long side resized to
    1024 with SAM's own resize, padded bottom/right, sampled at 64x64 with
    bilinear interpolation, no antialiasing): a cell is inside when the mask
    is set near its centre. When no cell is inside (an object smaller than a
    cell), the cells holding the most mask pixels are used instead.

    Args:
        mask: bool (H, W) at ``embedding.original_size``, not empty.
    """
    mask = _check_mask(embedding, mask, 0)
    m = engine.transform.apply_image(mask.astype(np.uint8) * 255)
    size = engine.sam.image_encoder.img_size
    padded = torch.zeros((1, 1, size, size), dtype=torch.float32)
    padded[0, 0, : m.shape[0], : m.shape[1]] = torch.from_numpy(m.astype(np.float32))
    cells = F.interpolate(padded, size=(GRID, GRID), mode="bilinear", align_corners=False)[0, 0] > 0
    if bool(cells.any()):
        return cells.numpy()
    # Tiny object: count mask pixels per cell at full resolution.
    h, w = embedding.original_size
    ih, iw = embedding.input_size
    ys, xs = np.nonzero(mask)
    cy = np.minimum(((ys + 0.5) * (ih / h) / (size / GRID)).astype(np.int64), GRID - 1)
    cx = np.minimum(((xs + 0.5) * (iw / w) / (size / GRID)).astype(np.int64), GRID - 1)
    counts = np.bincount(cy * GRID + cx, minlength=GRID * GRID)
    return (counts == counts.max()).reshape(GRID, GRID)


def _reference_embedding(engine: Engine, embedding: Embedding, mask: np.ndarray, mode: str) -> torch.Tensor:
    cells = torch.from_numpy(reference_cells(engine, embedding, mask))
    feats = torch.from_numpy(np.asarray(embedding.features, dtype=np.float32)).permute(1, 2, 0)
    inside = feats[cells]  # (K, 256)
    mean = inside.mean(0)
    if mode == "persam":
        return mean
    return inside.max(0)[0] / 2 + mean / 2


def fit_target(
    engine: Engine,
    references: Sequence[tuple[Embedding, np.ndarray]],
    *,
    finetune: bool = False,
    name: str = "target",
    steps: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Target:
    """Learn a :class:`Target` from reference embeddings and masks.

    Args:
        references: (embedding, mask) pairs; mask bool (H, W) at the
            embedding's ``original_size`` (the oriented image).
        finetune: PerSAM-F (fit the three mask weights, ``steps`` AdamW
            steps on the references) instead of training-free PerSAM.
        progress: called with (step, steps) now and then while fitting.
        should_cancel: polled while fitting; True raises ``Cancelled``.

    Raises:
        MaskError: a mask is empty, not 2-D or not the size of its image.
        ValueError: no references.
    """
    if not references:
        raise ValueError("fit_target needs at least one reference")
    masks = [_check_mask(emb, m, i) for i, (emb, m) in enumerate(references)]
    mode = "persam_f" if finetune else "persam"
    per_ref = [_reference_embedding(engine, emb, m, mode) for (emb, _), m in zip(references, masks)]
    e = torch.stack(per_ref).mean(0)
    t = e / e.norm()
    target = Target(
        name=name,
        mode=mode,
        embedding=e.numpy().astype(np.float32),
        target=t.numpy().astype(np.float32),
        weights=None,
        n_references=len(references),
        model_key=engine.model_key,
    )
    if not finetune:
        return target
    refs = [(emb, m) for (emb, _), m in zip(references, masks)]
    weights = fit_weights(engine, refs, target, steps=steps, progress=progress, should_cancel=should_cancel)
    return Target(**{**target.__dict__, "weights": weights})


# -- location prior --------------------------------------------------------------


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


def _extremes(sim: torch.Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
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
    pos, neg = _extremes(sim)
    return sim.numpy(), pos, neg


def guidance_map(sim: torch.Tensor) -> np.ndarray:
    """Target-guided attention map ``g``: float32 (4096,), row-major 64x64 cells.

    S standardised (unbiased std), bilinear to 64x64 (no antialias), sigmoid.
    """
    with torch.inference_mode():
        s = (sim - sim.mean()) / torch.std(sim)
        s = F.interpolate(s[None, None], size=(GRID, GRID), mode="bilinear", align_corners=False)
        return torch.sigmoid(s).reshape(-1).numpy().astype(np.float32)


# -- segmentation ------------------------------------------------------------------


def segment(engine: Engine, embedding: Embedding, target: Target) -> PersamResult:
    """Find the target in one encoded image (decoder only).

    PerSAM: guided first step with the positive and negative points, then
    refinement 1 (dense prompt = step-1 logits, multimask, best IoU) and
    refinement 2 (plus the box of the refinement-1 mask). PerSAM-F: first
    step with the positive point, the three candidates fused with the
    target's weights, then two refinements with the box of the previous mask.
    When a step gives an empty mask the previous step's mask is returned.
    """
    if target.mode not in MODES:
        raise ValueError(f"unknown target mode {target.mode!r}")
    if target.model_key and target.model_key != embedding.model_key:
        raise ValueError(f"target {target.name!r} was fitted with another model ({target.model_key})")
    if target.mode == "persam_f" and target.weights is None:
        raise ValueError(f"PerSAM-F target {target.name!r} has no weights")
    t0 = time.perf_counter()
    sim = similarity(engine, embedding, target)
    pos, neg = _extremes(sim)
    peak = float(sim.max())
    if target.mode == "persam":
        coords = np.array([pos, neg], dtype=np.float64)
        labels = np.array([1, 0])
    else:
        coords = np.array([pos], dtype=np.float64)
        labels = np.array([1])

    def result(low: np.ndarray, iou: float, step: int, box: np.ndarray | None, empty: bool) -> PersamResult:
        return PersamResult(
            low_res_logits=np.ascontiguousarray(low, dtype=np.float32),
            iou=float(iou),
            similarity_peak=peak,
            confidence=confidence(iou, peak, empty),
            point_coords=coords,
            point_labels=labels,
            box=box,
            steps=step,
            empty=empty,
            original_size=embedding.original_size,
            input_size=embedding.input_size,
            target_name=target.name,
            seconds=time.perf_counter() - t0,
        )

    if target.mode == "persam":
        first = engine.predict(
            embedding, coords, labels, multimask_output=False,
            guidance=guidance_map(sim), target_embedding=target.embedding,
        )
        low, iou = first.low_res_logits[0:1], float(first.iou_predictions[0])
        if not first.mask(0).any():
            return result(low, iou, 1, None, True)
        prev = result(low, iou, 1, None, False)
        second = engine.predict(embedding, coords, labels, mask_input=low, multimask_output=True)
        box = None
    else:
        first = engine.predict(embedding, coords, labels, multimask_output=True)
        w = np.asarray(target.weights, dtype=np.float32)
        low = (first.low_res_logits * w[:, None, None]).sum(0, keepdims=True)
        iou = float(np.dot(w, first.iou_predictions))
        # Bilinear upsampling is linear: upsampling the fused low-res logits
        # is fusing the upsampled ones.
        fused = MaskResult(low, np.array([iou], np.float32), embedding.original_size, embedding.input_size)
        first_mask = fused.mask(0)
        if not first_mask.any():
            return result(low, iou, 1, None, True)
        prev = result(low, iou, 1, None, False)
        box = mask_box(first_mask)
        second = engine.predict(embedding, coords, labels, box=box, mask_input=low, multimask_output=True)

    i = second.best_index
    mask2 = second.mask(i)
    if not mask2.any():
        return prev
    prev = result(second.low_res_logits[i : i + 1], second.iou_predictions[i], 2, box, False)
    box = mask_box(mask2)
    third = engine.predict(
        embedding, coords, labels, box=box, mask_input=second.low_res_logits[i : i + 1], multimask_output=True
    )
    j = third.best_index
    if not third.mask(j).any():
        return prev
    return result(third.low_res_logits[j : j + 1], third.iou_predictions[j], 3, box, False)


# -- PerSAM-F: fitting the mask weights ------------------------------------------------

ALPHA = 0.25  # sigmoid focal loss
GAMMA = 2.0
LR = 1e-3  # AdamW (default weight decay 0.01, as the reference)
EPS = 1e-4


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
    pos, _ = _extremes(similarity(engine, embedding, target))
    return np.array([pos], dtype=np.float64)


def _candidate_maps(engine: Engine, embedding: Embedding, point: np.ndarray) -> torch.Tensor:
    """The decoder's three candidates for ``point`` at the original size: float32 (3, H*W)."""
    res = engine.predict(embedding, point, np.array([1]), multimask_output=True)
    low = torch.from_numpy(res.low_res_logits)[None]
    with torch.inference_mode():
        maps = upscale_logits(low, embedding.input_size, embedding.original_size)[0]
    return maps.reshape(3, -1).clone()


def _optimise(set_grad: Callable[[torch.nn.Parameter], None], steps: int,
              progress: Callable[[int, int], None] | None,
              should_cancel: Callable[[], bool] | None) -> np.ndarray:
    """The reference's optimiser loop; ``set_grad`` fills ``p.grad``. Returns float32 (3,)."""
    from persam_studio.core.errors import Cancelled

    p = torch.nn.Parameter(torch.ones(2, 1) / 3)
    optimizer = torch.optim.AdamW([p], lr=LR, eps=EPS)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for step in range(steps):
        if should_cancel is not None and step % 25 == 0 and should_cancel():
            raise Cancelled()
        optimizer.zero_grad()
        set_grad(p)
        optimizer.step()
        scheduler.step()
        if progress is not None and (step % 50 == 0 or step == steps - 1):
            progress(step + 1, steps)
    with torch.no_grad():
        return _weights(p).reshape(3).numpy().astype(np.float32)


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
    """

    BLOCK = 1 << 15  # pixels per block: torch's grain size, the largest that stays single-threaded

    def __init__(self, maps: Sequence[torch.Tensor], gts: Sequence[np.ndarray]) -> None:
        self.refs = []
        for m, gt in zip(maps, gts):
            fg = torch.from_numpy(np.ascontiguousarray(gt.reshape(-1)))
            groups = []
            for sel, is_fg in ((fg, True), (~fg, False)):
                mt = m[:, sel].t().contiguous()  # (n, 3): one row per pixel
                groups.append((mt, torch.empty(mt.shape[0]), torch.empty(mt.shape[0]), is_fg))
            self.refs.append((groups, int(m.shape[1]), int(fg.sum())))

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        """d loss / d w for weights ``w`` float32 (3,): float64 (3,).

        Every operation works on one block: below torch's parallel grain
        size, so no thread pool wakes up (on a busy laptop a parallel region
        waits for a descheduled thread, which made whole-array steps ~10x slower).
        """
        total = torch.zeros(3, dtype=torch.float64)
        step = self.BLOCK
        for groups, n, n_fg in self.refs:
            sums = []
            for mt, z_all, p_all, _ in groups:
                acc = 0.0
                for s in range(0, z_all.shape[0], step):
                    z = torch.mv(mt[s : s + step], w, out=z_all[s : s + step])
                    acc += float(torch.sigmoid(z, out=p_all[s : s + step]).sum())
                sums.append(acc)
            a = 2.0 * sums[0] + 1.0
            b = sums[0] + sums[1] + n_fg + 1.0
            for mt, z_all, p_all, is_fg in groups:
                c = -ALPHA / n if is_fg else (1.0 - ALPHA) / n
                kappa = (a - 2.0 * b) / (b * b) if is_fg else a / (b * b)
                for s in range(0, z_all.shape[0], step):
                    z, p = z_all[s : s + step], p_all[s : s + step]
                    q = torch.rsub(p, 1.0)
                    x, y = (q, p) if is_fg else (p, q)
                    g = F.softplus(-z if is_fg else z)  # the cross-entropy
                    g.mul_(y).mul_(2.0).add_(x).mul_(x).mul_(c).add_(y, alpha=kappa).mul_(x)
                    total += (g @ mt[s : s + step]).double()
        return total / len(self.refs)


def fit_weights(
    engine: Engine,
    references: Sequence[tuple[Embedding, np.ndarray]],
    target: Target,
    *,
    steps: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """PerSAM-F's mask weights, running the decoder once per reference.

    Same optimisation as :func:`fit_weights_reference` (AdamW lr 1e-3, eps
    1e-4, cosine annealing over ``steps``, Dice + focal at the original
    size), but the three candidate maps are computed once: they do not
    depend on the weights. The gradient is computed in closed form.

    Args:
        references: (embedding, bool (H, W) mask) pairs.
        target: gives ``t`` for each reference's positive point.

    Returns:
        float32 (3,) weights (1 - a - b, a, b).
    """
    maps = [_candidate_maps(engine, emb, _prior_point(engine, emb, target)) for emb, _ in references]
    loss = _FusedLoss(maps, [np.asarray(m, dtype=bool) for _, m in references])
    del maps  # the loss keeps its own pixel-major copy (3 x 4 bytes per reference pixel)

    def set_grad(p: torch.nn.Parameter) -> None:
        with torch.no_grad():
            g = loss.grad(_weights(p).reshape(3))
            p.grad = (g[1:] - g[0]).float().reshape(2, 1)

    return _optimise(set_grad, steps, progress, should_cancel)


def fit_weights_reference(
    engine: Engine,
    references: Sequence[tuple[Embedding, np.ndarray]],
    target: Target,
    *,
    steps: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """PerSAM-F's weights as the reference code fits them: decoder + autograd loss every step.

    Slow on purpose: the yardstick for :func:`fit_weights` in tests and the bench.
    """
    points = [_prior_point(engine, emb, target) for emb, _ in references]
    gts = [torch.from_numpy(np.asarray(m, dtype=bool).reshape(1, -1).astype(np.float32)) for _, m in references]

    def set_grad(p: torch.nn.Parameter) -> None:
        loss = 0.0
        for (emb, _), point, gt in zip(references, points, gts):
            maps = _candidate_maps(engine, emb, point)
            fused = (maps * _weights(p)).sum(0).unsqueeze(0)
            loss = loss + dice_loss(fused, gt) + focal_loss(fused, gt)
        (loss / len(references)).backward()

    return _optimise(set_grad, steps, progress, None)
