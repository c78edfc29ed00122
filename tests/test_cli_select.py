"""`persam-studio select` end to end: a tiny ONNX subject model built here, and the shared IS-Net."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from persam_studio.cli import main
from persam_studio.core.models import registry
from tests.conftest import SHARED, shared_data
from tests.core.test_subject import tiny_model

COLUMNS = ["file", "coverage", "confidence", "status", "error"]


@pytest.fixture()
def model_dir(tmp_path, monkeypatch) -> Path:
    """The only model folder searched (a developer's downloads never leak in)."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setattr(registry, "checkpoint_dirs", lambda: [folder])
    monkeypatch.delenv("PERSAM_SUBJECT_MODEL", raising=False)
    return folder


@pytest.fixture()
def model(model_dir) -> Path:
    """A tiny subject model (brightness = subject), named as no catalogue file is."""
    return tiny_model(model_dir / "bright.onnx")


def _photo(path: Path, size: tuple[int, int], rect: tuple[int, int, int, int], orientation: int = 1) -> np.ndarray:
    """Save a dark photo with a bright rectangle (x0, y0, x1, y1) as stored; return the displayed subject mask."""
    w, h = size
    pixels = np.full((h, w, 3), 25, np.uint8)
    x0, y0, x1, y1 = rect
    pixels[y0:y1, x0:x1] = (235, 220, 200)
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, quality=95) if path.suffix == ".jpg" else im.save(path)
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return np.rot90(mask, -1) if orientation == 6 else mask  # 6: displayed turned 90 degrees clockwise


def _album(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path / "album"
    folder.mkdir()
    truth = {
        "beach": _photo(folder / "beach.png", (160, 120), (40, 30, 120, 90)),
        "portrait": _photo(folder / "portrait.jpg", (200, 120), (20, 20, 110, 100), orientation=6),
    }
    return folder, truth


def _report(outdir: Path) -> list[dict[str, str]]:
    with open(outdir / "report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_select_writes_masks_cutouts_and_report(model, tmp_path, capsys):
    album, truth = _album(tmp_path)
    out = tmp_path / "out"
    rc = main(["select", str(album), "-o", str(out), "--subject-model", str(model), "--cutouts"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "model bright.onnx" in captured.out
    for name, subject in truth.items():
        mask = _mask(out / f"{name}.png")
        assert mask.shape == subject.shape and set(np.unique(mask)) <= {0, 255}  # displayed size, 0/255
        assert _iou(mask > 0, subject) > 0.9
        cut = _mask(out / f"{name}_cutout.png")
        assert cut.shape == (*subject.shape, 4) and np.array_equal(cut[..., 3], mask)
    rows = _report(out)
    assert list(rows[0]) == COLUMNS
    assert [Path(r["file"]).name for r in rows] == ["beach.png", "portrait.jpg"]
    for r in rows:
        subject = truth[Path(r["file"]).stem]
        assert float(r["coverage"]) == pytest.approx(subject.mean(), abs=0.03)
        assert 0.0 <= float(r["confidence"]) <= 1.0 and r["error"] == ""
        assert r["status"] == ("doubtful" if float(r["confidence"]) < 0.7 else "ok")
    assert sorted(p.name for p in out.iterdir()) == [
        "beach.png", "beach_cutout.png", "portrait.png", "portrait_cutout.png", "report.csv"]


def test_background_makes_an_opaque_png_and_refine_soft_edges(model, tmp_path, capsys):
    album, truth = _album(tmp_path)
    out = tmp_path / "out"
    rc = main(["select", str(album / "beach.png"), "-o", str(out), "--subject-model", str(model),
               "--cutouts", "--background", "#00ff00"])
    assert rc == 0, capsys.readouterr().err
    cut = Image.open(out / "beach_cutout.png")
    assert cut.mode == "RGB"
    pixels, subject = np.asarray(cut), truth["beach"]
    assert np.all(pixels[~(_mask(out / "beach.png") > 0)] == (0, 255, 0))
    assert np.all(pixels[10, 10] == (0, 255, 0)) and pixels[60, 80].tolist() == [235, 220, 200]

    soft_out = tmp_path / "soft"
    rc = main(["select", str(album / "beach.png"), "-o", str(soft_out), "--subject-model", str(model),
               "--cutouts", "--refine"])
    assert rc == 0
    alpha = np.asarray(Image.open(soft_out / "beach_cutout.png"))[..., 3]
    assert alpha[60, 80] == 255 and alpha[5, 5] == 0 and alpha.shape == subject.shape


def test_refine_or_background_without_cutouts_is_a_usage_error(model, tmp_path, capsys):
    for extra in (["--refine"], ["--background", "white"]):
        with pytest.raises(SystemExit) as info:
            main(["select", str(tmp_path), "-o", str(tmp_path / "out"), "--subject-model", str(model), *extra])
        assert info.value.code == 2
    assert "need --cutouts" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_second_run_skips_and_a_kill_between_mask_and_row_is_resumed(model, tmp_path, capsys):
    album, _ = _album(tmp_path)
    out = tmp_path / "out"
    args = ["select", str(album), "-o", str(out), "--subject-model", str(model), "--cutouts"]
    assert main(args) == 0
    files = sorted(p for p in out.iterdir() if p.name != "report.csv")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    first = _report(out)
    capsys.readouterr()

    assert main(args) == 0
    assert "2 kept from an earlier run" in capsys.readouterr().out
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    again = _report(out)
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert [(r["coverage"], r["confidence"]) for r in again] == [(r["coverage"], r["confidence"]) for r in first]

    # A kill after portrait's mask, before its row; beach never got its files.
    with open(out / "report.csv", "w", newline="") as fh:
        fh.write(",".join(COLUMNS) + "\n")
    (out / "beach.png").unlink()
    (out / "beach_cutout.png").unlink()
    (out / ".beach.png.abcd1234.part").write_bytes(b"half a mask")  # a killed write's temporary
    assert main(args) == 0
    rows = {Path(r["file"]).stem: r for r in _report(out)}
    assert rows["portrait"]["status"] == "skipped" and rows["beach"]["status"] in ("ok", "doubtful")
    assert rows["portrait"]["coverage"] == first[1]["coverage"]
    portrait = out / "portrait.png"
    assert (portrait.read_bytes(), portrait.stat().st_mtime_ns) == before[portrait]  # never rewritten
    assert (out / "beach.png").read_bytes() == before[out / "beach.png"][0]
    assert not (out / ".beach.png.abcd1234.part").exists()


def _bad_model(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nowhere.onnx"
    if kind == "wrong shape":  # a grey-input model: (1, 1, S, S)
        return tiny_model(tmp_path / "grey.onnx", in_shape=[1, 1, 32, 32])
    good = tiny_model(tmp_path / "good.onnx").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(good[: len(good) // 2])
    return path


@pytest.mark.parametrize("kind", ["missing", "truncated", "wrong shape"])
def test_bad_model_is_one_error_line_and_writes_nothing(model_dir, tmp_path, capsys, kind):
    album, _ = _album(tmp_path)
    bad = _bad_model(tmp_path, kind)
    out = tmp_path / "out"
    rc = main(["select", str(album), "-o", str(out), "--subject-model", str(bad), "--cutouts"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"error: {bad}: ")
    assert not out.exists()


def test_default_model_from_the_environment_then_the_model_folders(model_dir, tmp_path, capsys, monkeypatch):
    album, _ = _album(tmp_path)
    mine = tiny_model(tmp_path / "mine.onnx")
    monkeypatch.setenv("PERSAM_SUBJECT_MODEL", str(mine))
    assert main(["select", str(album), "-o", str(tmp_path / "a")]) == 0
    assert "model mine.onnx" in capsys.readouterr().out

    # A catalogue name not downloaded yet: how to get it, one line, nothing written.
    monkeypatch.setenv("PERSAM_SUBJECT_MODEL", "u2netp")
    assert main(["select", str(album), "-o", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: subject model 'u2netp' (set in PERSAM_SUBJECT_MODEL) is not downloaded yet; "
                   "run 'persam-studio download u2netp'"]
    assert not (tmp_path / "b").exists()

    # Nothing named, nothing downloaded.
    monkeypatch.delenv("PERSAM_SUBJECT_MODEL")
    assert main(["select", str(album), "-o", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no subject model found; run 'persam-studio download u2netp'")
    assert not (tmp_path / "c").exists()

    # Downloaded files are found by name and by default (as 'download' saves them).
    tiny_model(model_dir / "u2netp.onnx", size=320)
    assert main(["select", str(album), "-o", str(tmp_path / "d"), "--subject-model", "u2netp"]) == 0
    assert main(["select", str(album), "-o", str(tmp_path / "e")]) == 0
    assert capsys.readouterr().out.count("model u2netp.onnx") == 2


def test_a_bad_photo_is_an_error_row_and_the_others_are_done(model, tmp_path, capsys):
    album, truth = _album(tmp_path)
    (album / "aaa_broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    rc = main(["select", str(album), "-o", str(out), "--subject-model", str(model)])
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["beach.png", "portrait.png"]
    rows = {Path(r["file"]).name: r for r in _report(out)}
    assert rows["aaa_broken.jpg"]["status"] == "error" and "aaa_broken.jpg" in rows["aaa_broken.jpg"]["error"]
    assert rows["beach.png"]["status"] in ("ok", "doubtful")
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "aaa_broken.jpg" in errors[0]


def test_outputs_never_overwrite_inputs(model, tmp_path, capsys):
    # Photos already in OUTDIR are not inputs, and a mask may not replace its own photo.
    album, _ = _album(tmp_path)
    rc = main(["select", str(album / "beach.png"), "-o", str(album), "--subject-model", str(model)])
    err = capsys.readouterr().err
    assert rc == 1 and "beach.png" in err
    assert Image.open(album / "beach.png").mode == "RGB"  # still the photo


@pytest.mark.slow
def test_real_model_finds_perseg_subjects(model_dir, tmp_path, capsys):
    from persam_studio.core.io.imageio import load_mask

    isnet = SHARED / "models" / "isnet-medium.onnx"
    if not isnet.is_file():
        pytest.skip(f"shared model not available: {isnet}")
    src = shared_data("perseg-examples")
    album = tmp_path / "album"
    album.mkdir()
    names = ["duck_toy_01", "colorful_sneaker_01"]
    for n in names:
        (album / f"{n}.jpg").symlink_to(src / f"{n}.jpg")
    out = tmp_path / "out"
    rc = main(["select", str(album), "-o", str(out), "--subject-model", str(isnet), "--cutouts", "--refine"])
    assert rc == 0, capsys.readouterr().err
    rows = {Path(r["file"]).stem: r for r in _report(out)}
    for n in names:
        found = _mask(out / f"{n}.png") > 0
        truth = load_mask(src / f"{n}.png", size=found.shape)
        assert _iou(found, truth) >= 0.9, n
        assert rows[n]["status"] == "ok" and float(rows[n]["confidence"]) >= 0.85
        alpha = np.asarray(Image.open(out / f"{n}_cutout.png"))[..., 3]
        assert ((alpha > 0) & (alpha < 255)).any()  # refined: soft edges
