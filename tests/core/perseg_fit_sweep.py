"""The fast PerSAM-F fit against the exact one, with every PerSeg example as the reference.

    .venv/bin/python -m tests.core.perseg_fit_sweep [--frames 768,896,1152]

For each of the 9 photos of ``../shared/data/perseg-examples`` (3 objects x 3)
as the reference: the exact full-size 1000-step fit, then the fast fit at each
frame's long side; prints max |w_fast - w_exact| and the IoU of the masks the
two give on the object's two other photos, then the worst of each per frame.
Random tiny SAM with its decoder scaled, as ``tests/core/test_fit.py``. About
7 minutes on 2 cores (the exact fits), hence not a test: the slow test checks
the 00 references; this is the measurement behind ``fit.FAST_LONG_SIDE``.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

OBJECTS = ("cat", "colorful_sneaker", "duck_toy")
SHOTS = ("00", "01", "02")


def main(argv: list[str] | None = None) -> int:
    from persam_studio.core.io.imageio import load_image, load_mask
    from persam_studio.core.personalize import fit
    from persam_studio.core.personalize.persam import fit_target, segment
    from persam_studio.core.segment.engine import Engine
    from tests.conftest import shared_data
    from tests.core.test_fit import scaled_sam

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", default=str(fit.FAST_LONG_SIDE), help="long sides to try, comma-separated")
    args = p.parse_args(argv)
    frames = [int(v) for v in args.frames.split(",")]
    folder = shared_data("perseg-examples")
    engine = Engine(scaled_sam(), "tiny-test")
    worst = {f: (0.0, 1.0) for f in frames}
    for obj in OBJECTS:
        photos = {}
        for k in SHOTS:
            pixels = load_image(folder / f"{obj}_{k}.jpg").pixels
            photos[k] = (engine.encode(pixels), load_mask(folder / f"{obj}_{k}.png", size=pixels.shape[:2]))
        for ref in SHOTS:
            exact = fit_target(engine, [photos[ref]], finetune=True, exact=True)
            others = [k for k in SHOTS if k != ref]
            exact_masks = {k: segment(engine, photos[k][0], exact).mask() for k in others}
            for frame in frames:
                fast = fit.fit_weights_fast(engine, [photos[ref]], exact, long_side=frame)
                target = dataclasses.replace(exact, weights=fast.weights)
                ious = []
                for k in others:
                    a, b = segment(engine, photos[k][0], target).mask(), exact_masks[k]
                    ious.append(float((a & b).sum() / (a | b).sum()))
                dw = float(np.abs(fast.weights - exact.weights).max())
                worst[frame] = (max(worst[frame][0], dw), min(worst[frame][1], *ious))
                print(f"{obj}_{ref} frame {frame}: max |dw| {dw:.4f}, IoU {', '.join(f'{v:.4f}' for v in ious)}",
                      flush=True)
    for frame, (dw, iou) in worst.items():
        print(f"frame {frame}: worst max |dw| {dw:.4f}, worst IoU {iou:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
