"""Bench section "startup": whole processes, as a user runs them.

* ``persam-studio embed`` of 3 photos in a fresh process (empty cache),
  against the stock segment-anything loop in a fresh process on the same
  files and checkpoint: ``sam_model_registry[type](checkpoint)``,
  ``SamPredictor``, ``set_image`` per photo (PIL decode, as our command).
  Both include interpreter start, imports, model load and encoding; the ratio
  is stock / ours (target >= 2.5x).
* A ``segment`` whose embedding is cached, itemised in a fresh process:
  imports, image read, model load, cache read, decode (prompt to full-size
  mask), write; beside it the wall time of the real ``persam-studio
  segment`` process on the same inputs.

* Peak memory of ``persam-studio cutout --refine`` on a 50 MP synthetic
  photo (8700 x 5800) with a ragged mask (an ellipse whose edge wanders by
  noise: a long soft band), measured as the child's ``ru_maxrss``
  (target <= 2048 MB). About a minute on a 2-core VM, hence here, not in
  the tests.

The checkpoint is ``--checkpoint`` when given, else the random vit_b saved
to the scratch folder (compute does not depend on the weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from persam_studio.bench import BenchContext, Row

SECTION = "startup"
TARGET_RATIO = 2.5

_STOCK = textwrap.dedent("""
    import sys, numpy as np
    from PIL import Image
    from segment_anything import SamPredictor, sam_model_registry
    sam = sam_model_registry[sys.argv[1]](checkpoint=sys.argv[2]).eval()
    predictor = SamPredictor(sam)
    for f in sys.argv[3:]:
        predictor.set_image(np.array(Image.open(f).convert("RGB")))
""")

_ITEMISED = textwrap.dedent("""
    import json, sys, time
    t = [time.perf_counter()]
    import numpy as np
    from persam_studio.cli import main  # noqa: F401  (what the command imports first)
    from persam_studio.core.io.export import save_mask_png
    from persam_studio.core.io.imageio import load_image
    from persam_studio.core.models import load_model
    from persam_studio.core.segment.cache import EmbeddingCache
    from persam_studio.core.segment.engine import Engine
    t.append(time.perf_counter())
    photo, ckpt, cache, out = sys.argv[1:5]
    image = load_image(photo)
    t.append(time.perf_counter())
    lm = load_model(ckpt)
    engine = Engine(lm.sam, lm.model_key, EmbeddingCache(cache))
    t.append(time.perf_counter())
    emb = engine.encode(image.pixels)
    assert engine.encode_count == 0, "not cached"
    t.append(time.perf_counter())
    h, w = image.size
    res = engine.predict(emb, np.array([[w / 2, h / 2]]), np.array([1]))
    mask = res.logits(res.best_index) > 0
    t.append(time.perf_counter())
    save_mask_png(out, mask)
    t.append(time.perf_counter())
    print(json.dumps([b - a for a, b in zip(t, t[1:])] + ["torchvision" in sys.modules]))
""")


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({r.returncode}): {r.stderr[-800:]}")
    return seconds, r


def run(ctx: BenchContext) -> list[Row]:
    import torch
    from PIL import Image

    scratch = ctx.scratch / "startup"
    photos_dir = scratch / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    if ctx.checkpoint is not None:
        from persam_studio.core.models import checkpoint_type

        ckpt = Path(ctx.checkpoint)
        model_type = ctx.model_type or checkpoint_type(ckpt) or "vit_b"
    else:
        ckpt = scratch / "vit_b_random.pth"
        if not ckpt.exists():
            torch.save(ctx.sam.state_dict(), ckpt)
        model_type = ctx.model_type or "vit_b"
    photos = []
    for i in range(3):  # three different photos: three encodings, no cache hits
        path = photos_dir / f"photo{i}.jpg"
        pixels = np.ascontiguousarray(np.roll(ctx.photo_pixels, 37 * i, axis=1))
        Image.fromarray(pixels).save(path, quality=92)
        photos.append(str(path))
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PERSAM_CHECKPOINT", None)

    ctx.log("[bench] startup: stock SamPredictor loop, 3 photos (fresh process)")
    stock, _ = _run([sys.executable, "-c", _STOCK, model_type, str(ckpt), *photos], env)
    ctx.log("[bench] startup: persam-studio embed, 3 photos (fresh process, empty cache)")
    cache = scratch / "cache"
    ours, _ = _run([sys.executable, "-m", "persam_studio", "embed", *photos, "--checkpoint", str(ckpt),
                    "--cache-dir", str(cache)], env)
    h, w = ctx.photo_pixels.shape[:2]
    rows = [Row(SECTION, f"embed 3 photos ({w}x{h}), whole process", ours, "s",
                baseline="stock SamPredictor.set_image loop, whole process", baseline_value=stock,
                ratio=stock / ours, target=f">= {TARGET_RATIO:g}x")]

    ctx.log("[bench] startup: cached segment, itemised and whole process")
    env_cached = dict(env, PERSAM_CACHE_DIR=str(cache))
    wall, r = _run([sys.executable, "-c", _ITEMISED, photos[0], str(ckpt), str(cache),
                    str(scratch / "itemised.png")], env_cached)
    *parts, torchvision = json.loads(r.stdout.strip().splitlines()[-1])
    names = ["imports", "image read", "model load", "cache read", "decode (to full-size mask)", "write mask"]
    for name, seconds in zip(names, parts):
        rows.append(Row(SECTION, f"cached segment: {name}", seconds, "s"))
    rows.append(Row(SECTION, "cached segment: interpreter start and exit", wall - sum(parts), "s",
                    note=f"torchvision imported: {torchvision}"))
    whole, _ = _run([sys.executable, "-m", "persam_studio", "segment", photos[0], "--checkpoint", str(ckpt),
                     "--cache-dir", str(cache), "--point", f"{w // 2},{h // 2}", "-o",
                     str(scratch / "whole.png")], env)
    rows.append(Row(SECTION, "cached segment: whole `persam-studio segment` process", whole, "s",
                    note=f"itemised total {wall:.2f} s"))
    rows.append(_refine_peak(ctx, scratch, env))
    return rows


_CHILD_RSS = textwrap.dedent("""
    import resource, subprocess, sys
    r = subprocess.run([sys.executable, "-m", "persam_studio", *sys.argv[1:]], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr[-800:])
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0)
""")


def _refine_peak(ctx: BenchContext, scratch: Path, env: dict[str, str]) -> Row:
    import cv2
    from PIL import Image

    from persam_studio.bench import synthetic_photo

    h, w = 5800, 8700
    photo, mask = scratch / "p50.png", scratch / "m50.png"
    Image.fromarray(synthetic_photo(h, w)).save(photo, compress_level=1)
    rng = np.random.default_rng(0)
    noise = cv2.resize(rng.standard_normal((h // 40, w // 40)).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC)
    yy, xx = np.ogrid[0:h, 0:w]
    ragged = (((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.35 * h)) ** 2 + 0.5 * noise) < 1
    Image.fromarray(ragged.view(np.uint8) * np.uint8(255)).save(mask)
    del noise, ragged
    ctx.log("[bench] startup: cutout --refine of a 50 MP photo, peak memory")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD_RSS, "cutout", str(photo), "--mask", str(mask), "--refine",
                        "-o", str(scratch / "cut50.png")], env=env, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"cutout --refine failed: {r.stderr[-800:]}")
    return Row(SECTION, f"cutout --refine, {w}x{h} ragged mask: peak memory", float(r.stdout.strip()), "MB",
               target="<= 2048", note=f"{time.perf_counter() - t0:.0f} s whole process")
