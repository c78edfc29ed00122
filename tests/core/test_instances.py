"""Several instances per photo: the next peak after taking each instance's area out."""

from __future__ import annotations

import numpy as np
import pytest

from persam_studio.core.personalize import persam
from persam_studio.core.personalize.instances import InstancesResult, find_instances
from persam_studio.core.personalize.methods import DEFAULT_INSTANCE_FRACTION
from persam_studio.core.personalize.propagate import propagate
from persam_studio.core.personalize.target import Target
from persam_studio.core.types import Embedding, MaskResult
from tests.conftest import shared_data


def disc_decoder(engine, radius_frac: float = 0.1):
    """Make ``engine.predict`` segment a disc around the positive point.

    Random decoder weights paint a blob over ~40 % of any photo, wherever the
    point is, so "take the instance out" would take half the photo. A disc of
    a fixed size (``radius_frac`` of the long side) stands in for a decoder
    that segments the object under the point; the similarity maps and the
    search are the real ones.
    """

    def predict(embedding, coords, labels, **kwargs):
        (h, w), (oh, ow) = embedding.input_size, embedding.original_size
        x, y = coords[0][0] * w / ow / 4, coords[0][1] * h / oh / 4  # to the 256 frame
        yy, xx = np.mgrid[0:256, 0:256]
        r = 256 * radius_frac
        low = np.where((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 < r * r, 10.0, -10.0).astype(np.float32)
        n = 3 if kwargs.get("multimask_output") else 1
        return MaskResult(np.repeat(low[None], n, 0), np.full(n, 0.9, np.float32), embedding.original_size,
                          embedding.input_size)

    engine.predict = predict
    return engine


def test_two_copies_of_the_reference_give_one_instance_in_each_half(tiny_sam):
    from persam_studio.core.io.imageio import load_image, load_mask
    from persam_studio.core.segment.engine import Engine

    folder = shared_data("perseg-examples")
    engine = disc_decoder(Engine(tiny_sam, "tiny-test"))
    image = load_image(folder / "cat_00.jpg").pixels
    target = persam.fit_target(engine, [(engine.encode(image), load_mask(folder / "cat_00.png",
                                                                          size=image.shape[:2]))])
    two = np.ascontiguousarray(np.concatenate([image, image], axis=1))
    found = find_instances(engine, engine.encode(two), target, max_instances=2)
    w = image.shape[1]
    assert len(found) == found.count == 2
    xs = sorted(x for x, _ in found.peaks)
    assert xs[0] < w <= xs[1]  # one peak in each half
    # Same place in each copy (to a similarity cell, 16 input pixels = 40 photo pixels).
    (x0, y0), (x1, y1) = found.peaks
    assert abs(abs(x1 - x0) - w) <= 40 and abs(y1 - y0) <= 40
    assert found.instances[1].similarity_peak >= DEFAULT_INSTANCE_FRACTION * found.first.similarity_peak
    masks = [r.mask() for r in found.instances]
    np.testing.assert_array_equal(found.mask(), masks[0] | masks[1])
    assert not (masks[0] & masks[1]).any()
    # The first instance is PerSAM's single result.
    single = persam.segment(engine, engine.encode(two), target)
    np.testing.assert_array_equal(found.first.low_res_logits, single.low_res_logits)


def _embedding(features: np.ndarray) -> Embedding:
    return Embedding(features.astype(np.float32), (512, 512), (1024, 1024), "img", "tiny-test")


def _features(regions: dict[tuple[int, int], float]) -> np.ndarray:
    """(256, 64, 64): background along channel 1; each 4x4-cell region at (row, col) of
    similarity s to the target (channel 0)."""
    feats = np.zeros((256, 64, 64), np.float32)
    feats[1] = 1.0
    for (r, c), s in regions.items():
        feats[:, r : r + 4, c : c + 4] = 0.0
        feats[0, r : r + 4, c : c + 4] = s
        feats[1, r : r + 4, c : c + 4] = np.sqrt(1 - s * s)
    return feats


@pytest.mark.parametrize("regions, fraction, expected", [
    ({(10, 10): 1.0}, DEFAULT_INSTANCE_FRACTION, 1),  # one object: one instance, even with "all"
    ({(10, 10): 1.0, (40, 44): 0.95}, DEFAULT_INSTANCE_FRACTION, 2),
    ({(10, 10): 1.0, (40, 44): 0.6}, DEFAULT_INSTANCE_FRACTION, 1),  # a weak look-alike is not kept
    ({(10, 10): 1.0, (40, 44): 0.6}, 0.5, 2),
])
def test_instances_are_kept_while_their_peak_reaches_the_fraction(tiny_engine, regions, fraction, expected):
    engine = disc_decoder(tiny_engine)  # radius 51 px: covers a 4x4-cell (32 px) region from any of its pixels
    t = np.zeros(256, np.float32)
    t[0] = 1.0
    target = Target("obj", "persam", t, t, None, 1, "tiny-test")
    found = find_instances(engine, _embedding(_features(regions)), target, max_instances=None, fraction=fraction)
    assert len(found) == expected
    # Each peak sits in its region (cell c covers photo pixels [8c, 8c + 8) here).
    for (x, y), (r, c) in zip(found.peaks, regions):
        assert 8 * c - 2 <= x <= 8 * (c + 4) + 2 and 8 * r - 2 <= y <= 8 * (r + 4) + 2


def test_propagate_keeps_the_single_path_and_carries_instances(tiny_engine, tmp_path, rgb_image):
    from PIL import Image

    path = tmp_path / "two.png"
    Image.fromarray(np.ascontiguousarray(np.concatenate([rgb_image, rgb_image], axis=1))).save(path)
    yy, xx = np.mgrid[0:300, 0:400]
    target = persam.fit_target(tiny_engine, [(tiny_engine.encode(rgb_image),
                                              (xx - 250) ** 2 + (yy - 140) ** 2 < 60**2)], name="disc")
    one = next(propagate(tiny_engine, [target], [path]))
    assert isinstance(one.instances["disc"], InstancesResult) and len(one.instances["disc"]) == 1
    assert one.instances["disc"].first is one.results["disc"]
    disc_decoder(tiny_engine)
    two = next(propagate(tiny_engine, [target], [path], instances=2))
    found = two.instances["disc"]
    assert len(found) == 2 and two.results["disc"] is found.first
    assert sorted(x >= 400 for x, _ in found.peaks) == [False, True]
    np.testing.assert_array_equal(found.mask(), found.instances[0].mask() | found.instances[1].mask())
