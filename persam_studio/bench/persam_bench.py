"""Bench section "persam": album propagation cold vs warm, PerSAM-F fitting vs the reference.

(a) Cold propagation (image encoder + PerSAM per image) against re-propagating
    a *new* reference over the same, now cached, album (decoder only).
(b) PerSAM-F weight fitting: the decoder run once (:func:`fit_weights`)
    against the reference procedure, 1000 decoder runs each followed by the
    loss (:func:`fit_weights_reference`); the note gives the largest
    difference between the two fitted weight vectors. The reference image is
    scaled to 320x320 here so that the 1000-run yardstick stays around a
    minute or two on a laptop CPU; a third row times the fast fit per step at
    the reference's full size.

(c) PerSAM-F fit of a 12 MP reference (the bench photo at 4000x3000, an
    ellipse as its mask), embedding cached: the fast fit (the default)
    timed whole, against the exact full-size 1000-step fit, whose steps are
    timed over a short run and extrapolated (the whole run takes minutes).

Album: PerSeg examples from ../shared/data/perseg-examples when present
(cat_00 as reference, cat_01 and duck_toy_01 as the album), else synthetic
photos with disc masks.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from persam_studio.bench import SHARED, BenchContext, Row, synthetic_photo

STEPS = 1000


def _examples() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images [ref, album1, album2, (new ref = album2)] and their masks."""
    from persam_studio.core.io.imageio import load_image, load_mask

    folder = SHARED / "data" / "perseg-examples"
    names = ["cat_00", "cat_01", "duck_toy_01"]
    if all((folder / f"{n}.jpg").exists() and (folder / f"{n}.png").exists() for n in names):
        images = [load_image(folder / f"{n}.jpg").pixels for n in names]
        masks = [load_mask(folder / f"{n}.png", size=im.shape[:2]) for n, im in zip(names, images)]
        return images, masks
    images, masks = [], []
    for seed in range(3):
        im = synthetic_photo(960, 1280, seed=seed)
        yy, xx = np.mgrid[0:960, 0:1280]
        masks.append((xx - 640) ** 2 + (yy - 480) ** 2 < 200**2)
        images.append(im)
    return images, masks


def run(ctx: BenchContext) -> list[Row]:
    import cv2

    from persam_studio.core.segment.cache import EmbeddingCache
    from persam_studio.core.segment.engine import Engine
    from persam_studio.core.io.export import save_image
    from persam_studio.core.personalize.persam import fit_target, fit_weights, fit_weights_reference
    from persam_studio.core.personalize.propagate import propagate

    rows: list[Row] = []
    images, masks = _examples()
    album_dir = ctx.scratch / "persam-album"
    paths = []
    for i, im in enumerate(images[1:]):
        p = album_dir / f"album{i}.png"
        save_image(p, im)  # PNG: lossless, so the album's pixels are the ones encoded
        paths.append(p)
    engine = Engine(ctx.sam, ctx.model_key, EmbeddingCache(ctx.scratch / "persam-cache"))

    # (a) cold: the album has never been seen; warm: a new reference, same album.
    target = fit_target(engine, [(engine.encode(images[0]), masks[0])], name="first")
    cold = [item.seconds for item in propagate(engine, [target], paths) if item.encoded]
    new_ref = fit_target(engine, [(engine.encode(images[2]), masks[2])], name="second")  # cached
    runs = engine.encode_count
    warm = [item.seconds for item in propagate(engine, [new_ref], paths)]
    if engine.encode_count != runs:
        raise RuntimeError("warm propagation encoded an image: the embedding cache did not serve it")
    cold_s, warm_s = float(np.mean(cold)), float(np.mean(warm))
    sizes = ", ".join(f"{im.shape[1]}x{im.shape[0]}" for im in images[1:])
    rows.append(Row("persam", f"re-propagate a new reference, per image ({sizes})", warm_s, "s",
                    baseline="cold propagation (encoder + PerSAM)", baseline_value=cold_s,
                    ratio=cold_s / warm_s, target=">= 20x",
                    note=f"{len(paths)} images, embeddings cached; decoder only"))

    # (b) PerSAM-F fitting: decoder once vs the reference's decoder-every-step.
    small = cv2.resize(images[0], (320, 320), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(masks[0].astype(np.uint8), (320, 320), interpolation=cv2.INTER_NEAREST) > 0
    ref = [(engine.encode(small), small_mask)]
    tf = fit_target(engine, ref, finetune=True, steps=1)
    t0 = time.perf_counter()
    fast = fit_weights(engine, ref, tf, steps=STEPS)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = fit_weights_reference(engine, ref, tf, steps=STEPS)
    t_slow = time.perf_counter() - t0
    diff = float(np.abs(fast - slow).max())
    rows.append(Row("persam", f"PerSAM-F fit, {STEPS} steps, decoder once (320x320 reference)", t_fast, "s",
                    baseline=f"reference: {STEPS} decoder runs + loss", baseline_value=t_slow,
                    ratio=t_slow / t_fast, target=">= 5x",
                    note=f"max |w_fast - w_reference| = {diff:.2e} (must be <= 1e-4); w = {np.round(fast, 4).tolist()}"))
    rows.append(Row("persam", "weights difference fast vs reference", diff, "", target="<= 1e-4"))

    # The fast fit at the reference's full size (the product path), per step.
    full = [(engine.encode(images[0]), masks[0])]
    tf_full = fit_target(engine, full, finetune=True, steps=1)
    n = 50
    t0 = time.perf_counter()
    fit_weights(engine, full, tf_full, steps=n)
    per_step = (time.perf_counter() - t0) / n
    h, w = images[0].shape[:2]
    rows.append(Row("persam", f"PerSAM-F fit at full size ({w}x{h}), per step", per_step * 1000, "ms",
                    note=f"{STEPS} steps = {per_step * STEPS:.0f} s; scales with reference pixels"))

    rows.extend(_fit_12mp(ctx, engine))
    return rows


def _fit_12mp(ctx: BenchContext, engine) -> list[Row]:
    """(c): fast vs exact PerSAM-F fit of a 12 MP reference, in one run."""
    from persam_studio.core.personalize.fit import fit_weights, fit_weights_fast
    from persam_studio.core.personalize.persam import fit_target

    pixels = ctx.photo_12mp
    h, w = pixels.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((xx - w * 0.55) / (w * 0.22)) ** 2 + ((yy - h * 0.5) / (h * 0.3)) ** 2 < 1
    ref = [(engine.encode(pixels), mask)]  # cached: not part of either time
    target = fit_target(engine, ref, finetune=True, steps=1)
    t0 = time.perf_counter()
    fast = fit_weights_fast(engine, ref, target)
    t_fast = time.perf_counter() - t0
    # The exact fit: setup (decoder, full-size maps) + STEPS steps; two short
    # runs give the cost of a step and of the setup.
    short = []
    for n in (10, 30):
        t0 = time.perf_counter()
        fit_weights(engine, ref, target, steps=n)
        short.append(time.perf_counter() - t0)
    per_step = max((short[1] - short[0]) / 20, 1e-9)
    t_exact = short[0] - 10 * per_step + STEPS * per_step
    return [Row("persam", f"PerSAM-F fit, 12 MP reference ({w}x{h}), fast (default)", t_fast, "s",
                baseline="exact full-size fit, 1000 steps (extrapolated from 10 and 30 steps)",
                baseline_value=t_exact, ratio=t_exact / t_fast, target="<= 2",
                note=f"{fast.steps} steps, {fast.evaluations} loss evaluations on a "
                     f"{fast.frames[0][1]}x{fast.frames[0][0]} frame; "
                     f"exact: {per_step * 1000:.0f} ms a step")]
