"""Album propagation: one item per image, each image encoded at most once, errors per image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from persam_studio.core.personalize import persam
from persam_studio.core.segment.cache import EmbeddingCache
from persam_studio.core.segment.engine import Engine
from persam_studio.core.errors import Cancelled
from persam_studio.core.personalize.persam import PersamResult
from persam_studio.core.personalize.propagate import is_doubtful, propagate


@pytest.fixture()
def album(tmp_path, rgb_image):
    """Three readable photos of different sizes and one zero-byte .jpg, in album order."""
    folder = tmp_path / "album"
    folder.mkdir()
    paths = []
    for i, (dy, dx, size) in enumerate([(0, 0, None), (30, -60, (200, 150)), (-20, 40, None)]):
        im = Image.fromarray(np.ascontiguousarray(np.roll(rgb_image, (dy, dx), axis=(0, 1))))
        if size:
            im = im.resize(size)
        p = folder / f"img{i}.png"
        im.save(p)
        paths.append(p)
    broken = folder / "broken.jpg"
    broken.write_bytes(b"")
    paths.insert(2, broken)
    return paths


def _disc(h=300, w=400, cx=250, cy=140, r=60):
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r * r


def test_propagate_encodes_once_and_reports_errors_per_image(tiny_sam, tmp_path, album, rgb_image):
    engine = Engine(tiny_sam, "tiny-test", EmbeddingCache(tmp_path / "cache"))
    target = persam.fit_target(engine, [(engine.encode(rgb_image), _disc())], name="disc")
    assert engine.encode_count == 1

    items = list(propagate(engine, [target], album))
    assert [i.path for i in items] == album
    assert [i.index for i in items] == [0, 1, 2, 3] and {i.total for i in items} == {4}
    bad = items[2]
    assert not bad.ok and bad.error and "broken.jpg" in bad.error and "\n" not in bad.error
    assert bad.results == {"disc": bad.error} and bad.pixels is None and not bad.encoded
    good = [items[0], items[1], items[3]]
    assert all(i.ok and isinstance(i.results["disc"], PersamResult) for i in good)
    # img0 is the reference image itself: already in the cache.
    assert [i.encoded for i in good] == [False, True, True]
    assert engine.encode_count == 3
    assert items[1].results["disc"].mask().shape == (150, 200)
    assert items[1].pixels.shape == (150, 200, 3)

    # A new reference over the cached album: decoder only.
    other = persam.fit_target(engine, [(engine.encode(rgb_image), _disc(cx=100, cy=200, r=40))], name="corner")
    again = list(propagate(engine, [other, target], album))
    assert engine.encode_count == 3
    assert not any(i.encoded for i in again)
    assert list(again[0].results) == ["corner", "disc"]
    np.testing.assert_array_equal(again[3].results["disc"].low_res_logits, items[3].results["disc"].low_res_logits)
    assert not np.array_equal(again[3].results["corner"].low_res_logits, again[3].results["disc"].low_res_logits)


def test_cancel_between_images(tiny_engine, album, rgb_image):
    target = persam.fit_target(tiny_engine, [(tiny_engine.encode(rgb_image), _disc())])
    seen = []
    gen = propagate(tiny_engine, [target], album, should_cancel=lambda: len(seen) >= 1)
    with pytest.raises(Cancelled):
        for item in gen:
            seen.append(item)
    assert len(seen) == 1


def test_duplicate_target_names_are_refused(tiny_engine, album, rgb_image):
    target = persam.fit_target(tiny_engine, [(tiny_engine.encode(rgb_image), _disc())])
    with pytest.raises(ValueError):
        next(propagate(tiny_engine, [target, target], album))


def test_is_doubtful():
    def result(conf, empty=False):
        return PersamResult(np.zeros((1, 256, 256), np.float32), 0.9, 0.8, conf, np.zeros((1, 2)),
                            np.ones(1, int), None, 3, empty, (10, 10), (1024, 1024))

    assert not is_doubtful(result(0.8), 0.6)
    assert is_doubtful(result(0.5), 0.6)
    assert is_doubtful(result(0.9, empty=True), 0.6)
    assert is_doubtful("img.jpg: not an image", 0.6)
