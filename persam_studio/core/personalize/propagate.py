"""Propagate PerSAM targets over an album: one item per image, as a generator.

The image encoder is the only slow step, and the engine's embedding cache
keeps every embedding it computes: the first propagation over an album
encodes each image once; propagating a new or corrected reference again is
decoder-only (:attr:`PropagationItem.encoded` tells which happened).

The caller drives the loop (CLI progress bar, GUI worker): ``should_cancel``
is polled between images and raises :class:`~persam_studio.core.errors.Cancelled`.
An image that cannot be read gives an item with the error; the rest go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from persam_studio.core.segment.engine import Engine
from persam_studio.core.errors import Cancelled, PersamError
from persam_studio.core.personalize.instances import InstancesResult, find_instances
from persam_studio.core.personalize.methods import DEFAULT_INSTANCE_FRACTION
from persam_studio.core.types import REVIEW_THRESHOLD
from persam_studio.core.personalize.persam import PersamResult, Target, segment



@dataclass(frozen=True, eq=False)
class PropagationItem:
    """The outcome of one album image.

    Attributes:
        path: the image file.
        index: 0-based position in the album; ``total`` images in all.
        results: target name -> :class:`PersamResult`, or a one-line error
            string when that target (or the whole image) failed.
        seconds: wall time for this image (load, encode if needed, decode).
        encoded: the image encoder ran for this image (False: cache hit or
            the image could not be read).
        error: one-line reason when the image itself could not be used.
        pixels: uint8 (H, W, 3) RGB of the oriented image, None on error.
        instances: target name -> :class:`InstancesResult` (its first
            instance is ``results[name]``; its ``mask()`` is the union to
            save), or the same error string as ``results``.
    """

    path: Path
    index: int
    total: int
    results: dict[str, PersamResult | str]
    seconds: float
    encoded: bool
    error: str | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)
    instances: dict[str, InstancesResult | str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every target produced a result."""
        return self.error is None and all(isinstance(r, PersamResult) for r in self.results.values())


def is_doubtful(result: PersamResult | str, threshold: float = REVIEW_THRESHOLD) -> bool:
    """Should a person look at this result? Errors, empty masks and low confidence."""
    if not isinstance(result, PersamResult):
        return True
    return result.empty or result.confidence < threshold


def propagate(
    engine: Engine,
    targets: Sequence[Target],
    paths: Sequence[Path],
    *,
    should_cancel: Callable[[], bool] | None = None,
    instances: int | None = 1,
    instance_fraction: float = DEFAULT_INSTANCE_FRACTION,
) -> Iterator[PropagationItem]:
    """Segment every target in every image, yielding one item per image in order.

    Args:
        engine: the model (with a cache, a re-run never re-encodes).
        targets: from :func:`persam_studio.core.personalize.persam.fit_target`; names must differ.
        paths: image files; each is loaded with EXIF orientation applied.
        should_cancel: polled before each image.
        instances: instances to look for per image and target: a number, or
            ``None`` for all (see :func:`~persam_studio.core.personalize.instances.find_instances`).
            With 1 (the default) each image gets PerSAM's single result.
        instance_fraction: a further instance is kept while its similarity
            peak is at least this fraction of the first one's.

    Raises:
        Cancelled: ``should_cancel()`` returned True.
        ValueError: two targets share a name.
    """
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"target names must differ: {names}")
    total = len(paths)
    for index, path in enumerate(paths):
        if should_cancel is not None and should_cancel():
            raise Cancelled()
        yield segment_image(engine, targets, path, index, total,
                            instances=instances, instance_fraction=instance_fraction)


def segment_image(
    engine: Engine,
    targets: Sequence[Target],
    path: Path,
    index: int = 0,
    total: int = 1,
    *,
    instances: int | None = 1,
    instance_fraction: float = DEFAULT_INSTANCE_FRACTION,
) -> PropagationItem:
    """Load one image, encode it (cached) and segment every target in it.

    The per-image step of :func:`propagate`, for callers that drive their own
    loop (a batch command, a distributed worker). An image that cannot be
    read, and a target that fails, are reported in the item, not raised.
    ``instances`` and ``instance_fraction`` are as for :func:`propagate`.

    Raises:
        ValueError, MemoryError: from the encoder on data it refuses (e.g. an
            image whose short side would resize to 0 pixels); a batch turns
            these into an error for this image.
    """
    from persam_studio.core.io.imageio import load_image

    names = [t.name for t in targets]
    t0 = time.perf_counter()
    path = Path(path)
    try:
        image = load_image(path)
        before = engine.encode_count
        embedding = engine.encode(image.pixels)
    except PersamError as exc:
        message = str(exc)
        return PropagationItem(path, index, total, {n: message for n in names},
                               time.perf_counter() - t0, False, error=message,
                               instances={n: message for n in names})
    encoded = engine.encode_count > before
    results: dict[str, PersamResult | str] = {}
    found: dict[str, InstancesResult | str] = {}
    for target in targets:
        try:
            if instances == 1:
                one = segment(engine, embedding, target)
                found[target.name] = InstancesResult((one,), embedding.original_size, embedding.input_size)
            else:
                found[target.name] = find_instances(engine, embedding, target, max_instances=instances,
                                                    fraction=instance_fraction)
            results[target.name] = found[target.name].first
        except PersamError as exc:
            results[target.name] = found[target.name] = str(exc)
    return PropagationItem(path, index, total, results, time.perf_counter() - t0, encoded,
                           pixels=image.pixels, instances=found)
