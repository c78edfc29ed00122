"""Several instances of the target in one photo ("both of my cats").

PerSAM looks at the single best match: the arg-max of the location prior.
:func:`find_instances` keeps looking: after each instance it takes that
instance's mask area (grown by one embedding cell, the resolution of the
similarity map, so the peak does not simply move to the instance's edge) out
of the similarity map and segments the next peak as PerSAM does, while

* that peak is at least ``fraction`` of the first instance's peak
  (default :data:`~persam_studio.core.personalize.methods.DEFAULT_INSTANCE_FRACTION`),
* the count is below ``max_instances``,
* and the new mask is not mostly (> half) an instance already found.

The photo's mask is the union of the instances' masks. Coordinate frame:
pixels of the oriented image, x = column, y = row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from persam_studio.core.personalize.methods import DEFAULT_INSTANCE_FRACTION, MAX_INSTANCES
from persam_studio.core.personalize.persam import check_target, segment_at
from persam_studio.core.personalize.prior import extremes, similarity
from persam_studio.core.personalize.target import PersamResult, Target
from persam_studio.core.segment.engine import Engine
from persam_studio.core.types import Embedding

#: A new instance whose mask lies more than this share inside earlier ones is
#: an earlier instance found again: the search stops.
MAX_OVERLAP = 0.5


@dataclass(frozen=True, eq=False)
class InstancesResult:
    """The instances of one target found in one photo, strongest first.

    Attributes:
        instances: one :class:`PersamResult` per instance (at least one; the
            first is exactly what :func:`~persam_studio.core.personalize.persam.segment`
            returns). Instance k's peak is ``instances[k].point_coords[0]``
            (x, y, original pixels) and its similarity
            ``instances[k].similarity_peak``.
        original_size, input_size: as the image's embedding.
    """

    instances: tuple[PersamResult, ...]
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.instances)

    @property
    def first(self) -> PersamResult:
        """The strongest match: PerSAM's single-instance result."""
        return self.instances[0]

    @property
    def count(self) -> int:
        """Instances found with a non-empty mask (0 when even the first is empty)."""
        return sum(not r.empty for r in self.instances)

    @property
    def peaks(self) -> list[tuple[float, float]]:
        """(x, y) of each instance's similarity peak, original pixels."""
        return [(float(r.point_coords[0][0]), float(r.point_coords[0][1])) for r in self.instances]

    @property
    def confidence(self) -> float:
        """The photo's confidence: that of the first (strongest) instance."""
        return self.first.confidence

    @property
    def empty(self) -> bool:
        """No instance has a pixel."""
        return all(r.empty for r in self.instances)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.instances)

    def logits(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """float32 (height, width): the largest instance logit per pixel, at
        ``size`` (default the original size); > 0 exactly on the union of the
        instance masks."""
        out = self.instances[0].logits(size)
        for r in self.instances[1:]:
            out = np.maximum(out, r.logits(size))
        return out

    def mask(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """bool (height, width): the union of the instance masks at ``size``."""
        return self.logits(size) > 0.0


def _grown(mask: np.ndarray, radius: int) -> np.ndarray:
    """bool (H, W) ``mask`` grown by ``radius`` pixels (square structuring element)."""
    import cv2

    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def find_instances(
    engine: Engine,
    embedding: Embedding,
    target: Target,
    *,
    max_instances: int | None = 1,
    fraction: float = DEFAULT_INSTANCE_FRACTION,
) -> InstancesResult:
    """Find up to ``max_instances`` instances of ``target`` in one encoded photo (decoder only).

    Args:
        max_instances: the most instances to return; ``None`` for "all"
            (up to :data:`~persam_studio.core.personalize.methods.MAX_INSTANCES`).
            With 1 this is :func:`~persam_studio.core.personalize.persam.segment`.
        fraction: keep a further instance while its similarity peak is at
            least ``fraction`` times the first instance's peak.

    Each further instance runs PerSAM's cascade with the similarity map
    whose earlier instance areas are set to the map's minimum: its arg-max
    is the positive point and (PerSAM) it makes the guidance map, so the
    decoder's attention is not drawn back to an instance already taken. The
    negative point stays the photo's least similar pixel.
    """
    limit = MAX_INSTANCES if max_instances is None else max_instances
    if limit < 1:
        raise ValueError(f"max_instances must be at least 1, got {max_instances}")
    check_target(target, embedding)
    t0 = time.perf_counter()
    sim = similarity(engine, embedding, target)
    pos, neg = extremes(sim)
    found = [segment_at(engine, embedding, target, sim, pos, neg, started=t0)]
    first_peak = found[0].similarity_peak
    if limit > 1 and not found[0].empty and first_peak > 0:
        h, w = embedding.original_size
        # One embedding cell (16 input pixels) in original pixels: the
        # similarity map's resolution, so its blur across the edge goes too.
        radius = int(np.ceil(16 * max(h, w) / 1024))
        work = sim.clone()
        floor = float(sim.min())
        taken = np.zeros((h, w), bool)
        while len(found) < limit:
            last = found[-1].mask()
            taken |= last
            work[_grown(last, radius)] = floor
            (x, y), _ = extremes(work)
            if float(work[y, x]) < fraction * first_peak:
                break
            nxt = segment_at(engine, embedding, target, work, (x, y), neg, started=time.perf_counter())
            mask = nxt.mask()
            area = int(mask.sum())
            if nxt.empty or area == 0 or (mask & taken).sum() > MAX_OVERLAP * area:
                break
            found.append(nxt)
    return InstancesResult(tuple(found), embedding.original_size, embedding.input_size)
