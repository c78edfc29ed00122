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
    assert list(rows[0]) == ["file", "target", "instance", "instances", "peak_x", "peak_y", "confidence", "iou",
                             "similarity_peak", "status", "error"]
    assert all(r["instance"] == "1" and r["instances"] == "1" for r in rows)  # one instance by default
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

    # The several-instances search, counted at each fraction (PerSeg photos hold one instance).
    rc = main(["eval-perseg", str(data), "--checkpoint", str(tiny_ckpt), "--instance-fractions", "0.9,0.5,0.99"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and out[-5].startswith("instances per photo") and "(2 photos" in out[-5]
    table = [ln.split() for ln in out[-3:]]
    assert [float(t[0]) for t in table] == [0.5, 0.9, 0.99]
    false, mean = [int(t[1]) for t in table], [float(t[2]) for t in table]
    assert all(0 <= f <= 2 for f in false) and all(m >= 1.0 for m in mean)
    assert false == sorted(false, reverse=True) and mean == sorted(mean, reverse=True)  # stricter: fewer
    with pytest.raises(SystemExit) as usage:
        main(["eval-perseg", str(data), "--checkpoint", str(tiny_ckpt), "--instance-fractions", "0.5,1.5"])
    assert usage.value.code == 2 and "(0, 1]" in capsys.readouterr().err


def test_instance_counts_keep_the_strongest_instances_a_fraction_allows():
    from persam_studio.cli.eval_perseg import instance_counts

    ratios = [[1.0], [1.0, 0.95, 0.7], [1.0, 0.8]]
    assert instance_counts(ratios, [0.6, 0.9, 1.0]) == [(0.6, 2, 2.0), (0.9, 1, 4 / 3), (1.0, 0, 1.0)]


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


# -- batch reliability: resume, write failures, bad images (synthetic photos, shared cache) ---------


@pytest.fixture(scope="module")
def synth(tmp_path_factory, rgb_image) -> dict[str, Path]:
    """A reference photo and mask, three shifted copies, a 1 x 5000 strip, and one embedding cache."""
    root = tmp_path_factory.mktemp("synth")
    yy, xx = np.mgrid[0:300, 0:400]
    files = {"ref": root / "ref.png", "ref_mask": root / "ref_mask.png", "cache": root / "cache"}
    Image.fromarray(rgb_image).save(files["ref"])
    Image.fromarray((((xx - 250) ** 2 + (yy - 140) ** 2 < 60**2) * 255).astype(np.uint8)).save(files["ref_mask"])
    for i, shift in enumerate([(20, -30), (-10, 40), (5, 5)]):
        files[f"img{i}"] = root / f"img{i}.png"
        Image.fromarray(np.ascontiguousarray(np.roll(rgb_image, shift, axis=(0, 1)))).save(files[f"img{i}"])
    files["thin"] = root / "thin.png"
    Image.fromarray(np.full((1, 5000, 3), 128, np.uint8)).save(files["thin"])
    return files


def _synth_run(tiny_ckpt: Path, synth: dict[str, Path], tmp_path: Path, names: list[str], *extra: str) -> tuple[int, Path]:
    album = tmp_path / "album"
    album.mkdir(exist_ok=True)
    for n in names:
        if not (album / f"{n}.png").exists():
            (album / f"{n}.png").symlink_to(synth[n])
    out = tmp_path / "out"
    rc = main(["propagate", "--checkpoint", str(tiny_ckpt), "--cache-dir", str(synth["cache"]),
               "--ref", str(synth["ref"]), "--ref-mask", str(synth["ref_mask"]), *extra, "-o", str(out), str(album)])
    return rc, out


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_resume_recomputes_the_row_of_a_mask_without_one_and_removes_stale_temporaries(tiny_ckpt, synth, tmp_path, capsys):
    rc, out = _synth_run(tiny_ckpt, synth, tmp_path, ["img0", "img1"])
    assert rc == 0
    first = {Path(r["file"]).stem: r for r in _report(out)}
    # A kill after img1's mask but before its row: the report has img0 only.
    with open(out / "report.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(first["img0"]), lineterminator="\n")
        writer.writeheader()
        writer.writerow(first["img0"])
    mask_before = ((out / "img1.png").read_bytes(), (out / "img1.png").stat().st_mtime_ns)
    (out / ".img2.png.x7k2_9ab.part").write_bytes(b"half a mask")  # a killed write of img2
    (out / "notes.part").write_text("the user's")
    capsys.readouterr()

    rc, out = _synth_run(tiny_ckpt, synth, tmp_path, ["img0", "img1", "img2"])
    stdout = capsys.readouterr().out
    assert rc == 0 and "2 kept from an earlier run" in stdout
    assert ((out / "img1.png").read_bytes(), (out / "img1.png").stat().st_mtime_ns) == mask_before
    rows = {Path(r["file"]).stem: r for r in _report(out)}
    assert rows["img1"]["status"] == "skipped"
    for column in ("confidence", "iou", "similarity_peak"):  # recomputed, equal to the first run's
        assert rows["img1"][column] == first["img1"][column] != ""
    assert rows["img2"]["status"] in ("ok", "doubtful") and (out / "img2.png").is_file()
    assert not (out / ".img2.png.x7k2_9ab.part").exists() and (out / "notes.part").read_text() == "the user's"


def test_a_folder_named_like_a_mask_is_not_done(tiny_ckpt, synth, tmp_path, capsys):
    (tmp_path / "out" / "img1.png").mkdir(parents=True)
    rc, out = _synth_run(tiny_ckpt, synth, tmp_path, ["img0", "img1"])
    errors = _error_lines(capsys.readouterr().err)
    assert rc == 1 and (out / "img0.png").is_file() and (out / "img1.png").is_dir()
    rows = {Path(r["file"]).stem: r for r in _report(out)}
    assert rows["img0"]["status"] in ("ok", "doubtful")
    assert rows["img1"]["status"] == "error" and "is a folder" in rows["img1"]["error"]
    assert len(errors) == 1 and "img1.png" in errors[0]


@pytest.mark.parametrize("failure", ["disk full", "out of memory"])
def test_a_failed_write_is_an_error_row_and_the_others_are_written(tiny_ckpt, synth, tmp_path, capsys, monkeypatch, failure):
    import contextlib
    import errno

    import persam_studio.core.io.export as export

    if failure == "disk full":
        real = export.atomic_path

        @contextlib.contextmanager
        def atomic_path(dest):
            if Path(dest).name.startswith("img1"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            with real(dest) as tmp:
                yield tmp

        monkeypatch.setattr(export, "atomic_path", atomic_path)
    else:
        real_save = export.save_mask_png

        def save_mask_png(path, mask, inputs=()):
            if Path(path).name == "img1.png":
                raise MemoryError()
            return real_save(path, mask, inputs)

        monkeypatch.setattr(export, "save_mask_png", save_mask_png)
    rc, out = _synth_run(tiny_ckpt, synth, tmp_path, ["img0", "img1", "img2"], "--cutouts")
    errors = _error_lines(capsys.readouterr().err)
    assert rc == 1 and not (out / "img1.png").exists()
    assert all((out / f"img{i}{s}.png").is_file() for i in (0, 2) for s in ("", "_cutout"))
    rows = {Path(r["file"]).stem: r for r in _report(out)}
    assert [rows[f"img{i}"]["status"] == "error" for i in range(3)] == [False, True, False]
    expected = {"disk full": "No space left on device", "out of memory": "not enough memory"}[failure]
    assert expected in rows["img1"]["error"] and len(errors) == 1 and expected in errors[0]


@pytest.mark.parametrize("case", ["report is a folder", "output is a file", "report disk full", "read-only output"])
def test_an_unusable_output_is_one_error_line(tiny_ckpt, synth, tmp_path, capsys, monkeypatch, case):
    out = tmp_path / "out"
    if case == "report is a folder":
        (out / "report.csv").mkdir(parents=True)
    elif case == "output is a file":
        out.write_text("not a folder")
    elif case == "report disk full":
        import errno

        import persam_studio.core.io.atomic as atomic

        def atomic_write_text(dest, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(atomic, "atomic_write_text", atomic_write_text)
    else:
        out.mkdir()
        out.chmod(0o555)
        try:
            (out / "probe").write_text("")
            out.chmod(0o755)
            pytest.skip("permissions are not enforced for this user (root); 'report disk full' covers it")
        except PermissionError:
            pass
    try:
        rc, _ = _synth_run(tiny_ckpt, synth, tmp_path, ["img0"])
    finally:
        if out.is_dir():
            out.chmod(0o755)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert {"report is a folder": "report.csv: is a folder", "output is a file": "out: is a file",
            "report disk full": "No space left on device", "read-only output": "report.csv"}[case] in lines[0]
    assert not (out / "img0.png").exists()


@pytest.mark.parametrize("how", ["1 x 5000 image", "encoder refuses"])
def test_an_image_the_encoder_refuses_does_not_stop_the_batch(tiny_ckpt, synth, tmp_path, capsys, monkeypatch, how):
    from persam_studio.core.segment.engine import Engine

    if how == "encoder refuses":  # whatever the engine does with thin images, a refusal is one row
        real, refused = Engine.encode, np.asarray(Image.open(synth["img1"]).convert("RGB"))

        def encode(self, image, key=None):
            if np.array_equal(image, refused):
                raise ValueError("height and width must be > 0")
            return real(self, image, key)

        monkeypatch.setattr(Engine, "encode", encode)
    names = ["img0", "thin", "img2"] if how == "1 x 5000 image" else ["img0", "img1", "img2"]
    bad = names[1]
    rc, out = _synth_run(tiny_ckpt, synth, tmp_path, names)
    errors = _error_lines(capsys.readouterr().err)
    assert (out / "img0.png").is_file() and (out / "img2.png").is_file()
    row = {Path(r["file"]).stem: r for r in _report(out)}[bad]
    if row["status"] == "error":
        assert rc == 1 and len(errors) == 1 and f"{bad}.png" in errors[0] and "\n" not in row["error"]
    else:  # the engine learnt to encode thin images
        assert how == "1 x 5000 image" and rc == 0 and (out / f"{bad}.png").is_file()


def test_propagate_instances_give_one_row_each_and_method_flags_exclude_each_other(tiny_ckpt, tmp_path, capsys):
    album = _album(tmp_path, ["cat_01"])
    out = tmp_path / "out"
    rc = main(["propagate", "--checkpoint", str(tiny_ckpt), *_ref(), "--training-free", "--instances", "3",
               "--instance-fraction", "0.5", "-o", str(out), str(album)])
    assert rc == 0, capsys.readouterr().err
    rows = _report(out)
    n = int(rows[0]["instances"])
    assert 1 <= n <= 3 and len(rows) == n
    assert [r["instance"] for r in rows] == [str(i) for i in range(1, n + 1)]
    w, h = Image.open(album / "cat_01.jpg").size
    for r in rows:
        assert 0 <= float(r["peak_x"]) < w and 0 <= float(r["peak_y"]) < h
    peaks = {(r["peak_x"], r["peak_y"]) for r in rows}
    assert len(peaks) == n, "each instance has its own peak"
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:
        main(["propagate", "--checkpoint", str(tiny_ckpt), *_ref(), "--training-free", "--exact-fit",
              "-o", str(out), str(album)])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as usage:
        main(["propagate", "--checkpoint", str(tiny_ckpt), *_ref(), "--instances", "0", "-o", str(out), str(album)])
    assert usage.value.code == 2


def test_propagate_never_writes_over_a_reference(tiny_ckpt, synth, tmp_path, capsys):
    """A reference mask kept in the output folder under a photo's output name is refused, not replaced."""
    album = tmp_path / "album"
    album.mkdir()
    (album / "img0.png").symlink_to(synth["img0"])
    out = tmp_path / "out"
    out.mkdir()
    ref_mask = out / "img0.png"  # where the photo's mask would go
    ref_mask.write_bytes(synth["ref_mask"].read_bytes())
    before = ref_mask.read_bytes()
    rc = main(["propagate", "--checkpoint", str(tiny_ckpt), "--cache-dir", str(synth["cache"]),
               "--ref", str(synth["ref"]), "--ref-mask", str(ref_mask), "-o", str(out), str(album)])
    err = capsys.readouterr().err
    assert rc == 1 and _error_lines(err) == [line for line in err.splitlines() if line.strip()]
    assert "refusing to overwrite an input" in err
    assert ref_mask.read_bytes() == before and not (out / "report.csv").exists()
