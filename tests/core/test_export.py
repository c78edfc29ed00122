"""Writing masks, cutouts and images: formats, atomicity, input protection."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from persam_studio.core.errors import OutputError
from persam_studio.core.io.export import save_cutout_png, save_image, save_mask_png
from persam_studio.core.io.imageio import load_image, load_mask


@pytest.fixture()
def mask(rgb_image) -> np.ndarray:
    h, w = rgb_image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - 250) ** 2 + (yy - 140) ** 2 < 60**2


def _one_line(excinfo, path: Path) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and path.name in msg
    return msg


# -- masks ---------------------------------------------------------------------


def test_mask_png_is_grey_0_255_at_image_size(tmp_path, mask):
    out = save_mask_png(tmp_path / "m.png", mask)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (mask.shape[1], mask.shape[0])
        values = np.asarray(im)
    assert set(np.unique(values)) == {0, 255}
    np.testing.assert_array_equal(values == 255, mask)
    np.testing.assert_array_equal(load_mask(out, size=mask.shape), mask)


@pytest.mark.parametrize("scale", [1, 255])
def test_mask_png_accepts_uint8_0_1_and_0_255(tmp_path, mask, scale):
    out = save_mask_png(tmp_path / "m.png", mask.astype(np.uint8) * scale)
    np.testing.assert_array_equal(np.asarray(Image.open(out)) == 255, mask)


def test_mask_png_creates_parent_folders(tmp_path, mask):
    out = save_mask_png(tmp_path / "a" / "b" / "m.png", mask)
    assert out.is_file()


# -- cutouts -------------------------------------------------------------------


def test_cutout_is_rgba_with_the_mask_as_alpha(tmp_path, rgb_image, mask):
    out = save_cutout_png(tmp_path / "c.png", rgb_image, mask)
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (400, 300)
        rgba = np.asarray(im)
    np.testing.assert_array_equal(rgba[..., 3], np.where(mask, 255, 0))
    np.testing.assert_array_equal(rgba[mask, :3], rgb_image[mask])
    # The hidden background is not shipped inside the cutout.
    assert (rgba[~mask, :3] == 0).all()


def test_cutout_soft_alpha(tmp_path, rgb_image):
    alpha = np.zeros(rgb_image.shape[:2], np.float32)
    alpha[:, 100:] = 0.5
    alpha[:, 200:] = 1.0
    out = save_cutout_png(tmp_path / "c.png", rgb_image, alpha)
    a = np.asarray(Image.open(out))[..., 3]
    assert (a[:, :100] == 0).all() and (a[:, 100:200] == 128).all() and (a[:, 200:] == 255).all()


def test_cutout_size_mismatch(tmp_path, rgb_image):
    path = tmp_path / "c.png"
    with pytest.raises(OutputError) as excinfo:
        save_cutout_png(path, rgb_image, np.ones((300, 401), bool))
    assert "mask is 401x300 but the image is 400x300" in _one_line(excinfo, path)
    assert not path.exists()


# -- any image -----------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"])
def test_save_image_formats_round_trip(tmp_path, rgb_image, ext):
    out = save_image(tmp_path / f"x{ext}", rgb_image)
    error = np.abs(load_image(out).pixels.astype(int) - rgb_image)
    if ext in (".png", ".tif", ".tiff"):
        assert error.max() == 0
    else:  # lossy: close everywhere but at the disc's sharp colour edge
        assert error.mean() < 3 and np.percentile(error, 99) < 25


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_save_image_keeps_alpha(tmp_path, rgb_image, mask, ext):
    rgba = np.dstack([rgb_image, np.where(mask, 255, 0).astype(np.uint8)])
    out = save_image(tmp_path / f"x{ext}", rgba, quality=100)
    assert (load_image(out).alpha > 127).sum() == mask.sum()


def test_save_image_refuses_alpha_in_jpeg_and_unknown_formats(tmp_path, rgb_image):
    rgba = np.dstack([rgb_image, np.full(rgb_image.shape[:2], 255, np.uint8)])
    with pytest.raises(OutputError, match="JPEG cannot store transparency"):
        save_image(tmp_path / "x.jpg", rgba)
    with pytest.raises(OutputError, match="unsupported output format '.gif'") as excinfo:
        save_image(tmp_path / "x.gif", rgb_image)
    _one_line(excinfo, tmp_path / "x.gif")
    assert list(tmp_path.iterdir()) == []


# -- never overwrite an input ----------------------------------------------------


def _input_photo(tmp_path: Path, rgb_image: np.ndarray) -> tuple[Path, bytes]:
    src = tmp_path / "album" / "photo.png"
    src.parent.mkdir()
    Image.fromarray(rgb_image).save(src)
    return src, src.read_bytes()


def test_refuses_to_overwrite_an_input(tmp_path, rgb_image, mask):
    src, before = _input_photo(tmp_path, rgb_image)
    other_spelling = tmp_path / "album" / ".." / "album" / "photo.png"
    for attempt in (
        lambda: save_mask_png(src, mask, inputs=[src]),
        lambda: save_mask_png(other_spelling, mask, inputs=[str(src)]),
        lambda: save_cutout_png(src, rgb_image, mask, inputs=[other_spelling]),
        lambda: save_image(src, rgb_image, inputs=[src]),
    ):
        with pytest.raises(OutputError, match="refusing to overwrite an input") as excinfo:
            attempt()
        _one_line(excinfo, src)
    assert src.read_bytes() == before
    assert sorted(p.name for p in src.parent.iterdir()) == ["photo.png"]


def test_refuses_links_to_an_input(tmp_path, rgb_image, mask):
    src, before = _input_photo(tmp_path, rgb_image)
    hard = tmp_path / "hard.png"
    os.link(src, hard)
    soft = tmp_path / "soft.png"
    soft.symlink_to(src)
    for dest in (hard, soft):
        with pytest.raises(OutputError, match="refusing to overwrite"):
            save_mask_png(dest, mask, inputs=[src])
    assert src.read_bytes() == before


def test_other_files_beside_inputs_are_fine(tmp_path, rgb_image, mask):
    src, before = _input_photo(tmp_path, rgb_image)
    out = save_mask_png(src.with_name("photo_mask.png"), mask, inputs=[src])
    assert out.is_file() and src.read_bytes() == before


# -- failed writes ---------------------------------------------------------------


def test_failed_write_leaves_no_partial_file_and_old_output_intact(
    tmp_path, monkeypatch, rgb_image, mask
):
    dest = tmp_path / "out" / "cutout.png"
    save_cutout_png(dest, rgb_image, mask)
    old = dest.read_bytes()

    def disk_full(im, fp, filename, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n" + b"\0" * 1000)  # half a file, then the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(Image.SAVE, "PNG", disk_full)
    with pytest.raises(OutputError, match="No space left on device") as excinfo:
        save_cutout_png(dest, rgb_image, ~mask)
    _one_line(excinfo, dest)
    assert dest.read_bytes() == old
    assert [p.name for p in dest.parent.iterdir()] == ["cutout.png"]

    with pytest.raises(OutputError):
        save_mask_png(tmp_path / "out" / "new.png", mask)
    assert [p.name for p in dest.parent.iterdir()] == ["cutout.png"]


def test_unwritable_destination_is_one_line(tmp_path, mask):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    dest = blocker / "m.png"
    with pytest.raises(OutputError, match="cannot write") as excinfo:
        save_mask_png(dest, mask)
    _one_line(excinfo, dest)
