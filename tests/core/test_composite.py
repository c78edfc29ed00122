"""Cutouts and backgrounds: colour parsing, blending, cover scaling, blur."""

from __future__ import annotations

import numpy as np
import pytest

from persam_studio.core.edges.composite import blurred_background, composite, cover, cutout_rgba, parse_colour


@pytest.mark.parametrize(
    "text, rgb",
    [
        ("#ff8000", (255, 128, 0)),
        ("#FF8000", (255, 128, 0)),
        ("#f80", (255, 136, 0)),
        ("white", (255, 255, 255)),
        (" Black ", (0, 0, 0)),
        ("grey", (128, 128, 128)),
        ("10,20,30", (10, 20, 30)),
        ("10, 20, 255", (10, 20, 255)),
    ],
)
def test_parse_colour(text, rgb):
    assert parse_colour(text) == rgb


@pytest.mark.parametrize("text", ["", "#12345", "#gggggg", "1,2", "1,2,300", "-1,2,3", "mauve-ish", "1.5,2,3"])
def test_parse_colour_rejects_with_one_line(text):
    with pytest.raises(ValueError) as info:
        parse_colour(text)
    assert "\n" not in str(info.value)
    assert "#rrggbb" in str(info.value)


def _object(h=60, w=80):
    fg = np.zeros((h, w, 3), np.uint8)
    fg[:] = (200, 100, 50)
    alpha = np.zeros((h, w), np.float32)
    alpha[:, : w // 2] = 1.0
    alpha[:, w // 2] = 0.5
    return fg, alpha


def test_solid_background_blends_with_alpha():
    fg, alpha = _object()
    out = composite(fg, alpha, "#0000ff")
    assert out.dtype == np.uint8 and out.shape == fg.shape
    assert tuple(out[5, 0]) == (200, 100, 50)  # opaque: the object
    assert tuple(out[5, -1]) == (0, 0, 255)  # transparent: the colour
    assert tuple(out[5, 40]) == (100, 50, 153)  # half: (fg + bg) / 2, rounded once
    assert np.array_equal(composite(fg, alpha, (0, 0, 255)), out)
    assert np.array_equal(composite(fg, alpha, "0,0,255"), out)


def test_alpha_may_be_bool_or_uint8():
    fg, alpha = _object()
    hard = alpha >= 1.0
    assert np.array_equal(composite(fg, hard, "white"), composite(fg, hard.astype(np.float32), "white"))
    a8 = np.round(alpha * 255).astype(np.uint8)
    assert np.abs(composite(fg, a8, "white").astype(int) - composite(fg, alpha, "white")).max() <= 1


def test_background_image_of_another_aspect_ratio_covers_without_distortion():
    # A wide picture (100 x 400) with four vertical colour bands, on a tall 300 x 200 frame.
    pic = np.zeros((100, 400, 3), np.uint8)
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]):
        pic[:, i * 100 : (i + 1) * 100] = colour
    frame = cover(pic, (300, 200))
    assert frame.shape == (300, 200, 3)
    # Scaled x3 to 300 x 1200 (height fills the frame), then the centre 200 columns:
    # x 500..700 of the scaled picture = 166.7..233.3 of the original, green then blue.
    assert tuple(frame[150, 5]) == (0, 255, 0)
    assert tuple(frame[150, -5]) == (0, 0, 255)
    edge = np.flatnonzero(frame[150, :, 2] > 128)[0]
    assert abs(edge - 100) <= 2  # the green/blue border sits in the middle: not stretched
    assert not (frame[:, :, 0] > 200).any()  # red and yellow were cropped away

    fg, alpha = _object(300, 200)
    out = composite(fg, alpha, pic)
    assert tuple(out[150, -5]) == (0, 0, 255)


def test_cover_enlarges_a_small_picture_to_fill():
    pic = np.full((10, 10, 3), 77, np.uint8)
    frame = cover(pic, (300, 500))
    assert frame.shape == (300, 500, 3) and (frame == 77).all()


def _busy_photo(h=300, w=400):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    photo[:, :, 1] = np.maximum(photo[:, :, 1], 120)  # a green-ish, very detailed background
    return photo


def test_blur_background_is_strongly_blurred_and_keeps_its_colour():
    photo = _busy_photo()
    bg = blurred_background(photo)
    assert bg.shape == photo.shape and bg.dtype == np.uint8
    detail = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()  # noqa: E731
    assert detail(bg) < 0.02 * detail(photo)
    assert np.abs(bg.astype(float).mean((0, 1)) - photo.astype(float).mean((0, 1))).max() < 3


def test_blur_background_leaves_the_object_out():
    h, w = 300, 400
    photo = np.zeros((h, w, 3), np.uint8)
    photo[:] = (30, 160, 60)
    alpha = np.zeros((h, w), np.float32)
    alpha[100:200, 150:250] = 1.0
    photo[alpha > 0] = (230, 20, 20)
    with_object = blurred_background(photo)
    without = blurred_background(photo, alpha)
    ring = np.zeros((h, w), bool)
    ring[85:215, 135:265] = True
    ring &= alpha == 0  # just around the object
    assert with_object[ring][:, 0].mean() > 60  # the red object smeared into its surroundings
    assert np.abs(without[ring].astype(int) - (30, 160, 60)).max() <= 2


def test_composite_on_blur_uses_the_original_photo():
    photo = _busy_photo()
    fg, alpha = photo.copy(), np.zeros(photo.shape[:2], np.float32)
    alpha[100:200, 150:250] = 1.0
    fg[alpha == 0] = 0  # a foreground estimate knows nothing of the background
    out = composite(fg, alpha, "blur", original=photo)
    assert np.array_equal(out[alpha == 1], photo[alpha == 1])
    assert out[alpha == 0].mean() > 60  # the blurred photo, not the black of ``fg``


def test_cutout_rgba_hides_transparent_colours():
    fg, alpha = _object()
    rgba = cutout_rgba(fg, alpha)
    assert rgba.shape == (60, 80, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[0, 0]) == (200, 100, 50, 255)
    assert tuple(rgba[0, 40]) == (200, 100, 50, 128)
    assert tuple(rgba[0, -1]) == (0, 0, 0, 0)


def test_mismatched_alpha_is_an_error():
    fg, alpha = _object()
    with pytest.raises(ValueError, match="does not match"):
        composite(fg, alpha[:-1], "white")
    with pytest.raises(ValueError, match="not a colour"):
        composite(fg, alpha, "nope")
