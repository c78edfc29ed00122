"""``--ray``: embed, propagate and select on a local Ray cluster give what the single-process commands give.

One Ray instance for the module (127.0.0.1 only, 2 CPUs, no dashboard),
started and stopped here; a tiny random SAM and small synthetic photos keep
the file well under two minutes on a 2-core machine.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from persam_studio.cli import main

N_PHOTOS = 6  # the fault test's album; the others use the first FEW
FEW = 4


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance bound to loopback, shared by the tests that ask for it."""
    pytest.importorskip("ray", reason="the cluster extra is not installed")
    from persam_studio.core.jobs.ray_runner import RayRunner

    runner = RayRunner("local", init_options={"num_cpus": 2})
    runner.connect()
    import ray

    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield
    runner.close()


@pytest.fixture(scope="module")
def album(tmp_path_factory, rgb_image) -> tuple[Path, Path, Path]:
    """(folder of N_PHOTOS photos, reference photo, its mask): the disc moves from photo to photo."""
    root = tmp_path_factory.mktemp("photos")
    folder = root / "album"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_PHOTOS):
        img = np.roll(rgb_image, shift=(7 * i, -11 * i), axis=(0, 1))
        noisy = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"photo_{i:02d}.jpg", quality=92)
    Image.fromarray(rgb_image).save(root / "ref.png")
    yy, xx = np.mgrid[0:300, 0:400]
    Image.fromarray((((xx - 250) ** 2 + (yy - 140) ** 2 < 60**2) * 255).astype(np.uint8)).save(root / "ref_mask.png")
    return folder, root / "ref.png", root / "ref_mask.png"


def _propagate(ckpt: Path, album, out: Path, cache: Path, *extra: str, inputs: list[Path] | None = None) -> list[str]:
    folder, ref, mask = album
    return ["propagate", "--checkpoint", str(ckpt), "--cache-dir", str(cache), "--ref", str(ref),
            "--ref-mask", str(mask), "--cutouts", "-o", str(out), *extra,
            *map(str, inputs or [folder])]


def _few(album) -> list[Path]:
    return [album[0] / f"photo_{i:02d}.jpg" for i in range(FEW)]


def _report(outdir: Path) -> list[dict[str, str]]:
    with open(outdir / "report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_cluster_runs_write_what_the_single_process_commands_write(cluster, tiny_ckpt, album, tmp_path, capsys):
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    photos = _few(album)
    assert main(_propagate(tiny_ckpt, album, local, tmp_path / "cache-local", inputs=photos)) == 0
    capsys.readouterr()
    # Default workers: one per node, with all its cores: the single run's thread count.
    assert main(_propagate(tiny_ckpt, album, ray_out, tmp_path / "cache-ray", "--ray", "local", inputs=photos)) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert f"{FEW} photos in" in last and "photos/s on 1 Ray worker" in last

    assert _files(ray_out) == _files(local)  # masks, cutouts and report.csv, byte for byte
    assert len(_report(ray_out)) == FEW
    assert _files(tmp_path / "cache-ray") == _files(tmp_path / "cache-local")

    # embed fills a fresh cache with the same entries (the photos'; not the reference's).
    assert main(["embed", "--checkpoint", str(tiny_ckpt), "--cache-dir", str(tmp_path / "cache-embed"),
                 "--ray", "local", *map(str, photos[:2])]) == 0
    assert "2 encoded, 0 already cached, 0 failed" in capsys.readouterr().err
    embedded = _files(tmp_path / "cache-embed")
    assert len(embedded) == 2 and all(_files(tmp_path / "cache-local")[k] == v for k, v in embedded.items())

    # select (a tiny ONNX subject model): the same masks, cutouts and report.
    from tests.core.test_subject import tiny_model

    model = tiny_model(tmp_path / "bright.onnx")
    for out, extra in ((tmp_path / "sel-local", []), (tmp_path / "sel-ray", ["--ray", "local"])):
        assert main(["select", "--subject-model", str(model), "--cache-dir", str(out) + "-cache", "--cutouts",
                     "-o", str(out), *extra, *map(str, photos)]) == 0
    assert "photos/s on 1 Ray worker" in capsys.readouterr().err.strip().splitlines()[-1]
    assert _files(tmp_path / "sel-ray") == _files(tmp_path / "sel-local")
    assert len(_report(tmp_path / "sel-ray")) == FEW


def _worker_pids() -> list[int]:
    """Our Ray worker actors: descendants of this process titled ``ray::PersamWorker``."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            titles[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return sorted(p for p, t in titles.items() if t.startswith("ray::PersamWorker") and ours(p))


def test_a_worker_killed_mid_run_loses_no_photo(cluster, tiny_ckpt, album, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    killed: list[int] = []

    def kill_one_worker_after_the_first_mask() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if out.is_dir() and any(p.suffix == ".png" for p in out.iterdir()):
                pids = _worker_pids()
                if len(pids) == 2:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker_after_the_first_mask, daemon=True)
    killer.start()
    rc = main(_propagate(tiny_ckpt, album, out, cache, "--training-free", "--ray", "local", "--workers", "2"))
    killer.join(5)
    err = capsys.readouterr().err
    assert killed, "no worker was killed"
    assert rc == 0 and "Traceback" not in err
    assert "1 worker restart" in err.strip().splitlines()[-1], err[-1000:]

    rows = _report(out)
    assert sorted(Path(r["file"]).name for r in rows) == [f"photo_{i:02d}.jpg" for i in range(N_PHOTOS)]
    assert all(r["status"] in ("ok", "doubtful", "skipped") for r in rows)
    for i in range(N_PHOTOS):
        assert Image.open(out / f"photo_{i:02d}.png").size == (400, 300)
    leftovers = [p for p in [*out.rglob("*"), *cache.rglob("*")] if p.name.endswith(".part")]
    assert leftovers == []


@pytest.mark.parametrize("command", ["embed", "propagate", "select"])
def test_ray_without_the_extra_is_one_usage_line(command, album, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    args = [command, "--ray", "local", str(album[0])]
    if command == "propagate":
        args[1:1] = ["--ref", str(album[1]), "--ref-mask", str(album[2]), "-o", str(tmp_path / "out")]
    elif command == "select":
        args[1:1] = ["-o", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ['error: --ray needs Ray: pip install "persam-studio[cluster]"']
    assert not (tmp_path / "out").exists()
