"""Issue 15: the adversarial pass over the command line, as one table.

Each row: an argv builder (given the scene's paths), the exit code, a piece
of the stderr, and the files that must be unchanged (compared byte for byte,
or by file type for devices, FIFOs and links) or absent afterwards. Every
row also checks that stderr holds no traceback and that no temporary
``.part`` file is left behind. Commands run in-process through
``cli.main``; a usage error's ``SystemExit`` is its exit code.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from persam_studio.cli import main


@dataclass
class Scene:
    tmp: Path
    photo: Path
    mask: Path
    ckpt: Path
    fifo: Path
    null_link: Path
    perseg: Path
    thin: Path

    def p(self, name: str) -> str:
        return str(self.tmp / name)


@pytest.fixture()
def scene(tmp_path, rgb_image, tiny_ckpt) -> Scene:
    photo = tmp_path / "photo.png"
    Image.fromarray(rgb_image).save(photo)
    mask = tmp_path / "mask.png"
    m = np.zeros((300, 400), np.uint8)
    m[80:200, 190:310] = 255
    Image.fromarray(m).save(mask)
    ckpt = tmp_path / "ck.pth"
    for name in ("ck.pth", "ck.png"):  # a checkpoint may have any name
        (tmp_path / name).write_bytes(tiny_ckpt.read_bytes())
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    null_link = tmp_path / "null.png"
    null_link.symlink_to("/dev/null")  # the device itself is never at risk: the link would be replaced
    perseg = tmp_path / "perseg"
    for k in ("00", "01"):
        (perseg / "Images" / "obj").mkdir(parents=True, exist_ok=True)
        (perseg / "Annotations" / "obj").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.roll(rgb_image, 7 * int(k), axis=1)).save(perseg / "Images" / "obj" / f"{k}.jpg")
        Image.fromarray(m).save(perseg / "Annotations" / "obj" / f"{k}.png")
    thin = tmp_path / "thin.png"
    Image.fromarray(np.tile(rgb_image[:1, :, :], (1, 13, 1))[:, :5000]).save(thin)  # 1 x 5000
    (tmp_path / "a_file").write_text("I am a file, not a folder")
    (tmp_path / "album").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(rgb_image).save(tmp_path / "album" / name)
    (tmp_path / "othermasks").mkdir()
    Image.fromarray(m).save(tmp_path / "othermasks" / "zz.png")  # a mask for no photo of the album
    return Scene(tmp_path, photo, mask, ckpt, fifo, null_link, perseg, thin)


def seg(s: Scene, *extra: str) -> list[str]:
    return ["segment", str(s.photo), "--checkpoint", str(s.ckpt), *extra]


def cut(s: Scene, *extra: str) -> list[str]:
    return ["cutout", str(s.photo), "--mask", str(s.mask), *extra]


def ev(s: Scene, *extra: str) -> list[str]:
    return ["eval-perseg", str(s.perseg), "--checkpoint", str(s.ckpt), *extra]


ANNOTATION = "perseg/Annotations/obj/01.png"
IMAGE = "perseg/Images/obj/01.jpg"

Builder = Callable[[Scene], list[str]]

# (id, argv builder, exit code, stderr contains, files unchanged, files absent)
CASES: list[tuple[str, Builder, int, str, tuple[str, ...], tuple[str, ...]]] = [
    # 1. never over an input, a device, a FIFO, or twice
    ("o-link-to-dev-null", lambda s: seg(s, "--point", "250,140", "-o", str(s.null_link)),
     1, "not a regular file", ("null.png",), ()),
    ("o-fifo", lambda s: seg(s, "--point", "250,140", "-o", str(s.fifo)), 1, "FIFO", ("pipe.png",), ()),
    ("o-is-the-checkpoint", lambda s: seg(s, "--point", "250,140", "-o", str(s.ckpt)),
     1, "ck.pth", ("ck.pth",), ()),
    ("o-is-the-checkpoint-named-png", lambda s: ["segment", str(s.photo), "--checkpoint", s.p("ck.png"),
                                                 "--point", "250,140", "-o", s.p("ck.png")],
     1, "overwrite an input", ("ck.png",), ()),
    ("cutout-is-the-checkpoint", lambda s: seg(s, "--point", "250,140", "-o", s.p("m.png"), "--cutout",
                                               str(s.ckpt)), 1, "ck.pth", ("ck.pth",), ("m.png",)),
    ("o-is-the-image", lambda s: seg(s, "--point", "250,140", "-o", str(s.photo)),
     1, "overwrite an input", ("photo.png",), ()),
    ("mask-and-cutout-same-file", lambda s: seg(s, "--point", "250,140", "-o", s.p("m.png"), "--cutout",
                                                s.p("m.png")), 1, "twice", (), ("m.png",)),
    ("mask-and-cutout-same-file-other-spelling",
     lambda s: seg(s, "--point", "250,140", "-o", s.p("m.png"), "--cutout", s.p("sub/../m.png")),
     1, "twice", (), ("m.png",)),
    ("cutout-cmd-onto-mask", lambda s: cut(s, "-o", str(s.mask)), 1, "overwrite an input", ("mask.png",), ()),
    ("cutout-cmd-onto-background", lambda s: cut(s, "--background", str(s.photo), "-o", str(s.photo)),
     1, "overwrite an input", ("photo.png",), ()),
    ("csv-onto-annotation", lambda s: ev(s, "--csv", s.p(ANNOTATION)), 1, "overwrite an input", (ANNOTATION,), ()),
    ("csv-onto-image", lambda s: ev(s, "--csv", s.p(IMAGE)), 1, "overwrite an input", (IMAGE,), ()),
    ("csv-onto-fifo", lambda s: ev(s, "--csv", str(s.fifo)), 1, "FIFO", ("pipe.png",), ()),
    # 5. write failures are one line
    ("csv-unwritable", lambda s: ev(s, "--csv", s.p("a_file/res.csv")), 1, "a_file", ("a_file",), ()),
    # 6. nothing partial: a cutout that cannot be written leaves no mask
    ("cutout-bad-place", lambda s: seg(s, "--point", "250,140", "-o", s.p("m.png"), "--cutout",
                                       s.p("a_file/cut.png")), 1, "a_file", ("a_file",), ("m.png",)),
    # minor: the extension names the format, or the write is refused
    ("mask-as-jpg", lambda s: seg(s, "--point", "250,140", "-o", s.p("m.jpg")), 1, "unsupported format",
     (), ("m.jpg",)),
    ("cutout-as-jpg", lambda s: seg(s, "--point", "250,140", "-o", s.p("m.png"), "--cutout", s.p("c.jpg")),
     1, "unsupported format", (), ("m.png", "c.jpg")),
    # 3. prompts: boxes validated as points are; one box; a cap on points
    ("box-nan", lambda s: seg(s, "--box", "nan,0,10,10", "-o", s.p("m.png")), 2, "not finite", (), ("m.png",)),
    ("box-inf", lambda s: seg(s, "--box", "0,0,inf,inf", "-o", s.p("m.png")), 2, "not finite", (), ("m.png",)),
    ("box-outside", lambda s: seg(s, "--box", "500,400,600,500", "-o", s.p("m.png")), 2, "does not overlap",
     (), ("m.png",)),
    ("box-inverted", lambda s: seg(s, "--box", "50,50,10,10", "-o", s.p("m.png")), 2, "X0 < X1", (), ("m.png",)),
    ("two-boxes", lambda s: seg(s, "--box", "0,0,10,10", "--box", "5,5,50,50", "-o", s.p("m.png")),
     2, "given twice", (), ("m.png",)),
    ("point-nan", lambda s: seg(s, "--point", "nan,3", "-o", s.p("m.png")), 2, "not a finite", (), ("m.png",)),
    ("too-many-points", lambda s: seg(s, *[a for i in range(300) for a in ("--point", f"{i % 400},{i % 300}")],
                                      "-o", s.p("m.png")), 2, "at most 256", (), ("m.png",)),
    # minor: input kinds named as they are
    ("image-is-fifo", lambda s: ["segment", str(s.fifo), "--point", "1,1", "-o", s.p("m.png")], 1, "FIFO",
     ("pipe.png",), ("m.png",)),
    ("image-is-dev-zero", lambda s: ["segment", "/dev/zero", "--point", "1,1", "-o", s.p("m.png")], 1,
     "a device", (), ("m.png",)),
    # minor: bad option values are usage errors
    ("bad-model", lambda s: seg(s, "--point", "1,1", "--model", "vit_z", "-o", s.p("m.png")), 2,
     "unknown model type", (), ("m.png",)),
    ("bad-device", lambda s: seg(s, "--point", "1,1", "--device", "tpu", "-o", s.p("m.png")), 2,
     "unknown device", (), ("m.png",)),
    ("bad-background", lambda s: cut(s, "--background", "mauve-ish", "-o", s.p("c.png")), 2, "not a colour",
     (), ("c.png",)),
    # a batch written into its own album: said plainly, nothing written (was "no images to process")
    ("batch-into-its-album", lambda s: ["propagate", s.p("album"), "--checkpoint", str(s.ckpt), "--ref",
                                        s.p("album/a.png"), "--ref-mask", str(s.mask), "-o", s.p("album")],
     1, "every photo is inside this output folder", ("album/a.png", "album/b.png"), ("album/report.csv",)),
    ("dataset-into-its-album", lambda s: ["export-dataset", s.p("album"), "--masks", s.p("othermasks"),
                                          "--format", "coco", "-o", s.p("album")],
     1, "every photo is inside this output folder", ("album/a.png",), ("album/annotations.json",)),
    # numbers that would switch a check off, and select's --background, are usage errors
    ("doubtful-below-nan", lambda s: ["select", s.p("album"), "-o", s.p("sel"), "--doubtful-below", "nan"],
     2, "use a number in [0, 1]", (), ("sel",)),
    ("instance-fraction-inf", lambda s: ["propagate", s.p("album"), "--checkpoint", str(s.ckpt), "--ref",
                                         s.p("album/a.png"), "--ref-mask", str(s.mask), "-o", s.p("pp"),
                                         "--instance-fraction", "inf"], 2, "use a number in (0, 1]", (), ("pp",)),
    ("tolerance-nan", lambda s: ["export-dataset", s.p("album"), "--masks", s.p("othermasks"), "--format", "coco",
                                 "-o", s.p("ds"), "--tolerance", "nan"], 2, "use a number >= 0", (), ("ds",)),
    ("select-bad-background", lambda s: ["select", s.p("album"), "-o", s.p("sel"), "--cutouts", "--background",
                                         "mauve-ish"], 2, "not a colour", (), ("sel",)),
    # 7. a typo is not a photo
    ("typo-command", lambda s: ["export-datset", s.p("out")], 2, "neither a command", (), ("out",)),
    # 4. extreme aspect ratio: segmented
    ("thin-image", lambda s: ["segment", str(s.thin), "--checkpoint", str(s.ckpt), "--box", "0,0,2500,1",
                              "-o", s.p("thin_mask.png")], 0, "", ("thin.png",), ()),
]


def _fingerprint(path: Path):
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        return ("file", path.read_bytes())
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    return ("kind", stat.S_IFMT(st.st_mode), st.st_ino)


@pytest.mark.parametrize("argv, code, words, unchanged, absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_adversarial(scene, capsys, argv, code, words, unchanged, absent):
    before = {name: _fingerprint(scene.tmp / name) for name in unchanged}
    try:
        rc = main(argv(scene))
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert words in err
    assert "Traceback" not in err
    if code == 1:
        assert err.startswith("error: ") and err.count("\n") == 1, err
    for name in unchanged:
        assert _fingerprint(scene.tmp / name) == before[name], f"{name} changed"
    for name in absent:
        assert not os.path.lexists(scene.tmp / name), f"{name} was written"
    left = [p for p in scene.tmp.rglob("*") if p.name.endswith(".part")]
    assert not left, left


def test_thin_image_mask_has_the_image_size(scene):
    out = scene.tmp / "thin_mask.png"
    assert main(["segment", str(scene.thin), "--checkpoint", str(scene.ckpt), "--point", "100,0",
                 "-o", str(out), "--cutout", str(scene.tmp / "thin_cut.png"), "--refine"]) == 0
    assert Image.open(out).size == (5000, 1)


def test_eval_perseg_never_scores_a_failed_image(scene, capsys):
    (scene.perseg / "Images" / "obj" / "01.jpg").write_bytes(b"not a jpeg")
    table = scene.tmp / "res.csv"
    assert main(ev(scene, "--csv", str(table))) == 1
    out, err = capsys.readouterr()
    assert "01.jpg" in err and "Traceback" not in err
    row = next(line for line in out.splitlines() if line.split()[0] == "obj")
    assert row.split() == ["obj", "0", "n/a", "n/a"]  # not 100.0
    assert "failed: 1 image" in out
    lines = table.read_text().splitlines()
    assert lines[1] == "obj,0,1,," and lines[2] == "mean,0,1,,"


def test_cutout_write_failure_after_the_mask_leaves_nothing(scene, monkeypatch, capsys):
    """A cutout whose write fails late (disk full) takes the mask with it: nothing partial."""
    from persam_studio.core.io import export

    real = export._write

    def failing(path, im, fmt, **options):
        if path.name == "cut.png":
            raise export.OutputError(path, "cannot write (No space left on device)")
        real(path, im, fmt, **options)

    monkeypatch.setattr(export, "_write", failing)
    rc = main(seg(scene, "--point", "250,140", "-o", str(scene.tmp / "m.png"), "--cutout", str(scene.tmp / "cut.png")))
    assert rc == 1 and "No space" in capsys.readouterr().err
    assert not (scene.tmp / "m.png").exists() and not (scene.tmp / "cut.png").exists()


def test_app_without_a_display_is_one_line(tmp_path):
    """No DISPLAY: one error line and exit 1, not Qt's abort (exit 134)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    r = subprocess.run([sys.executable, "-m", "persam_studio", str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "display" in r.stderr


def test_display_problem_rules():
    from persam_studio.gui.display import display_problem

    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert "DISPLAY" in display_problem({})
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert "X display" in display_problem({"DISPLAY": ":987"})  # no server there
    assert display_problem({"DISPLAY": "remote.example:0"}) is None  # not probed: Qt decides


def test_usage_error_lists_the_registered_commands(capsys, monkeypatch):
    from persam_studio import cli

    monkeypatch.setitem(cli.COMMANDS, "export-dataset", "persam_studio.cli.not_built_yet")
    with pytest.raises(SystemExit) as exc:
        main(["exprot-dataset"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(name in err for name in cli.COMMANDS)


@pytest.mark.parametrize("argv, app", [
    (["--checkpoint", "ck.pth", "album"], True),
    (["--model=vit_t", "album"], True),
    (["album", "--checkpoint", "ck.pth"], True),
    ([], True),
    (["segment", "x.jpg"], False),
    (["--model", "vit_t", "segment", "x.jpg"], False),
    (["--version"], False),
])
def test_app_options_may_come_before_the_folder(argv, app, monkeypatch):
    """`persam-studio --checkpoint X FOLDER` opens the app with its options, as `FOLDER --checkpoint X` does."""
    from persam_studio import cli

    opened: list[list[str]] = []
    monkeypatch.setattr(cli, "_run_app", lambda a: opened.append(a) or 0)
    monkeypatch.setattr(cli.os.path, "lexists", lambda p: True)
    try:
        cli.main(argv)
    except SystemExit:
        pass
    assert (opened == [argv]) is app
