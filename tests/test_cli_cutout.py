"""``persam-studio cutout``: transparent cutouts, new backgrounds, JPEG/PNG, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from persam_studio.cli import main

RED, GREEN = (210, 40, 35), (40, 150, 60)


@pytest.fixture()
def scene(tmp_path):
    """A red disc with a soft edge on green (240 x 320 PNG) and its hard mask."""
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - 120, xx - 160) - 70
    alpha = np.clip(0.5 - d / 6, 0, 1)[..., None]
    img = (alpha * RED + (1 - alpha) * GREEN + 0.5).astype(np.uint8)
    image = tmp_path / "photo.png"
    mask = tmp_path / "mask.png"
    Image.fromarray(img).save(image)
    Image.fromarray(((d < 0) * 255).astype(np.uint8)).save(mask)
    return image, mask, d


def _run(*args: str) -> int:
    return main(["cutout", *map(str, args)])


def test_png_without_background_is_a_transparent_cutout(scene, tmp_path, capsys):
    image, mask, d = scene
    out = tmp_path / "cut.png"
    assert _run(image, "--mask", mask, "-o", out) == 0
    rgba = np.asarray(Image.open(out))
    assert rgba.shape == (240, 320, 4)
    assert set(np.unique(rgba[:, :, 3])) == {0, 255}  # hard edges without --refine
    assert np.array_equal(rgba[:, :, 3] == 255, d < 0)
    assert "RGBA cutout" in capsys.readouterr().out


def test_refine_gives_soft_edges_without_the_green(scene, tmp_path):
    image, mask, d = scene
    out = tmp_path / "soft.png"
    assert _run(image, "--mask", mask, "--refine", "-o", out) == 0
    rgba = np.asarray(Image.open(out)).astype(float)
    soft = (rgba[:, :, 3] > 25) & (rgba[:, :, 3] < 230)
    assert soft.sum() > 500
    original = np.asarray(Image.open(image)).astype(float)
    assert rgba[soft][:, 1].mean() < original[soft][:, 1].mean() - 30  # old green removed


def test_jpeg_without_background_goes_on_white(scene, tmp_path, capsys):
    image, mask, d = scene
    out = tmp_path / "cut.jpg"
    assert _run(image, "--mask", mask, "-o", out) == 0
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        rgb = np.asarray(im).astype(int)
    assert (rgb[d > 10] > 245).all()
    assert np.abs(rgb[d < -10] - RED).max() < 12
    assert "white" in capsys.readouterr().out


@pytest.mark.parametrize("spec, colour", [("#0000ff", (0, 0, 255)), ("black", (0, 0, 0)), ("255,255,0", (255, 255, 0))])
def test_colour_background(scene, tmp_path, spec, colour):
    image, mask, d = scene
    out = tmp_path / "on.png"
    assert _run(image, "--mask", mask, "--refine", "--background", spec, "-o", out) == 0
    with Image.open(out) as im:
        assert im.mode == "RGB"
        rgb = np.asarray(im).astype(int)
    assert np.abs(rgb[d > 10] - colour).max() <= 1
    assert np.abs(rgb[d < -10] - RED).max() <= 2


def test_picture_background_of_another_aspect_covers_the_frame(scene, tmp_path):
    image, mask, d = scene
    pic = np.zeros((100, 400, 3), np.uint8)  # 4:1, frame is 4:3
    pic[:, :200] = (255, 255, 0)
    pic[:, 200:] = (0, 255, 255)
    bg = tmp_path / "bg.png"
    Image.fromarray(pic).save(bg)
    out = tmp_path / "on.jpg"
    assert _run(image, "--mask", mask, "--background", bg, "-o", out) == 0
    rgb = np.asarray(Image.open(out)).astype(int)
    assert rgb.shape == (240, 320, 3)
    # Height fills (x2.4), the centre 320 of 960 columns: the colour border stays in the middle.
    assert np.abs(rgb[5, 5] - (255, 255, 0)).max() < 12
    assert np.abs(rgb[5, -5] - (0, 255, 255)).max() < 12
    assert np.abs(rgb[120, 160] - RED).max() < 12  # the object itself


def test_blur_background(scene, tmp_path):
    image, mask, d = scene
    out = tmp_path / "blur.png"
    assert _run(image, "--mask", mask, "--refine", "--background", "blur", "-o", out) == 0
    rgb = np.asarray(Image.open(out)).astype(int)
    # The background was green everywhere; without the object smeared into it, it stays green.
    assert np.abs(rgb[d > 15] - GREEN).max() <= 8


def test_mask_of_the_wrong_size_is_one_line(scene, tmp_path, capsys):
    image, _, _ = scene
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
    out = tmp_path / "x.png"
    assert _run(image, "--mask", small, "-o", out) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "10x10" in err and "320x240" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--background", "mauve-ish"], "not a colour"),
        (["--background", "nope.jpg"], "not a colour"),
    ],
)
def test_bad_background_is_a_usage_error(scene, tmp_path, capsys, extra, words):
    image, mask, _ = scene
    with pytest.raises(SystemExit) as exc:  # a typo in an option: exit 2, with usage
        _run(image, "--mask", mask, *extra, "-o", tmp_path / "x.png")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_unsupported_output_and_missing_image_are_one_line(scene, tmp_path, capsys):
    image, mask, _ = scene
    assert _run(image, "--mask", mask, "--refine", "-o", tmp_path / "x.bmp") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unsupported output format" in err
    assert _run(tmp_path / "missing.jpg", "--mask", mask, "-o", tmp_path / "x.png") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.jpg" in err


def test_refuses_to_overwrite_the_image(scene, capsys):
    image, mask, _ = scene
    before = image.read_bytes()
    assert _run(image, "--mask", mask, "--background", "white", "-o", image) == 1
    assert image.read_bytes() == before
    assert "input" in capsys.readouterr().err


def test_runs_as_a_program(scene, tmp_path):
    image, mask, _ = scene
    out = tmp_path / "p.jpg"
    res = subprocess.run(
        [sys.executable, "-m", "persam_studio", "cutout", str(image), "--mask", str(mask),
         "--refine", "--background", "#ffffff", "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert out.exists() and res.stdout.startswith(f"wrote {out}")
