"""`persam-studio embed`: one bad image never stops the batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from persam_studio.cli import main


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny_sam) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save(tiny_sam.state_dict(), path)
    return path


def _folder(tmp_path: Path, rgb_image: np.ndarray) -> Path:
    """good.png, a 1 x 5000 strip (SAM's resize gives it a 0-pixel side) and a zero-byte .jpg."""
    folder = tmp_path / "album"
    folder.mkdir()
    Image.fromarray(rgb_image).save(folder / "a_good.png")
    Image.fromarray(np.full((1, 5000, 3), 128, np.uint8)).save(folder / "b_thin.png")
    (folder / "c_broken.jpg").write_bytes(b"")
    Image.fromarray(np.ascontiguousarray(rgb_image[::-1])).save(folder / "d_good.png")
    return folder


def test_bad_images_are_error_lines_and_the_others_are_encoded(tiny_ckpt, tmp_path, rgb_image, capsys):
    folder = _folder(tmp_path, rgb_image)
    cmd = ["embed", "--checkpoint", str(tiny_ckpt), str(folder)]
    rc = main(cmd)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    thin_ok = not any("b_thin.png" in line for line in errors)  # once the engine encodes thin strips
    assert rc == 1 and len(errors) == (1 if thin_ok else 2)
    assert "c_broken.jpg" in errors[-1] and f"{2 + thin_ok} encoded, 0 already cached" in err

    assert main(cmd) == 1
    assert f"0 encoded, {2 + thin_ok} already cached" in capsys.readouterr().err


def test_an_encoder_failure_is_one_line(tiny_ckpt, tmp_path, rgb_image, capsys, monkeypatch):
    from persam_studio.core.segment.engine import Engine

    folder = _folder(tmp_path, rgb_image)
    (folder / "b_thin.png").unlink()
    (folder / "c_broken.jpg").unlink()
    real = Engine.encode

    def encode(self, image, key=None):
        if image[0, 0, 1] != 0:  # d_good.png is upside down: green is not 0 in its first row
            raise MemoryError()
        return real(self, image, key)

    monkeypatch.setattr(Engine, "encode", encode)
    rc = main(["embed", "--checkpoint", str(tiny_ckpt), str(folder)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 1 and "Traceback" not in err and "1 encoded" in err
    assert errors == [f"error: {folder / 'd_good.png'}: not enough memory for this image"]
