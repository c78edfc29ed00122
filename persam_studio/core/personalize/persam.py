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
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from persam_studio.core.errors import MaskError
from persam_studio.core.geometry import mask_box
from persam_studio.core.personalize.fit import STEPS, fit
from persam_studio.core.personalize.prior import GRID, extremes, similarity
from persam_studio.core.personalize.target import MODES, PersamResult, Target, confidence
from persam_studio.core.segment.engine import Engine
from persam_studio.core.types import Embedding, MaskResult

# Re-exported: callers and tests know these by persam.<name> (one home each is
# prior.py, fit.py and target.py).
from persam_studio.core.personalize.fit import (  # noqa: F401
    _FusedLoss,
    _weights,
    dice_loss,
    fit_weights,
    fit_weights_fast,
    fit_weights_reference,
    focal_loss,
)
from persam_studio.core.personalize.prior import guidance_map, location_prior  # noqa: F401


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
    exact: bool = False,
    steps: int = STEPS,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Target:
    """Learn a :class:`Target` from reference embeddings and masks.

    Args:
        references: (embedding, mask) pairs; mask bool (H, W) at the
            embedding's ``original_size`` (the oriented image).
        finetune: PerSAM-F (fit the three mask weights, ``steps`` AdamW
            steps on the references) instead of training-free PerSAM.
        exact: PerSAM-F only: fit at the references' full size for all
            ``steps`` steps (:func:`~persam_studio.core.personalize.fit.fit_weights`)
            instead of the fast fit on a smaller frame with a loss model
            (:func:`~persam_studio.core.personalize.fit.fit_weights_fast`,
            under a second instead of minutes for a 12 MP reference).
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
    fitted = fit(engine, refs, target, exact=exact, steps=steps, progress=progress, should_cancel=should_cancel)
    return Target(**{**target.__dict__, "weights": fitted.weights})


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
    check_target(target, embedding)
    t0 = time.perf_counter()
    sim = similarity(engine, embedding, target)
    pos, neg = extremes(sim)
    return segment_at(engine, embedding, target, sim, pos, neg, started=t0)


def check_target(target: Target, embedding: Embedding) -> None:
    """Raise ValueError when ``target`` cannot be used on ``embedding``."""
    if target.mode not in MODES:
        raise ValueError(f"unknown target mode {target.mode!r}")
    if target.model_key and target.model_key != embedding.model_key:
        raise ValueError(f"target {target.name!r} was fitted with another model ({target.model_key})")
    if target.mode == "persam_f" and target.weights is None:
        raise ValueError(f"PerSAM-F target {target.name!r} has no weights")


def segment_at(
    engine: Engine,
    embedding: Embedding,
    target: Target,
    sim: torch.Tensor,
    pos: tuple[int, int],
    neg: tuple[int, int],
    *,
    started: float | None = None,
) -> PersamResult:
    """PerSAM's cascade (see :func:`segment`) from a given similarity map and points.

    Args:
        sim: float32 (H, W) similarity at the original size; its maximum is
            the result's ``similarity_peak`` and (PerSAM) it makes the
            guidance map.
        pos, neg: (x, y) positive and negative points, original pixels
            (PerSAM-F uses only ``pos``).
        started: ``time.perf_counter()`` the result's ``seconds`` count from.
    """
    t0 = time.perf_counter() if started is None else started
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
