"""``persam-studio bench``: measured speed, as ratios against a baseline in the same run.

Each area of the app adds a section module to this package exposing
``run(ctx: BenchContext) -> list[Row]``; :data:`SECTIONS` lists them in the
order they run. Every claim of "N x faster" in the docs comes from a row whose
``baseline`` was measured in the same process, on the same weights and image.
"""

from __future__ import annotations

import importlib
import os
import platform
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

#: ../shared beside the repository (test photos, PerSeg, the lemur, the IS-Net model), when present.
SHARED = Path(__file__).resolve().parents[2].parent / "shared"

# Section name -> module. Missing modules (areas not built yet) are skipped.
SECTIONS: dict[str, str] = {
    "engine": "persam_studio.bench.engine_bench",
    "encoder": "persam_studio.bench.encoder_bench",
    "persam": "persam_studio.bench.persam_bench",
    "matting": "persam_studio.bench.matting_bench",
    "subject": "persam_studio.bench.subject_bench",
    "startup": "persam_studio.bench.startup_bench",
    "cluster": "persam_studio.bench.cluster_bench",
    "app": "persam_studio.bench.app_bench",
}


@dataclass(frozen=True)
class Row:
    """One measurement.

    ``ratio`` is ``baseline_value / value`` for times (how many times faster
    than the baseline), filled by the section; ``target`` is the acceptance
    threshold for that ratio (or for the value, see ``note``), if any.
    """

    section: str
    name: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """Whether the row meets its target (None when it has none)."""
        if not self.target:
            return None
        op, _, num = self.target.partition(" ")
        subject = self.ratio if self.ratio is not None and self.target.endswith("x") else self.value
        threshold = float(num.rstrip("x"))
        if subject is None:
            return None
        return subject >= threshold if op == ">=" else subject <= threshold


@dataclass
class BenchContext:
    """What sections share: a random vit_b (or a given checkpoint), test images, a scratch dir.

    Built lazily, so a section that needs no model costs nothing. Without a
    ``scratch`` folder it makes a temporary one and removes it on
    :meth:`close` (or at the end of a ``with`` block).
    """

    checkpoint: Path | None = None
    model_type: str | None = None
    repeats: int = 5
    photo: Path | None = None
    scratch: Path | None = None
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        # A run writes about 0.6 GB here (checkpoints, 12 and 50 MP photos,
        # caches); a folder the context made is its own to remove in close().
        self._owns_scratch = self.scratch is None
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="persam-bench-"))

    def close(self) -> None:
        """Remove the scratch folder if this context made it (a given one is left alone)."""
        if self._owns_scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> BenchContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @cached_property
    def loaded(self):
        """(sam, model_key) of the benchmarked model: the checkpoint, else a random vit_b."""
        from persam_studio.core import models
        from persam_studio.core.models.sam_build import random_sam

        if self.checkpoint is not None:
            lm = models.load_model(self.checkpoint, self.model_type)
            return lm.sam, lm.model_key
        sam = random_sam(self.model_type or "vit_b", seed=0)
        return sam, f"{self.model_type or 'vit_b'}-random0"

    @property
    def sam(self):
        return self.loaded[0]

    @property
    def model_key(self) -> str:
        return self.loaded[1]

    @cached_property
    def photo_pixels(self) -> np.ndarray:
        """A real photo (uint8 RGB), from ``photo`` or ../shared, else synthetic."""
        from persam_studio.core.io.imageio import load_image

        candidates = [self.photo] if self.photo else []
        candidates.append(SHARED / "data" / "photos" / "truck.jpg")
        for c in candidates:
            if c is not None and Path(c).exists():
                return load_image(c).pixels
        return synthetic_photo(1200, 1800)

    @cached_property
    def photo_12mp(self) -> np.ndarray:
        """The photo scaled to 4000x3000 (12 MP), uint8 RGB (3000, 4000, 3)."""
        import cv2

        return cv2.resize(self.photo_pixels, (4000, 3000), interpolation=cv2.INTER_CUBIC)


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like uint8 RGB image (h, w, 3): gradients, shapes, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (w + h) * 255], -1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.2) * min(h, w)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def timed(fn: Callable[[], object], repeats: int = 1, warmup: int = 0) -> list[float]:
    """Wall times in seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def timed_interleaved(fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 0) -> list[list[float]]:
    """Wall times of ``fns`` called in turn, ``repeats`` rounds after ``warmup`` rounds.

    Returns one list of seconds per function. Alternating the calls spreads
    whatever else the machine does over all of them alike, so their ratio is
    fair on a shared, noisy CPU.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, out):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()} {platform.release()}"
    )


def run_bench(ctx: BenchContext, sections: Sequence[str] | None = None) -> list[Row]:
    """Run the named sections (all by default) and return their rows."""
    rows: list[Row] = []
    for name in sections or list(SECTIONS):
        if name not in SECTIONS:
            raise ValueError(f"unknown bench section {name!r}; known: {', '.join(SECTIONS)}")
        try:
            module = importlib.import_module(SECTIONS[name])
        except ModuleNotFoundError as exc:
            if exc.name != SECTIONS[name]:
                raise
            continue
        ctx.log(f"[bench] {name} ...")
        section_rows = module.run(ctx)
        # Show each section as it ends: a long run interrupted later keeps these.
        ctx.log(format_table(section_rows))
        rows.extend(section_rows)
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows."""
    lines = [
        "| section | measurement | value | baseline (same run) | ratio | target | ok |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        base = ""
        if r.baseline:
            base = r.baseline + (f": {r.baseline_value:.4g} {r.unit}" if r.baseline_value is not None else "")
        ratio = f"{r.ratio:.1f}x" if r.ratio is not None else ""
        ok = {None: "", True: "yes", False: "NO"}[r.passed]
        value = f"{r.value:.4g} {r.unit}" + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.section} | {r.name} | {value} | {base} | {ratio} | {r.target} | {ok} |")
    return "\n".join(lines)


def write_markdown(rows: Sequence[Row], path: Path, command: str) -> None:
    """Record a bench run (table and machine) in a Markdown file, atomically."""
    from persam_studio.core.io.atomic import atomic_write_text

    text = (
        "# Benchmarks\n\n"
        f"Measured with `{command}` on {time.strftime('%Y-%m-%d')}.\n\n"
        f"Machine: {machine_description()}.\n\n"
        "Ratios compare against a baseline measured in the same run, on the same weights and image. "
        "Random weights cost the same compute as trained ones.\n\n"
        + format_table(rows)
        + "\n"
    )
    atomic_write_text(path, text)
