"""`persam-studio segment` and `embed`: masks, cutouts, cache reuse, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from persam_studio.cli import main
from persam_studio.core.segment.cache import EmbeddingCache
from persam_studio.core.segment.engine import Engine


@pytest.fixture()
def photo(tmp_path, rgb_image) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(rgb_image).save(path)
    return path


def _segment(ckpt, image, out, *extra):
    return main(["segment", str(image), "--checkpoint", str(ckpt), "--point", "250,140",
                 "-o", str(out), *extra])


def test_segment_writes_the_engines_mask(tiny_ckpt, photo, tmp_path, tiny_sam, rgb_image, capsys):
    out, cut = tmp_path / "out" / "mask.png", tmp_path / "cut.png"
    assert _segment(tiny_ckpt, photo, out, "--cutout", str(cut), "--point", "40,250,0") == 0
    mask = np.asarray(Image.open(out))
    assert mask.shape == (300, 400) and set(np.unique(mask)) <= {0, 255}
    engine = Engine(tiny_sam, "direct", EmbeddingCache(tmp_path / "cache"))  # as the CLI: float16 cache
    res = engine.predict(engine.encode(rgb_image), np.array([[250, 140], [40, 250]]), np.array([1, 0]))
    assert np.array_equal(mask == 255, res.mask(res.best_index))
    rgba = np.asarray(Image.open(cut))
    assert rgba.shape == (300, 400, 4)
    assert np.array_equal(rgba[..., 3], mask)
    # Visible pixels are the photo's; hidden ones are blanked (smaller files).
    assert np.array_equal(rgba[..., :3][mask == 255], rgb_image[mask == 255])
    assert "wrote" in capsys.readouterr().out


def test_pick_chooses_a_candidate(tiny_ckpt, photo, tmp_path):
    masks = []
    for pick in "012":
        out = tmp_path / f"m{pick}.png"
        assert _segment(tiny_ckpt, photo, out, "--pick", pick) == 0
        masks.append(np.asarray(Image.open(out)))
    assert not (np.array_equal(masks[0], masks[1]) and np.array_equal(masks[1], masks[2]))


# `python -m persam_studio ...` that also says whether torchvision got imported.
_REPORTING = """import runpy, sys
sys.argv = ["persam-studio"] + sys.argv[1:]
try:
    runpy.run_module("persam_studio", run_name="__main__")
finally:
    print("torchvision imported:", "torchvision" in sys.modules)
"""


def test_second_process_uses_the_cache(tiny_ckpt, photo, tmp_path):
    env = dict(os.environ, PERSAM_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-c", _REPORTING, "segment", str(photo), "--checkpoint", str(tiny_ckpt),
           "--box", "180,70,320,210", "-o"]
    first = subprocess.run([*cmd, str(tmp_path / "a.png")], env=env, capture_output=True, text=True)
    second = subprocess.run([*cmd, str(tmp_path / "b.png")], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "embedding encoded" in first.stdout
    assert "embedding from cache" in second.stdout
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    # Neither encoding nor decoding imports torchvision (about 3 s of start-up):
    # the engine resizes with PIL as torchvision would (core/segment/resize.py).
    assert "torchvision imported: False" in first.stdout
    assert "torchvision imported: False" in second.stdout


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_image_is_one_line_exit_1(tiny_ckpt, tmp_path, capsys, content, photo):
    bad = tmp_path / "bad.jpg"
    if content is None:  # truncated real file
        data = (tmp_path / "x.jpg")
        Image.open(photo).convert("RGB").save(data, quality=95)
        bad.write_bytes(data.read_bytes()[: len(data.read_bytes()) // 2])
    else:
        bad.write_bytes(content)
    out = tmp_path / "mask.png"
    assert _segment(tiny_ckpt, bad, out) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.jpg" in err and err.count("\n") == 1
    assert "Traceback" not in err and not out.exists()


def test_bad_checkpoint_is_one_line(tmp_path, photo, capsys):
    ckpt = tmp_path / "broken.pth"
    ckpt.write_bytes(os.urandom(1000))
    assert _segment(ckpt, photo, tmp_path / "m.png") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.pth" in err and err.count("\n") == 1


def test_usage_errors_exit_2(tiny_ckpt, photo, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(photo), "--checkpoint", str(tiny_ckpt), "-o", str(tmp_path / "m.png")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(photo), "--point", "9999,10", "--checkpoint", str(tiny_ckpt), "-o", "m.png"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(photo), "--point", "1,2,7", "-o", "m.png"])
    assert exc.value.code == 2


def test_never_overwrites_the_input(tiny_ckpt, photo, capsys):
    before = photo.read_bytes()
    assert _segment(tiny_ckpt, photo, photo) == 1
    assert photo.read_bytes() == before
    assert "overwrite" in capsys.readouterr().err


def test_exif_rotated_photo_mask_has_displayed_size(tiny_ckpt, tmp_path, rgb_image, tiny_sam):
    from persam_studio.core.io.imageio import load_image

    # Stored 400x300 (landscape) with Orientation 6: displayed 300x400 (portrait).
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb_image).save(path, exif=exif, quality=95)
    out = tmp_path / "m.png"
    # The red disc is at (250, 140) stored; turned 90 deg clockwise it is at (159, 250).
    assert main(["segment", str(path), "--checkpoint", str(tiny_ckpt), "--point", "159,250",
                 "-o", str(out)]) == 0
    assert Image.open(out).size == (300, 400)
    shown = load_image(path).pixels
    assert shown.shape == (400, 300, 3)
    r, g, b = shown[250, 159].astype(int)
    assert r > 200 and g < 100 and b < 100  # the user clicked on the disc as displayed
    engine = Engine(tiny_sam, "direct", EmbeddingCache(tmp_path / "cache"))
    res = engine.predict(engine.encode(shown), np.array([[159, 250]]), np.array([1]))
    assert np.array_equal(np.asarray(Image.open(out)) == 255, res.mask(res.best_index))


def test_embed_skips_cached(tiny_ckpt, tmp_path, rgb_image, capsys):
    album = tmp_path / "album"
    album.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(rgb_image, 10 * i, axis=1)).save(album / f"img{i}.png")
    (album / "broken.jpg").write_bytes(b"garbage")
    args = ["embed", str(album), "--checkpoint", str(tiny_ckpt)]
    assert main(args) == 1  # one unreadable file
    err = capsys.readouterr().err
    assert "3 encoded, 0 already cached, 1 failed" in err and "broken.jpg" in err
    assert main(args) == 1
    assert "0 encoded, 3 already cached" in capsys.readouterr().err
