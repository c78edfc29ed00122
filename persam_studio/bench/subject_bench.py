"""Bench section "subject": select subject (ONNX model) and its edge refinement.

The model is ``$PERSAM_SUBJECT_MODEL``, else ../shared/models/isnet-medium.onnx
(IS-Net, test data that never ships); without either the section is skipped.

* Our overhead: :meth:`SubjectModel.predict` on a photo (resize, normalise,
  run, map back to the photo's size; no cache) against a bare onnxruntime
  session on the same file in the same run, given an input tensor already
  prepared and asking for the first output only, i.e. the least work any
  caller can do. Calls alternate so machine noise hits both alike.
* Refinement: :func:`refine_alpha` with the soft map, on the 12 MP photo.
* 12 MP select + refine, cold cache: what a user waits for after the click.
* Quality on pymatting's lemur (ground-truth alpha): SAD of our refinement
  against rembg's alpha-matting pipeline (:func:`rembg_alpha`) on the same
  soft map, in thousands (sum of |alpha - truth| with alpha in [0, 1]).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from persam_studio.bench import SHARED, BenchContext, Row, percentile, timed_interleaved

OVERHEAD_TARGET = 1.15  # ours / bare session
TOTAL_TARGET = 5.0  # seconds, 12 MP select + refine


def subject_model_path() -> Path | None:
    """The model the section measures, or None (see module doc)."""
    env = os.environ.get("PERSAM_SUBJECT_MODEL")
    path = Path(env) if env else SHARED / "models" / "isnet-medium.onnx"
    return path if path.is_file() else None


def rembg_alpha(pixels: np.ndarray, soft: np.ndarray, fg: int = 240, bg: int = 10, erode: int = 10) -> np.ndarray:
    """rembg's alpha matting of ``soft`` (the baseline; never used by the app).

    The soft map as 8-bit: > ``fg`` is object, < ``bg`` background, each
    eroded by an ``erode`` x ``erode`` square, the rest unknown; then
    pymatting's closed-form alpha on the full image with default settings.

    Args:
        pixels: uint8 (H, W, 3) RGB.
        soft: float (H, W) in [0, 1], same frame.

    Returns:
        float64 (H, W) alpha in [0, 1].
    """
    import pymatting
    from scipy.ndimage import binary_erosion

    soft8 = (np.clip(soft, 0, 1) * 255).astype(np.uint8)
    square = np.ones((erode, erode), np.uint8)
    trimap = np.full(soft8.shape, 0.5)
    trimap[binary_erosion(soft8 > fg, structure=square)] = 1.0
    # The image border counts as background when eroding the background, as in rembg.
    trimap[binary_erosion(soft8 < bg, structure=square, border_value=1)] = 0.0
    return np.clip(pymatting.estimate_alpha_cf(pixels / 255.0, trimap), 0.0, 1.0)


def sad_k(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Sum of absolute differences of two alphas in [0, 1], in thousands."""
    return float(np.abs(alpha.astype(np.float64) - truth).sum()) / 1000.0


def lemur() -> tuple[np.ndarray, np.ndarray] | None:
    """(pixels uint8 (H, W, 3), ground-truth alpha float64 (H, W) in [0, 1]) from ../shared, or None."""
    from persam_studio.core.io.imageio import load_image

    folder = SHARED / "data" / "matting"
    if not (folder / "lemur.png").is_file():
        return None
    truth = load_image(folder / "lemur_alpha.png").pixels[:, :, 0] / 255.0
    return load_image(folder / "lemur.png").pixels, truth


def run(ctx: BenchContext) -> list[Row]:
    import onnxruntime as ort

    from persam_studio.core.edges.matting import refine_alpha
    from persam_studio.core.models.subject import SubjectModel

    path = subject_model_path()
    if path is None:
        ctx.log("[bench] subject: no model (set PERSAM_SUBJECT_MODEL); skipped")
        return []
    model = SubjectModel(path)
    bare = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows: list[Row] = []
    for photo in (ctx.photo_pixels, ctx.photo_12mp):
        h, w = photo.shape[:2]
        x = model.prepare(photo)
        feed = {bare.get_inputs()[0].name: x}
        first = [bare.get_outputs()[0].name]
        ours, base = timed_interleaved([lambda: model.predict(photo), lambda: bare.run(first, feed)],
                                       repeats=max(2, ctx.repeats // 10), warmup=1)
        t_ours, t_base = percentile(ours, 50), percentile(base, 50)
        rows.append(Row("subject", f"select subject, {w}x{h} photo ({path.name}, median)", t_ours, "s",
                        baseline="bare onnxruntime session.run", baseline_value=t_base, ratio=t_base / t_ours,
                        target=f">= {1 / OVERHEAD_TARGET:.2f}x", note=f"overhead {100 * (t_ours / t_base - 1):+.1f}%"))

    photo = ctx.photo_12mp
    h, w = photo.shape[:2]
    soft = model.predict(photo)
    refine_alpha(photo, soft >= 0.5, soft=soft)  # load pymatting's kernels outside the timings
    t0 = time.perf_counter()
    refine_alpha(photo, soft >= 0.5, soft=soft)
    rows.append(Row("subject", f"refine the subject's edges, {w}x{h}", time.perf_counter() - t0, "s"))
    t0 = time.perf_counter()
    soft = model.predict(photo)  # the model is open (the app opens it once); it has no cache
    refine_alpha(photo, soft >= 0.5, soft=soft)
    rows.append(Row("subject", f"select subject + refine, {w}x{h} (map not cached)", time.perf_counter() - t0,
                    "s", target=f"<= {TOTAL_TARGET:g}"))

    sample = lemur()
    if sample is not None:
        pixels, truth = sample
        soft = model.predict(pixels)
        ours_alpha, _ = refine_alpha(pixels, soft >= 0.5, soft=soft)
        base_sad = sad_k(rembg_alpha(pixels, soft), truth)
        ours_sad = sad_k(ours_alpha, truth)
        rows.append(Row("subject", "lemur edge error (SAD, thousands)", ours_sad, "k", baseline="rembg alpha matting",
                        baseline_value=base_sad, ratio=base_sad / ours_sad, target=">= 1.18x",
                        note=f"{100 * (1 - ours_sad / base_sad):.0f}% lower"))
    return rows
