"""`persam-studio propagate` and `eval-perseg` end to end on a tiny random SAM."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from persam_studio.cli import main
from persam_studio.cli.eval_perseg import boundary_band, iou_counts
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny_sam) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    torch.save(tiny_sam.state_dict(), path)
    return path


def _album(tmp_path: Path, names: list[str]) -> Path:
    """A folder of symlinks to PerSeg example photos (never copies into the repo)."""
    src = shared_data("perseg-examples")
    folder = tmp_path / "album"
    folder.mkdir(exist_ok=True)
    for n in names:
        (folder / f"{n}.jpg").symlink_to(src / f"{n}.jpg")
    return folder


def _report(outdir: Path) -> list[dict[str, str]]:
    with open(outdir / "report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _ref(name: str = "cat_00") -> list[str]:
    src = shared_data("perseg-examples")
    return ["--ref", str(src / f"{name}.jpg"), "--ref-mask", str(src / f"{name}.png")]


def test_propagate_writes_masks_cutouts_and_report(tiny_ckpt, tmp_path, capsys):
    album = _album(tmp_path, ["cat_01", "cat_02", "duck_toy_01"])
    out = tmp_path / "out"
    rc = main(["propagate", "--checkpoint", str(tiny_ckpt), *_ref(), "--cutouts", "-o", str(out), str(album)])
    assert rc == 0, capsys.readouterr().err
    for name in ["cat_01", "cat_02", "duck_toy_01"]:
        w, h = Image.open(album / f"{name}.jpg").size
        mask = np.asarray(Image.open(out / f"{name}.png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        cut = np.asarray(Image.open(out / f"{name}_cutout.png"))
        assert cut.shape == (h, w, 4) and np.array_equal(cut[..., 3], mask)
    rows = _report(out)
    assert list(rows[0]) == ["file", "target", "confidence", "iou", "similarity_peak", "status", "error"]
    assert [Path(r["file"]).name for r in rows] == ["cat_01.jpg", "cat_02.jpg", "duck_toy_01.jpg"]
    for r in rows:
        assert r["target"] == "target" and r["status"] in ("ok", "doubtful") and r["error"] == ""
        assert 0.0 <= float(r["confidence"]) <= 1.0 and -1.0 <= float(r["similarity_peak"]) <= 1.0
        expected = "doubtful" if float(r["confidence"]) < 0.6 else "ok"
        assert r["status"] == expected

    # Two named targets (the second few-shot): one folder each; the album is cached now.
    out2 = tmp_path / "out2"
    rc = main(["propagate", "--checkpoint", str(tiny_ckpt), "--target", "cat", *_ref("cat_00"),
               "--target", "duck", *_ref("duck_toy_00"), *_ref("duck_toy_02"), "-o", str(out2), str(album)])
    assert rc == 0
    for t in ("cat", "duck"):
        assert sorted(p.name for p in (out2 / t).iterdir()) == ["cat_01.png", "cat_02.png", "duck_toy_01.png"]
    assert [(Path(r["file"]).name, r["target"]) for r in _report(out2)][:2] == [("cat_01.jpg", "cat"), ("cat_01.jpg", "duck")]


@pytest.mark.parametrize("case", ["unreadable", "wrong size", "empty"])
def test_bad_reference_is_one_line_and_writes_nothing(tiny_ckpt, tmp_path, capsys, case):
    src = shared_data("perseg-examples")
    ref, mask = src / "cat_00.jpg", src / "cat_00.png"
    if case == "unreadable":
        ref = tmp_path / "ref.jpg"
        ref.write_bytes(b"not a jpeg")
    elif case == "wrong size":
        mask = src / "duck_toy_01.png"
    else:
        mask = tmp_path / "empty.png"
        Image.new("L", Image.open(ref).size, 0).save(mask)
    out = tmp_path / "out"
    rc = main(["propagate", "--checkpoint", str(tiny_ckpt), "--ref", str(ref), "--ref-mask", str(mask),
               "-o", str(out), str(src / "cat_01.jpg")])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert {"unreadable": "ref.jpg", "wrong size": "duck_toy_01.png", "empty": "empty.png"}[case] in lines[0]


def test_unreadable_album_image_is_an_error_row(tiny_ckpt, tmp_path, capsys):
    album = _album(tmp_path, ["cat_01"])
    (album / "zzz_broken.jpg").write_bytes(b"")
    out = tmp_path / "out"
    rc = main(["propagate", "--checkpoint", str(tiny_ckpt), *_ref(), "-o", str(out), str(album)])
    err = capsys.readouterr().err
    assert rc == 1
    assert (out / "cat_01.png").exists() and not (out / "zzz_broken.png").exists()
    rows = {Path(r["file"]).name: r for r in _report(out)}
    assert rows["cat_01.jpg"]["status"] in ("ok", "doubtful")
    assert rows["zzz_broken.jpg"]["status"] == "error" and "zzz_broken.jpg" in rows["zzz_broken.jpg"]["error"]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "zzz_broken.jpg" in errors[0]


@pytest.mark.slow
def test_resume_after_kill_keeps_done_masks(tiny_ckpt, tmp_path):
    names = ["cat_01", "cat_02", "duck_toy_01", "duck_toy_02", "colorful_sneaker_01"]
    album = _album(tmp_path, names)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "persam_studio", "propagate", "--checkpoint", str(tiny_ckpt), *_ref(),
           "-o", str(out), str(album)]
    env = {**os.environ, "PERSAM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    masks = lambda: sorted(p.name for p in out.glob("*.png"))  # noqa: E731
    deadline = time.monotonic() + 300
    while len(masks()) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = masks()
    assert 2 <= len(done) < len(names), "the album finished before the kill"
    before = {n: ((out / n).read_bytes(), (out / n).stat().st_mtime_ns) for n in done}

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} kept from an earlier run" in rerun.stdout
    assert masks() == sorted(f"{n}.png" for n in names)
    for n, (data, mtime) in before.items():
        assert (out / n).read_bytes() == data and (out / n).stat().st_mtime_ns == mtime
    rows = {Path(r["file"]).stem: r for r in _report(out)}
    assert sorted(rows) == sorted(names)
    assert {n for n, r in rows.items() if r["status"] == "skipped"} == {d[:-4] for d in done}
    assert all(r["status"] in ("ok", "doubtful") for n, r in rows.items() if f"{n}.png" not in done)


def test_boundary_band_and_iou_counts():
    mask = np.zeros((100, 100), bool)
    mask[20:80, 20:80] = True
    band = boundary_band(mask)  # d = round(0.02 * 141.4) = 3 pixels
    assert band.sum() == 60 * 60 - 54 * 54
    assert not band[23:77, 23:77].any() and band[20, 20] and band[22, 50]
    assert iou_counts(mask, mask) == (3600, 3600, int(band.sum()), int(band.sum()))
    shifted = np.roll(mask, 10, axis=1)
    i, u, bi, bu = iou_counts(shifted, mask)
    assert (i, u) == (3000, 4200) and bi < bu


def test_eval_perseg_end_to_end(tiny_ckpt, tmp_path, capsys):
    src = shared_data("perseg-examples")
    data = tmp_path / "perseg"
    for obj in ("cat", "duck_toy"):
        for sub in ("Images", "Annotations"):
            (data / sub / obj).mkdir(parents=True)
        for k in ("00", "01"):
            (data / "Images" / obj / f"{k}.jpg").symlink_to(src / f"{obj}_{k}.jpg")
            (data / "Annotations" / obj / f"{k}.png").symlink_to(src / f"{obj}_{k}.png")
    table = tmp_path / "res.csv"
    rc = main(["eval-perseg", str(data), "--checkpoint", str(tiny_ckpt), "--csv", str(table)])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("PerSAM on") and lines[1].split() == ["object", "images", "IoU", "bIoU"]
    assert [ln.split()[0] for ln in lines[2:]] == ["cat", "duck_toy", "mean"]
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["object"] for r in rows] == ["cat", "duck_toy", "mean"]
    ious = [float(r["iou"]) for r in rows]
    assert all(0.0 <= v <= 1.0 for v in ious) and ious[2] == pytest.approx((ious[0] + ious[1]) / 2, abs=1e-6)
    assert f"{100 * ious[0]:5.1f}" in lines[2]

    rc = main(["eval-perseg", str(data), "--checkpoint", str(tiny_ckpt), "--objects", "nope"])
    assert rc == 1 and "nope" in capsys.readouterr().err


def test_refined_cutouts(tiny_ckpt, tmp_path, rgb_image, capsys):
    yy, xx = np.mgrid[0:300, 0:400]
    ref, ref_mask = tmp_path / "ref.png", tmp_path / "ref_mask.png"
    Image.fromarray(rgb_image).save(ref)
    Image.fromarray((((xx - 250) ** 2 + (yy - 140) ** 2 < 60**2) * 255).astype(np.uint8)).save(ref_mask)
    album = tmp_path / "album"
    album.mkdir()
    Image.fromarray(np.ascontiguousarray(np.roll(rgb_image, (20, -30), axis=(0, 1)))).save(album / "a.png")
    out = tmp_path / "out"
    base = ["propagate", "--checkpoint", str(tiny_ckpt), "--ref", str(ref), "--ref-mask", str(ref_mask)]
    with pytest.raises(SystemExit) as usage:
        main([*base, "--refine", "-o", str(out), str(album)])
    assert usage.value.code == 2 and "--refine needs --cutouts" in capsys.readouterr().err
    assert main([*base, "--cutouts", "--refine", "-o", str(out), str(album)]) == 0
    mask = np.asarray(Image.open(out / "a.png")) > 0
    alpha = np.asarray(Image.open(out / "a_cutout.png"))[..., 3]
    assert alpha.shape == (300, 400)
    if mask.any() and not mask.all():
        # Soft edges from core.matting, where a plain cutout's alpha is the 0/255 mask.
        assert ((alpha > 0) & (alpha < 255)).any()
