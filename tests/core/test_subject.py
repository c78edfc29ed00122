"""Select subject: ONNX subject models, their cache, and the soft-map edge refinement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from persam_studio.core.errors import DownloadError, SubjectModelError
from persam_studio.core.models.subject import (
    CATALOGUE,
    IMGLY_ISNET_SPEC,
    KNOWN_FILES,
    SubjectModel,
    SubjectSpec,
    download_subject_model,
)
from persam_studio.core.models.subject_cache import SubjectMapCache
from tests.conftest import SHARED, shared_data

S = 32


def tiny_model(path: Path, size: int = S, in_shape=None, out_channels: int = 1) -> Path:
    """An ONNX file whose output is the mean of the three input channels: (N, 3, S, S) -> (N, 1, S, S)."""
    onnx = pytest.importorskip("onnx", reason="the onnx package builds the test models (dev extra)")
    from onnx import TensorProto, helper, numpy_helper

    in_shape = in_shape or ["N", 3, size, size]
    out_shape = [in_shape[0], out_channels, *in_shape[2:]]
    weight = numpy_helper.from_array(np.full((out_channels, 3, 1, 1), 1 / 3, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["map"])],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("map", TensorProto.FLOAT, out_shape)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.17
    onnx.save(model, path)
    return path


CLIP = SubjectSpec(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), output="clip")


def test_map_has_the_photo_size_and_follows_the_photo(tmp_path):
    model = SubjectModel(tiny_model(tmp_path / "m.onnx"), CLIP)
    photo = np.zeros((90, 250, 3), np.uint8)
    photo[:, :100] = 255  # the left 40 % is bright
    soft = model.predict(photo)
    assert soft.shape == (90, 250) and soft.dtype == np.float32
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    # The photo is squeezed to S x S and back: the edge stays at 40 % of the width,
    # blurred by at most one model cell (250 / 32 = 8 px) on each side.
    assert soft[:, :90].min() > 0.99 and soft[:, 110:].max() < 0.01
    assert abs(int(np.argmax(soft[45] < 0.5)) - 100) <= 4
    assert model.size == S and model.predict_small(photo).shape == (S, S)


def test_normalisation_follows_the_spec(tmp_path):
    path = tiny_model(tmp_path / "m.onnx")
    photo = np.zeros((40, 40, 3), np.uint8)
    photo[:] = (51, 102, 204)  # 0.2, 0.4, 0.8: mean 0.4666...
    spec = SubjectSpec(mean=(0.1, 0.1, 0.1), std=(2.0, 2.0, 2.0), output="clip")
    expected = np.mean((np.array([0.2, 0.4, 0.8]) - 0.1) / 2.0)
    assert np.allclose(SubjectModel(path, spec).predict(photo), expected, atol=1e-5)
    # U²-Net scales by the image maximum (204 here), not by 255.
    by_max = SubjectSpec(mean=(0.0, 0.0, 0.0), std=(4.0, 4.0, 4.0), scale_by_max=True, output="clip")
    assert np.allclose(SubjectModel(path, by_max).predict(photo), np.mean([51, 102, 204]) / 204 / 4, atol=1e-5)


def test_minmax_output_is_stretched_to_the_full_range(tmp_path):
    model = SubjectModel(tiny_model(tmp_path / "m.onnx"), SubjectSpec(mean=(0.5,) * 3, std=(1.0,) * 3))
    photo = np.full((64, 64, 3), 100, np.uint8)
    photo[16:48, 16:48] = 140  # a faint square: a raw output between -0.11 and 0.05
    soft = model.predict(photo)
    assert soft.max() == pytest.approx(1.0) and soft.min() == pytest.approx(0.0)
    assert soft[32, 32] > 0.99 and soft[2, 2] < 0.01
    flat = model.predict(np.full((64, 64, 3), 100, np.uint8))
    assert not flat.any()  # no subject: all zeros, not a division by zero


def test_unknown_files_take_the_size_from_the_file_and_known_names_their_spec(tmp_path):
    assert SubjectModel(tiny_model(tmp_path / "mine.onnx")).spec == SubjectSpec(S)  # U²-Net convention
    big = SubjectModel(tiny_model(tmp_path / "big.onnx", size=1024))
    assert (big.spec.size, big.spec.mean, big.spec.std) == (1024, (0.5,) * 3, (1.0,) * 3)  # IS-Net convention
    named = SubjectModel(tiny_model(tmp_path / "isnet-medium.onnx", size=1024))
    assert named.spec == IMGLY_ISNET_SPEC
    assert SubjectModel(tiny_model(tmp_path / "u2netp.onnx", size=320)).spec == CATALOGUE["u2netp"].spec
    # A symbolic size needs the spec to say it.
    free = tiny_model(tmp_path / "free.onnx", in_shape=["N", 3, "H", "W"])
    with pytest.raises(SubjectModelError, match="no fixed size"):
        SubjectModel(free)
    assert SubjectModel(free, SubjectSpec(48)).predict(np.zeros((10, 10, 3), np.uint8)).shape == (10, 10)


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tiny_model(tmp_path / "good.onnx").read_bytes()
    files = {
        "missing": tmp_path / "missing.onnx",
        "truncated": tmp_path / "truncated.onnx",
        "not onnx": tmp_path / "notes.onnx",
        "not square": tiny_model(tmp_path / "wide.onnx", in_shape=[1, 3, S, 2 * S]),
        "two output channels": tiny_model(tmp_path / "two.onnx", out_channels=2),
        "grey input": tiny_model(tmp_path / "grey.onnx", in_shape=[1, 1, S, S]),
    }
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["not onnx"].write_text("these are my notes\n")
    return files


@pytest.mark.parametrize("kind", ["missing", "truncated", "not onnx", "not square", "two output channels",
                                  "grey input"])
def test_bad_files_are_one_line_typed_errors(tmp_path, kind):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(SubjectModelError) as info:
        SubjectModel(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 400


def test_second_prediction_is_a_cache_hit_and_a_bad_file_a_miss(tmp_path):
    path = tiny_model(tmp_path / "m.onnx")
    cache_dir = tmp_path / "cache"
    model = SubjectModel(path, CLIP, cache=SubjectMapCache(cache_dir))
    runs = _count_runs(model)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    first = model.predict(photo)
    assert model.predict(photo) is not first and np.array_equal(model.predict(photo), first)
    assert runs == [1]
    # A new process: the disk entry answers, to uint16 precision.
    fresh = SubjectModel(path, CLIP, cache=SubjectMapCache(cache_dir))
    fresh_runs = _count_runs(fresh)
    assert np.abs(fresh.predict(photo) - first).max() < 1e-4 and fresh_runs == [0]
    # Other pixels or another spec are other entries.
    fresh.predict(photo[::-1].copy())
    assert fresh_runs == [1]
    other = SubjectModel(path, SubjectSpec(mean=(0.2,) * 3, std=(1.0,) * 3, output="clip"),
                         cache=SubjectMapCache(cache_dir))
    other_runs = _count_runs(other)
    other.predict(photo)
    assert other_runs == [1]
    # A corrupted entry is a miss: recomputed and rewritten, never an error.
    entry = cache_dir / f"{model.model_key}-{_key(photo)}.smap"
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    again = SubjectModel(path, CLIP, cache=SubjectMapCache(cache_dir))
    again_runs = _count_runs(again)
    assert np.abs(again.predict(photo) - first).max() < 1e-4 and again_runs == [1]
    assert SubjectMapCache(cache_dir).get(f"{model.model_key}-{_key(photo)}") is not None


def test_cache_memory_is_bounded_and_disk_errors_are_not_fatal(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    cache = SubjectMapCache(blocker / "cache", memory_items=2)
    for i in range(3):
        cache.put(f"k{i}", np.full((4, 4), i / 4, np.float32))
    assert len(cache) == 2 and cache.get("k0") is None and cache.get("k2")[0, 0] == 0.5


def test_catalogue_lists_rembg_models_with_md5_checked_downloads():
    assert set(CATALOGUE) == {"u2net", "u2netp", "u2net_human_seg", "silueta", "isnet-general-use"}
    for name, info in CATALOGUE.items():
        assert info.file.url.endswith(f"/{name}.onnx") and info.file.url.startswith("https://github.com/danielgatis/")
        assert len(info.file.md5) == 32 and info.file.sha256 is None
        assert KNOWN_FILES[info.file.filename] == info.spec
    assert CATALOGUE["isnet-general-use"].spec.size == 1024 and CATALOGUE["silueta"].spec.size == 320
    with pytest.raises(DownloadError, match="unknown subject model 'u3net'"):
        download_subject_model("u3net")


def _count_runs(model: SubjectModel) -> list[int]:
    count = [0]
    run = model.session.run

    class Counting:
        def run(self, *args, **kwargs):
            count[0] += 1
            return run(*args, **kwargs)

    model.session = Counting()
    return count


def _key(pixels: np.ndarray) -> str:
    from persam_studio.core.types import image_key

    return image_key(pixels)


# -- the real model (../shared) -----------------------------------------------------------


@pytest.fixture(scope="module")
def isnet():
    path = SHARED / "models" / "isnet-medium.onnx"
    if not path.is_file():
        pytest.skip(f"shared model not available: {path}")
    return SubjectModel(path)


@pytest.mark.slow
def test_perseg_subjects_are_found(isnet):
    from persam_studio.core.io.imageio import load_image, load_mask

    folder = shared_data("perseg-examples")
    ious = []
    for photo in sorted(folder.glob("*.jpg")):
        pixels = load_image(photo).pixels
        truth = load_mask(photo.with_suffix(".png"), pixels.shape[:2])
        found = isnet.predict(pixels) >= 0.5
        ious.append((found & truth).sum() / (found | truth).sum())
    assert len(ious) == 9
    assert np.mean(ious) >= 0.92, np.round(ious, 3)


@pytest.mark.slow
def test_lemur_edges_beat_rembg_alpha_matting(isnet):
    from persam_studio.bench.subject_bench import lemur, rembg_alpha, sad_k
    from persam_studio.core.edges.matting import refine_alpha

    shared_data("matting", "lemur.png")
    pixels, truth = lemur()
    soft = isnet.predict(pixels)
    alpha, _ = refine_alpha(pixels, soft >= 0.5, soft=soft)
    ours, rembg = sad_k(alpha, truth), sad_k(rembg_alpha(pixels, soft), truth)
    assert 3.2 < rembg < 3.7  # the baseline as the issue measured it (3.46k): the comparison is fair
    assert ours <= 3.0 and ours <= 0.85 * rembg, (ours, rembg)
    # The soft map is what helps: the same refinement from the binary mask alone does worse.
    binary, _ = refine_alpha(pixels, soft >= 0.5)
    assert sad_k(binary, truth) > ours + 1.0
