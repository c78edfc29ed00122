"""Loading images: EXIF orientation, pixel modes, damaged files, huge files."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from persam_studio.core.errors import ImageReadError, MaskError
from persam_studio.core.io.imageio import MAX_PIXELS, list_images, load_image, load_mask
from tests.conftest import shared_data

ORIENTATION = 0x0112

# What a viewer shows for a stored array with EXIF Orientation n (the EXIF
# definition, written with numpy so it does not lean on PIL's own table).
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),  # stored on its side: turn clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


def pattern(h: int = 48, w: int = 64) -> np.ndarray:
    """Asymmetric RGB test card: 16x16 flat blocks, each a different colour."""
    yy, xx = np.mgrid[0:h, 0:w]
    by, bx = yy // 16, xx // 16
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (bx * 60 + 20).astype(np.uint8)
    img[..., 1] = (by * 80 + 10).astype(np.uint8)
    img[..., 2] = ((bx + by) % 2 * 200 + 30).astype(np.uint8)
    return img


def save_with_orientation(path: Path, pixels: np.ndarray, orientation: int, **kw) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **kw)


def assert_one_line_error(excinfo, path: Path) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert path.name in msg
    return msg


# -- orientation -------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_png_orientation_matches_displayed_image(tmp_path, orientation):
    raw = pattern()
    path = tmp_path / f"o{orientation}.png"
    save_with_orientation(path, raw, orientation)

    loaded = load_image(path)

    expected = DISPLAYED[orientation](raw)
    assert loaded.size == expected.shape[:2]
    np.testing.assert_array_equal(loaded.pixels, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation_matches_displayed_image(tmp_path, orientation):
    raw = pattern()
    path = tmp_path / f"o{orientation}.jpg"
    save_with_orientation(path, raw, orientation, quality=95, subsampling=0)

    loaded = load_image(path)

    expected = DISPLAYED[orientation](raw).astype(int)
    assert loaded.size == expected.shape[:2]
    assert np.abs(loaded.pixels.astype(int) - expected).max() <= 8


@pytest.mark.parametrize("ext", ["webp", "tiff"])
def test_webp_and_tiff_orientation(tmp_path, ext):
    raw = pattern()
    path = tmp_path / f"o6.{ext}"
    if ext == "tiff":
        Image.fromarray(raw).save(path, tiffinfo={ORIENTATION: 6})
    else:
        save_with_orientation(path, raw, 6, lossless=True)
    np.testing.assert_array_equal(load_image(path).pixels, np.rot90(raw, k=-1))


def test_real_camera_photo_loads_as_displayed(tmp_path):
    """A real Canon/Lightroom JPEG (EXIF says Orientation 1), then the same
    bytes with the orientation entry of its EXIF block patched to 6."""
    src = shared_data("photos", "julia+trotti_17.jpg")
    with Image.open(src) as im:
        plain = np.asarray(im.convert("RGB"))

    loaded = load_image(src)
    assert loaded.size == (1667, 2500)
    np.testing.assert_array_equal(loaded.pixels, plain)

    data = src.read_bytes()
    entry = struct.pack("<HHIHH", ORIENTATION, 3, 1, 1, 0)  # the file is little-endian EXIF
    assert data.count(entry) == 1
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(data.replace(entry, struct.pack("<HHIHH", ORIENTATION, 3, 1, 6, 0)))

    turned = load_image(rotated)
    assert turned.size == (2500, 1667)
    np.testing.assert_array_equal(turned.pixels, np.rot90(plain, k=-1))


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_block_still_loads(tmp_path):
    broken = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\xff\xff"
    Image.fromarray(pattern()).save(tmp_path / "x.jpg", exif=broken, quality=95)
    assert load_image(tmp_path / "x.jpg").size == (48, 64)


# -- pixel modes ---------------------------------------------------------------


def _grey_ramp(h=8, w=32) -> np.ndarray:
    return np.tile((np.arange(w) * 8).astype(np.uint8), (h, 1))


def test_grey_l(tmp_path):
    g = _grey_ramp()
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (8, 32, 3)
    np.testing.assert_array_equal(out.pixels, np.repeat(g[..., None], 3, axis=2))
    assert out.alpha is None


def test_grey_with_alpha_la(tmp_path):
    g = _grey_ramp()
    a = np.full(g.shape, 255, np.uint8)
    a[:, :5] = 0
    Image.merge("LA", [Image.fromarray(g), Image.fromarray(a)]).save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    np.testing.assert_array_equal(out.pixels[..., 1], g)
    np.testing.assert_array_equal(out.alpha, a)


def test_palette_without_and_with_transparency(tmp_path):
    idx = np.zeros((6, 10), np.uint8)
    idx[:, 5:] = 1
    im = Image.fromarray(idx, "P")
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert out.alpha is None
    assert tuple(out.pixels[0, 0]) == (10, 20, 30)
    assert tuple(out.pixels[0, 9]) == (200, 100, 50)

    im.save(tmp_path / "pt.png", transparency=0)
    out = load_image(tmp_path / "pt.png")
    assert out.pixels.shape == (6, 10, 3)
    assert out.alpha is not None
    assert (out.alpha[:, :5] == 0).all() and (out.alpha[:, 5:] == 255).all()
    assert tuple(out.pixels[0, 9]) == (200, 100, 50)


def test_rgba(tmp_path):
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 0] = 250
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.pixels.shape == (5, 7, 3)
    assert (out.pixels[..., 0] == 250).all()
    assert (out.alpha == 128).all()
    assert not out.pixels.flags.writeable  # shared, immutable result


def test_opaque_rgba_reports_no_alpha(tmp_path):
    rgba = np.full((4, 4, 4), 255, np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "o.png")
    assert load_image(tmp_path / "o.png").alpha is None


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[..., 0] = 255  # full cyan
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=95)
    out = load_image(tmp_path / "c.jpg")
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (16, 16, 3)
    r, g, b = out.pixels[8, 8].astype(int)
    assert r < 20 and g > 235 and b > 235


def test_16bit_grey_png_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out.pixels[0, :, 0], [0, 1, 128, 255])


def test_32bit_int_and_float_tiff(tmp_path):
    Image.fromarray(np.array([[0, 65535]], np.int32), "I").save(tmp_path / "i.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "i.tif").pixels[0, :, 0], [0, 255])
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif").pixels[0, :, 0], [0, 128, 255])


def test_bilevel(tmp_path):
    bits = np.zeros((8, 8), bool)
    bits[:, 4:] = True
    Image.fromarray(bits).save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    assert (out.pixels[:, :4] == 0).all() and (out.pixels[:, 4:] == 255).all()


@pytest.mark.parametrize("ext,kw", [("webp", {"lossless": True}), ("tif", {}), ("bmp", {})])
def test_webp_tiff_bmp_exact(tmp_path, ext, kw):
    raw = pattern()
    Image.fromarray(raw).save(tmp_path / f"x.{ext}", **kw)
    np.testing.assert_array_equal(load_image(tmp_path / f"x.{ext}").pixels, raw)


def test_48bit_rgb_tiff(tmp_path):
    """Uncompressed 16-bit-per-channel RGB TIFF, written by hand."""
    h, w = 3, 4
    data = (np.arange(h * w * 3, dtype="<u2").reshape(h, w, 3) * 1500).astype("<u2")
    entries = [(256, w), (257, h), (258, None), (259, 1), (262, 2), (273, None),
               (277, 3), (278, h), (279, data.nbytes), (284, 1)]
    ifd_end = 8 + 2 + 12 * len(entries) + 4
    bps_at, strip_at = ifd_end, ifd_end + 6
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(entries)))
    for tag, value in entries:
        if tag == 258:
            out += struct.pack("<HHII", tag, 3, 3, bps_at)
        elif tag in (273, 279):
            out += struct.pack("<HHII", tag, 4, 1, strip_at if tag == 273 else value)
        else:
            out += struct.pack("<HHIHH", tag, 3, 1, value, 0)
    out += struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + data.tobytes()
    (tmp_path / "rgb48.tif").write_bytes(bytes(out))
    loaded = load_image(tmp_path / "rgb48.tif")
    np.testing.assert_array_equal(loaded.pixels, (data >> 8).astype(np.uint8))


# -- damaged and foreign files -------------------------------------------------


def _noisy_jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _noisy_png_bytes() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("empty.jpg", b"", "empty file (0 bytes)"),
        ("notes.jpg", b"these are my holiday notes\n" * 20, "not an image"),
        ("cut.jpg", _noisy_jpeg_bytes()[: len(_noisy_jpeg_bytes()) // 2], "truncated or corrupt"),
        ("cut.png", _noisy_png_bytes()[: len(_noisy_png_bytes()) // 2], "truncated or corrupt"),
    ],
)
def test_bad_files_raise_one_line(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as excinfo:
        load_image(path)
    assert problem in assert_one_line_error(excinfo, path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="not found") as excinfo:
        load_image(tmp_path / "gone.jpg")
    assert_one_line_error(excinfo, tmp_path / "gone.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        load_image(tmp_path)


def test_known_but_unsupported_format_is_named(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "anim.gif")
    with pytest.raises(ImageReadError, match="unsupported image format GIF"):
        load_image(tmp_path / "anim.gif")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_permission_denied(tmp_path):
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(ImageReadError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


# -- size limits ---------------------------------------------------------------


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG that claims w x h 8-bit grey pixels and holds almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_50_megapixel_photo_loads(tmp_path):
    w, h = 8660, 5773  # 50.0 MP, a high-end full-frame camera
    im = Image.new("RGB", (w, h), (40, 90, 160))
    im.paste((250, 250, 0), (0, 0, 100, 50))  # marks the top-left corner
    im.save(tmp_path / "big.jpg", quality=80)
    del im
    loaded = load_image(tmp_path / "big.jpg")
    assert loaded.size == (h, w)
    assert np.abs(loaded.pixels[h // 2, w // 2].astype(int) - (40, 90, 160)).max() <= 4
    assert loaded.pixels[10, 10, 2] < 60  # the yellow corner is where it was


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_large_images_decode_in_strips_without_seams(tmp_path, monkeypatch, mode):
    """Big images are converted a few rows at a time; shrink the strip so a
    small image takes that path, with a row count that does not divide."""
    import persam_studio.core.io.imageio as imageio

    monkeypatch.setattr(imageio, "_STRIP_PIXELS", 64 * 5)
    raw = pattern(h=47)
    im = Image.fromarray(raw)
    if mode == "RGBA":
        im.putalpha(Image.fromarray((np.arange(47 * 64) % 256).astype(np.uint8).reshape(47, 64)))
    elif mode == "P":
        im = im.quantize(16)
        im.info["transparency"] = 0
    im.save(tmp_path / "x.png")
    expected = np.asarray(Image.open(tmp_path / "x.png").convert("RGBA"))

    out = load_image(tmp_path / "x.png")

    np.testing.assert_array_equal(out.pixels, expected[..., :3])
    if mode == "RGB":
        assert out.alpha is None
    else:
        np.testing.assert_array_equal(out.alpha, expected[..., 3])


def test_absurd_size_refused_in_one_line(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageReadError) as excinfo:
        load_image(path)
    msg = assert_one_line_error(excinfo, path)
    assert "image too large" in msg and "limit 250 MP" in msg


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_just_above_limit_names_dimensions(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(20_000, 15_000))  # 300 MP
    with pytest.raises(ImageReadError, match=r"image too large \(20000 x 15000 pixels\)"):
        load_image(path)


def test_200_megapixel_header_passes_the_size_guard(tmp_path):
    """PIL alone refuses 200 MP; we accept it, so this header-only file gets
    as far as decoding and fails there, as a truncated file."""
    assert 20_000 * 10_000 < MAX_PIXELS
    path = tmp_path / "tall.png"
    path.write_bytes(_png_header_only(20_000, 10_000))
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        load_image(path)


# -- masks ---------------------------------------------------------------------


def _disc(h: int = 30, w: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - 25) ** 2 + (yy - 12) ** 2 < 8**2


def test_mask_grey_0_255(tmp_path):
    m = _disc()
    Image.fromarray(m.astype(np.uint8) * 255, "L").save(tmp_path / "m.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png", size=m.shape), m)


def test_mask_grey_antialiased_thresholds_at_half(tmp_path):
    grey = np.array([[0, 60, 127, 128, 200, 255]], np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "soft.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "soft.png")[0], [0, 0, 0, 1, 1, 1])


def test_mask_grey_label_image_0_1(tmp_path):
    m = _disc()
    Image.fromarray(m.astype(np.uint8), "L").save(tmp_path / "labels.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "labels.png"), m)


def test_mask_16bit_grey(tmp_path):
    m = _disc()
    Image.fromarray(m.astype(np.uint16) * 65535).save(tmp_path / "m16.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m16.png"), m)


def test_mask_perseg_palette_example():
    path = shared_data("perseg-examples", "cat_00.png")
    with Image.open(path) as im:
        assert im.mode == "P"
        index = np.asarray(im)
        colour_of_1 = tuple(im.getpalette()[3:6])
    assert colour_of_1 == (128, 0, 0)
    with Image.open(shared_data("perseg-examples", "cat_00.jpg")) as photo:
        size = photo.size[::-1]
    mask = load_mask(path, size=size)
    np.testing.assert_array_equal(mask, index == 1)
    assert 0.05 < mask.mean() < 0.9


def test_mask_palette_object_is_any_non_black_colour(tmp_path):
    idx = np.zeros((10, 10), np.uint8)
    idx[2:5, 2:5] = 3  # a colour far down the palette
    idx[6:8, 6:8] = 1  # black at a non-zero index: still background
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 0, 0] * 2 + [9, 9, 9] + [128, 0, 0] + [0] * 756)
    im.save(tmp_path / "p.png")
    expected = np.zeros((10, 10), bool)
    expected[2:5, 2:5] = True
    np.testing.assert_array_equal(load_mask(tmp_path / "p.png"), expected)


def test_mask_rgb_any_non_zero_channel(tmp_path):
    m = _disc()
    rgb = np.zeros((*m.shape, 3), np.uint8)
    rgb[m] = (0, 0, 64)  # a dark label colour
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "rgb.png"), m)


def test_mask_rgba_alpha_carries_the_mask(tmp_path):
    m = _disc()
    rgba = np.full((*m.shape, 4), 255, np.uint8)  # white everywhere
    rgba[..., 3] = np.where(m, 255, 0)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "cutout.png"), m)


def test_mask_opaque_rgba_uses_colours(tmp_path):
    m = _disc()
    rgba = np.zeros((*m.shape, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[m, 0] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "opaque.png"), m)


def test_mask_jpeg_ignores_compression_noise(tmp_path):
    m = np.zeros((64, 64), bool)
    m[16:48, 16:48] = True
    Image.fromarray(m.astype(np.uint8) * 255).convert("RGB").save(tmp_path / "m.jpg", quality=70)
    loaded = load_mask(tmp_path / "m.jpg")
    assert (loaded != m).sum() < 20  # a few edge pixels at most, not a halo


def test_mask_follows_exif_orientation(tmp_path):
    m = _disc()
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(m.astype(np.uint8) * 255, "L").save(tmp_path / "m.png", exif=exif)
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), np.rot90(m, k=-1))


def test_mask_wrong_size_names_file_and_both_sizes(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(_disc().astype(np.uint8) * 255, "L").save(path)  # 40x30
    with pytest.raises(MaskError) as excinfo:
        load_mask(path, size=(30, 50))
    msg = assert_one_line_error(excinfo, path)
    assert "mask is 40x30 but the image is 50x30" in msg
    with pytest.raises(MaskError, match="rotated"):
        load_mask(path, size=(40, 30))


def test_mask_empty(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (8, 6)).save(path)
    with pytest.raises(MaskError, match="empty") as excinfo:
        load_mask(path)
    assert_one_line_error(excinfo, path)
    assert not load_mask(path, allow_empty=True).any()
    assert load_mask(path, allow_empty=True).shape == (6, 8)


def test_mask_unreadable_is_a_mask_error(tmp_path):
    path = tmp_path / "m.png"
    path.write_text("not a png")
    with pytest.raises(MaskError, match="not an image") as excinfo:
        load_mask(path)
    assert_one_line_error(excinfo, path)
    with pytest.raises(MaskError, match="not found"):
        load_mask(tmp_path / "nope.png")


# -- listing -------------------------------------------------------------------


def _touch_images(root: Path, names: list[str]) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")  # listing never decodes


def test_list_images_natural_order_and_filtering(tmp_path):
    _touch_images(tmp_path, ["img10.jpg", "img2.jpg", "img1.png", "IMG3.JPEG", "b.webp",
                             "notes.txt", ".hidden.jpg", "._img4.jpg", "scan.TIFF",
                             ".persam/cache.png", "sub/a.png"])
    names = [p.name for p in list_images([tmp_path])]
    assert names == ["b.webp", "img1.png", "img2.jpg", "IMG3.JPEG", "img10.jpg", "scan.TIFF"]


def test_list_images_recursive_skips_hidden_folders(tmp_path):
    _touch_images(tmp_path, ["z.jpg", "day2/b.jpg", "day10/a.jpg", "day2/.thumbs/t.jpg",
                             ".persam/masks/m.png", "day2/deeper/c.png"])
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images([tmp_path], recursive=True)]
    assert rel == ["day2/b.jpg", "day2/deeper/c.png", "day10/a.jpg", "z.jpg"]


def test_list_images_files_as_given_no_duplicates(tmp_path):
    _touch_images(tmp_path, ["a.jpg", "b.jpg", "odd.raw", "sub/c.jpg"])
    out = list_images([tmp_path / "b.jpg", tmp_path, tmp_path / "odd.raw", tmp_path / "a.jpg",
                       str(tmp_path / "sub" / ".." / "b.jpg")])
    assert [p.name for p in out] == ["b.jpg", "a.jpg", "odd.raw"]


def test_list_images_missing_input(tmp_path):
    with pytest.raises(ImageReadError, match="not found") as excinfo:
        list_images([tmp_path / "lost-folder"])
    assert_one_line_error(excinfo, tmp_path / "lost-folder")
