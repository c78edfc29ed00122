"""The embedding cache: memory LRU in bytes over a validated, atomic disk store."""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing as mp
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from persam_studio.core.segment.cache import (
    EmbeddingCache,
    default_cache_dir,
    encode_entry,
    entry_name,
)
from persam_studio.core.segment.engine import Engine
from persam_studio.core.types import Embedding, cache_key, image_key
from tests.conftest import shared_data

MODEL_KEY = "tiny-test"
EMB_BYTES = 256 * 64 * 64 * 4  # one float32 embedding in memory


def fake_embedding(name: str, seed: int = 0, model_key: str = MODEL_KEY) -> Embedding:
    """A synthetic embedding (no encoder) with SAM-like magnitudes."""
    rng = np.random.default_rng(seed)
    return Embedding(
        features=rng.standard_normal((256, 64, 64), dtype=np.float32) * 0.3,
        original_size=(300, 400),
        input_size=(768, 1024),
        image_key=name,
        model_key=model_key,
    )


def entry_file(directory: Path, key: str) -> Path:
    return directory / entry_name(key)


def load_rgb(path: Path) -> np.ndarray:
    try:
        from persam_studio.core.io.imageio import load_image
    except ImportError:  # imageio is written in parallel; same pixels for a JPEG without EXIF
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    return load_image(path).pixels


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


MALLOC_TRIM = _malloc_trim()


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc/self/statm).

    glibc keeps freed 4 MiB blocks in its heap (RSS plateaus ~60 MiB above
    the live data here); ``malloc_trim`` hands them back first so the number
    measures live memory.
    """
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- round trip --------------------------------------------------------------


@pytest.mark.parametrize("disk_dtype", [np.float16, np.float32])
def test_round_trip_memory_and_disk(tmp_path, disk_dtype):
    emb = fake_embedding("img-a")
    cache = EmbeddingCache(tmp_path, disk_dtype=disk_dtype)
    assert cache.get(emb.cache_key) is None and not cache.contains(emb.cache_key)
    cache.put(emb)
    assert cache.get(emb.cache_key) is emb  # memory hit: the very object
    assert cache.contains(emb.cache_key) and len(cache) == 1
    assert entry_file(tmp_path, emb.cache_key).is_file()

    other = EmbeddingCache(tmp_path)  # another process on the same folder
    assert other.contains(emb.cache_key) and len(other) == 0
    got = other.get(emb.cache_key)
    assert got is not None and len(other) == 1
    assert got.features.dtype == np.float32 and got.features.shape == (256, 64, 64)
    assert got.features.flags.writeable
    assert (got.original_size, got.input_size) == (emb.original_size, emb.input_size)
    assert (got.image_key, got.model_key, got.cache_key) == (emb.image_key, emb.model_key, emb.cache_key)
    if disk_dtype is np.float32:
        assert np.array_equal(got.features, emb.features)
    else:
        np.testing.assert_allclose(got.features, emb.features, rtol=2**-11, atol=1e-7)
        assert not np.array_equal(got.features, emb.features)  # really stored as half
    size = entry_file(tmp_path, emb.cache_key).stat().st_size
    assert size == other.disk_bytes_used() and size > 256 * 64 * 64 * np.dtype(disk_dtype).itemsize
    assert other.get("tiny-test-unknown") is None


def test_float16_overflow_is_stored_exactly(tmp_path):
    emb = fake_embedding("big")
    emb.features[0, 0, 0] = 1e6  # beyond float16's range
    EmbeddingCache(tmp_path).put(emb)
    got = EmbeddingCache(tmp_path).get(emb.cache_key)
    assert got.features[0, 0, 0] == 1e6 and np.array_equal(got.features, emb.features)


def test_keys_are_sanitised_and_distinct(tmp_path):
    cache = EmbeddingCache(tmp_path, memory_bytes=0)
    a = fake_embedding("x/y", seed=1, model_key="vit b")
    b = fake_embedding("x_y", seed=2, model_key="vit_b")
    cache.put(a)
    cache.put(b)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and all("/" not in n and " " not in n and not n.startswith(".") for n in names)
    assert np.allclose(cache.get(a.cache_key).features, a.features, atol=1e-3)
    assert np.allclose(cache.get(b.cache_key).features, b.features, atol=1e-3)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSAM_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PERSAM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "persam-studio" / "embeddings"


# -- float16 on disk keeps masks ----------------------------------------------


def _prompts(h: int, w: int) -> list[dict]:
    return [
        dict(point_coords=np.array([[w * 0.5, h * 0.5]]), point_labels=np.array([1])),
        dict(point_coords=np.array([[w * 0.3, h * 0.6], [w * 0.8, h * 0.2]]), point_labels=np.array([1, 0])),
        dict(box=np.array([w * 0.2, h * 0.2, w * 0.7, h * 0.8])),
        dict(point_coords=np.array([[w * 0.45, h * 0.5]]), point_labels=np.array([1]),
             box=np.array([w * 0.1, h * 0.3, w * 0.9, h * 0.9])),
    ]


@pytest.mark.parametrize("source", ["rgb_image", "dog.jpg"])
def test_float16_disk_entries_keep_masks(tmp_path, tiny_sam, rgb_image, source):
    pixels = rgb_image if source == "rgb_image" else load_rgb(shared_data("photos", source))
    exact = Engine(tiny_sam, MODEL_KEY).encode(pixels)  # no cache: the encoder's float32
    engine = Engine(tiny_sam, MODEL_KEY, EmbeddingCache(tmp_path, disk_dtype=np.float16))
    just_encoded = engine.encode(pixels)
    engine.cache = EmbeddingCache(tmp_path)  # fresh memory: the next encode reads the half disk entry
    half = engine.encode(pixels)
    assert engine.encode_count == 1 and half is not just_encoded
    # The same click gives the same mask whether the embedding was just
    # computed or read back later: the engine keeps what the disk keeps.
    assert np.array_equal(half.features, just_encoded.features)
    assert not np.array_equal(half.features, exact.features)
    h, w = exact.original_size
    for prompt in _prompts(h, w):
        a, b = engine.predict(exact, **prompt), engine.predict(half, **prompt)
        for i in range(len(a)):
            ma, mb = a.mask(i), b.mask(i)
            assert ma.shape == (h, w)
            assert 0 < ma.sum() < ma.size  # a real mask, so IoU means something
            assert iou(ma, mb) >= 0.999, (prompt, i, iou(ma, mb))


# -- the engine with a cache --------------------------------------------------


def test_engine_encodes_once_even_across_processes(tmp_path, tiny_sam, rgb_image):
    engine = Engine(tiny_sam, MODEL_KEY, EmbeddingCache(tmp_path))
    first = engine.encode(rgb_image)
    assert engine.encode(rgb_image) is first and engine.encode_count == 1
    fresh = Engine(tiny_sam, MODEL_KEY, EmbeddingCache(tmp_path))  # a new run of the app
    again = fresh.encode(rgb_image)
    assert fresh.encode_count == 0
    assert again.original_size == first.original_size and again.input_size == first.input_size
    np.testing.assert_allclose(again.features, first.features, rtol=2**-11, atol=1e-6)
    # Another model never gets this model's embedding.
    other = Engine(tiny_sam, "other-model", EmbeddingCache(tmp_path))
    other.encode(rgb_image)
    assert other.encode_count == 1


# -- corrupt entries ----------------------------------------------------------


def _flip_payload_byte(data: bytes, key: str) -> bytes:
    b = bytearray(data)
    b[-1000] ^= 0x10
    return bytes(b)


def _header_with(data: bytes, key: str, resign: bool = False, **changes) -> bytes:
    """The entry with header fields changed; ``resign``: with a digest that fits again."""
    from persam_studio.core.segment.cache import _digest

    n = struct.unpack_from("<I", data, 12)[0]
    digest, header, payload = data[16:32], data[32 : 32 + n], data[32 + n :]
    meta = json.loads(header)
    meta.update(changes)
    header = json.dumps(meta).encode()
    if resign:  # a writer that checksummed a wrong header: the size checks must catch it
        digest = _digest(header, payload)
    return data[:12] + struct.pack("<I", len(header)) + digest + header + payload


CORRUPTIONS = {
    "truncated": lambda data, key: data[: len(data) // 2],
    "truncated-header": lambda data, key: data[:30],
    "empty": lambda data, key: b"",
    "flipped-payload-byte": _flip_payload_byte,
    "garbage": lambda data, key: os.urandom(len(data)),
    "bad-json": lambda data, key: data[:32] + b"{" * 10 + data[42:],
    "other-version": lambda data, key: data[:8] + struct.pack("<I", 99) + data[12:],
    "wrong-shape": lambda data, key: _header_with(data, key, shape=[256, 128, 32]),
    "wrong-dtype": lambda data, key: _header_with(data, key, dtype="<f8"),
    "trailing-bytes": lambda data, key: data + b"\0" * 8,
    "foreign": lambda data, key: encode_entry(fake_embedding("someone-else"), np.float16),
    # Issue 15: edited sizes in the header gave wrong masks with exit 0.
    "edited-input-size": lambda data, key: _header_with(data, key, input_size=[700, 1024]),
    "edited-original-size": lambda data, key: _header_with(data, key, original_size=[200, 400]),
    "resigned-input-size": lambda data, key: _header_with(data, key, True, input_size=[700, 1024]),
}
# Consistent in itself, but for another image size: only the caller, who has
# the image, can tell (the engine passes its size to the cache).
CORRUPTIONS_FOR_THE_ENGINE = {
    **CORRUPTIONS,
    "resigned-both-sizes": lambda data, key: _header_with(
        data, key, True, original_size=[200, 400], input_size=[512, 1024]),
}


@pytest.fixture(scope="module")
def stored_entry(tiny_sam, rgb_image, tmp_path_factory):
    """(key, bytes) of a valid entry for rgb_image written by the engine."""
    d = tmp_path_factory.mktemp("valid")
    Engine(tiny_sam, MODEL_KEY, EmbeddingCache(d)).encode(rgb_image)
    key = cache_key(image_key(rgb_image), MODEL_KEY)
    return key, entry_file(d, key).read_bytes()


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupt_entry_is_a_miss_and_is_removed(tmp_path, stored_entry, kind):
    key, data = stored_entry
    path = entry_file(tmp_path, key)
    path.write_bytes(CORRUPTIONS[kind](data, key))
    cache = EmbeddingCache(tmp_path)
    assert cache.contains(key)  # cheap check: the file exists
    assert cache.get(key) is None
    assert not path.exists()  # the bad file is gone
    path.write_bytes(data)
    assert cache.get(key) is not None  # the fixture's bytes are valid: the check can fail


@pytest.mark.parametrize("kind", ["truncated", "flipped-payload-byte", "garbage", "foreign",
                                  "edited-input-size", "resigned-both-sizes"])
def test_engine_recomputes_over_a_corrupt_entry(tmp_path, tiny_sam, rgb_image, stored_entry, kind):
    key, data = stored_entry
    path = entry_file(tmp_path, key)
    path.write_bytes(CORRUPTIONS_FOR_THE_ENGINE[kind](data, key))
    engine = Engine(tiny_sam, MODEL_KEY, EmbeddingCache(tmp_path))
    emb = engine.encode(rgb_image)
    assert engine.encode_count == 1  # recomputed, no exception
    again = EmbeddingCache(tmp_path).get(key)  # re-stored, valid
    np.testing.assert_allclose(again.features, emb.features, rtol=2**-11, atol=1e-6)


def test_entry_for_another_image_size_is_a_miss(tmp_path, stored_entry):
    key, data = stored_entry
    entry_file(tmp_path, key).write_bytes(data)
    cache = EmbeddingCache(tmp_path)
    assert cache.get(key, original_size=(301, 400)) is None  # checked against the image
    entry_file(tmp_path, key).write_bytes(data)
    assert cache.get(key, original_size=(300, 400)) is not None
    assert cache.get(key, original_size=(10, 10)) is None  # the memory copy is checked too


def test_fifo_at_the_entry_path_is_a_miss_not_a_hang(tmp_path):
    emb = fake_embedding("fifo")
    os.mkfifo(entry_file(tmp_path, emb.cache_key))
    cache = EmbeddingCache(tmp_path)
    assert cache.get(emb.cache_key) is None
    cache.put(emb)  # refused by the atomic writer (not a regular file): memory still works
    assert cache.get(emb.cache_key) is emb


def test_unreadable_entry_path_is_a_miss(tmp_path):
    emb = fake_embedding("dir")
    entry_file(tmp_path, emb.cache_key).mkdir()  # a folder where the file should be
    cache = EmbeddingCache(tmp_path)
    assert cache.get(emb.cache_key) is None
    cache.put(emb)  # cannot replace a folder: memory still works
    assert cache.get(emb.cache_key) is emb


# -- memory budget ------------------------------------------------------------


def test_memory_lru_is_bounded_in_bytes():
    budget = 10 * EMB_BYTES + EMB_BYTES // 2
    cache = EmbeddingCache(None, memory_bytes=budget)
    first = fake_embedding("img-0")
    for i in range(200):
        emb = first if i == 0 else Embedding(first.features.copy(), (1, 1), (1, 1), f"img-{i}", MODEL_KEY)
        cache.put(emb)
        assert cache.memory_bytes_used <= budget
        if i % 5 == 0:
            assert cache.get(first.cache_key) is first  # used often: never evicted
    assert len(cache) == 10 and cache.memory_bytes_used == 10 * EMB_BYTES
    assert cache.get(first.cache_key) is first
    assert cache.get(cache_key("img-199", MODEL_KEY)) is not None
    assert cache.get(cache_key("img-150", MODEL_KEY)) is None  # least recently used: gone
    cache.clear()
    assert len(cache) == 0 and cache.memory_bytes_used == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.slow
def test_embedding_many_images_keeps_memory_within_budget(tmp_path, tiny_sam):
    """Encode many distinct images through the engine: memory stays bounded.

    The tiny encoder still runs at 1024x1024: 0.07 s per image on an idle
    2-core machine (CI), so 200 images take ~15 s. Unbounded, the cache
    would hold 200 x 4 MiB.
    """
    n, budget = 200, 10 * EMB_BYTES
    engine = Engine(tiny_sam, MODEL_KEY, EmbeddingCache(tmp_path, memory_bytes=budget, disk_bytes=8 * EMB_BYTES))
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n + 3)]
    for img in images[n:]:  # warm up torch's allocator before the baseline
        engine.encode(img)
    engine.cache.clear()
    base = rss_bytes()
    t0 = time.perf_counter()
    for img in images[:n]:
        engine.encode(img)
        assert engine.cache.memory_bytes_used <= budget
    seconds = time.perf_counter() - t0
    growth = rss_bytes() - base
    print(f"\n{n} encodes in {seconds:.1f} s; RSS grew {growth / 2**20:.1f} MiB (budget {budget / 2**20:.0f} MiB)")
    assert engine.encode_count == n + 3 and len(engine.cache) == 10
    slack = 16 * 2**20 if MALLOC_TRIM is not None else 96 * 2**20
    assert growth <= budget + slack  # unbounded it would be ~800 MiB
    assert engine.cache.disk_bytes_used() <= 8 * EMB_BYTES


def test_threads_share_one_cache():
    budget = 6 * EMB_BYTES
    cache = EmbeddingCache(None, memory_bytes=budget)
    embs = [Embedding(np.zeros((256, 64, 64), np.float32), (1, 1), (1, 1), f"t{i}", MODEL_KEY) for i in range(20)]
    errors = []

    def work(offset: int) -> None:
        try:
            for j in range(300):
                emb = embs[(offset + j) % len(embs)]
                got = cache.get(emb.cache_key)
                assert got is None or got is emb
                cache.put(emb)
                assert cache.memory_bytes_used <= budget
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 3,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.memory_bytes_used == len(cache) * EMB_BYTES <= budget


# -- disk budget --------------------------------------------------------------


def test_disk_eviction_is_lru_and_within_budget(tmp_path):
    one = len(encode_entry(fake_embedding("x"), np.float16))
    budget = int(3.5 * one)
    embs = {name: fake_embedding(name, seed=i) for i, name in enumerate("abcdef")}
    writer = EmbeddingCache(tmp_path, memory_bytes=0, disk_bytes=budget)
    for name in "abc":
        writer.put(embs[name])
    assert writer.disk_bytes_used() == 3 * one
    reader = EmbeddingCache(tmp_path, memory_bytes=0)  # another process reads a
    assert reader.get(embs["a"].cache_key) is not None
    writer.put(embs["d"])  # over budget: b is the least recently used
    assert not writer.contains(embs["b"].cache_key)
    assert all(writer.contains(embs[n].cache_key) for n in "acd")
    writer.put(embs["e"])  # then c
    assert {p.name for p in tmp_path.iterdir()} == {entry_name(embs[n].cache_key) for n in "ade"}
    assert writer.disk_bytes_used() <= budget

    # A memory hit keeps the disk copy young too.
    both = EmbeddingCache(tmp_path, disk_bytes=budget)
    assert both.get(embs["a"].cache_key) is not None  # disk, then memory
    both.put(embs["f"])  # evicts d (oldest), keeps a
    assert both.get(embs["a"].cache_key) is not None
    both.put(embs["b"])
    assert {p.name for p in tmp_path.iterdir()} == {entry_name(embs[n].cache_key) for n in "afb"}


def test_temporary_files_ignored_and_stale_ones_removed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    fresh = tmp_path / ".tiny-test-x.emb.abc123.part"
    stale = tmp_path / ".tiny-test-y.emb.def456.part"
    for p in (fresh, stale):
        p.write_bytes(b"\0" * 100_000)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    (tmp_path / "notes.txt").write_text("not ours")
    assert cache.disk_bytes_used() == 0
    cache.put(fake_embedding("a"))
    assert fresh.exists() and not stale.exists()  # a live writer's file is left alone
    assert (tmp_path / "notes.txt").exists()
    assert cache.disk_bytes_used() == entry_file(tmp_path, cache_key("a", MODEL_KEY)).stat().st_size
    cache.clear(memory=True, disk=True)
    assert cache.disk_bytes_used() == 0 and len(cache) == 0 and fresh.exists()


# -- two processes --------------------------------------------------------------

SHARED_KEYS = [f"shared-{i}" for i in range(4)]


def _versioned(name: str, version: int) -> Embedding:
    """An embedding whose content says which write produced it."""
    emb = fake_embedding(name, seed=zlib.crc32(f"{name}/{version}".encode()))  # same in every process
    emb.features[0, 0, 0] = version  # exact in float16 for version < 2048
    return emb


class _DropCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "bad entry" in record.getMessage()


def _hammer(directory: str, worker: int, seconds: float, barrier, results) -> None:
    """One process: random puts and gets of a few shared keys for ``seconds``."""
    cache = EmbeddingCache(directory, memory_bytes=0, disk_bytes=3 * 2_200_000)
    drops = _DropCounter()  # with atomic writes no reader ever sees a partial file
    logger = logging.getLogger("persam_studio.core.segment.cache")
    logger.addHandler(drops)
    logger.setLevel(logging.INFO)
    rng = np.random.default_rng(worker)
    stats = {"hits": 0, "misses": 0, "writes": 0, "bad": 0}
    barrier.wait(timeout=60)
    end = time.monotonic() + seconds
    version = worker * 1000
    while time.monotonic() < end:
        name = SHARED_KEYS[rng.integers(len(SHARED_KEYS))]
        if rng.random() < 0.4:
            version += 1
            cache.put(_versioned(name, version))
            stats["writes"] += 1
            continue
        got = cache.get(cache_key(name, MODEL_KEY))
        if got is None:
            stats["misses"] += 1
            continue
        expected = _versioned(name, int(got.features[0, 0, 0]))
        ok = got.image_key == name and np.allclose(got.features, expected.features, rtol=2**-10, atol=1e-6)
        stats["hits" if ok else "bad"] += 1
    stats["dropped"] = drops.count
    results.put(stats)


@pytest.mark.slow
def test_two_processes_share_the_folder(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), w, 1.5, barrier, results)) for w in (1, 2)]
    for p in procs:
        p.start()
    stats = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    print("\n", stats)
    assert all(s["bad"] == 0 and s["dropped"] == 0 for s in stats)
    assert sum(s["hits"] for s in stats) > 0 and sum(s["writes"] for s in stats) > 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [n for n in names if n.endswith(".part")]
    valid = {entry_name(cache_key(k, MODEL_KEY)): k for k in SHARED_KEYS}
    assert names and set(names) <= set(valid)
    reader = EmbeddingCache(tmp_path)
    assert all(reader.get(cache_key(valid[n], MODEL_KEY)) is not None for n in names)


# -- an unusable folder ---------------------------------------------------------


def test_folder_under_a_file_falls_back_to_memory(tmp_path, tiny_sam, rgb_image, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    cache = EmbeddingCache(blocker / "cache")
    engine = Engine(tiny_sam, MODEL_KEY, cache)
    emb = engine.encode(rgb_image)
    assert engine.encode(rgb_image) is emb and engine.encode_count == 1
    assert cache.contains(emb.cache_key) and cache.disk_bytes_used() == 0
    assert "continuing in memory" in caplog.text
    cache.clear(disk=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_falls_back_to_memory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        cache = EmbeddingCache(ro)
        emb = fake_embedding("ro")
        cache.put(emb)
        assert cache.get(emb.cache_key) is emb and not list(ro.iterdir())
    finally:
        ro.chmod(0o700)
