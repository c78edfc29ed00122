"""Embedding cache: a memory LRU over a validated, atomic disk store.

Encoding is the one slow step (seconds per photo on a laptop CPU), so every
:class:`~persam_studio.core.segment.engine.Embedding` is kept

* in memory, least recently used first out, bounded in **bytes** (an
  embedding is 4 MiB as float32), and
* on disk, one file per entry, bounded in bytes, evicted by file mtime (a
  read touches the file, so the disk store is LRU too).

The key (:func:`persam_studio.core.segment.engine.cache_key`) combines a hash of the
decoded, oriented pixels with the model type and checkpoint fingerprint, so
an entry can never be served for another image or model.

On-disk format of ``<sanitised key>.emb`` (all integers little-endian)::

    8 bytes   MAGIC  b"PSEMBED\\n"
    uint32    format version (FORMAT_VERSION)
    uint32    n = length of the JSON header in bytes
    16 bytes  blake2b digest of the JSON header *and* the payload together
    n bytes   UTF-8 JSON: key, model_key, image_key, shape [256, 64, 64],
              dtype ("<f2" or "<f4"), original_size [H, W], input_size [h, w],
              payload_bytes
    payload   the features, C order, ``payload_bytes`` long, nothing after

Reading validates everything; any mismatch (other magic or version, bad
JSON, a stored key that differs from the requested one, wrong shape, dtype
or length, checksum failure over header or payload, truncation, an
``input_size`` that is not SAM's resize of ``original_size``, or an
``original_size`` other than the size of the image the caller is encoding)
is a miss: the bad file is deleted and the engine recomputes. A bad cache
file never raises. (Format 1 checksummed only the payload: an edited size in
its header gave wrong masks. Format 1 files are misses.)

Several processes may share the folder: files are replaced atomically
(:func:`persam_studio.core.io.atomic.atomic_path`), readers validate, and a file
that vanishes under a reader (another process evicted it) is a miss. Disk
errors (read-only or missing folder, full disk) are logged and ignored; the
memory cache keeps working.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from pathlib import Path
from stat import S_ISREG

import numpy as np

from persam_studio.core.errors import OutputError
from persam_studio.core.geometry import sam_input_size
from persam_studio.core.io.atomic import atomic_path
from persam_studio.core.types import Embedding, cache_key

log = logging.getLogger(__name__)

MAGIC = b"PSEMBED\n"
FORMAT_VERSION = 2
SUFFIX = ".emb"
FEATURE_SHAPE = (256, 64, 64)
_PREFIX = struct.Struct("<8sII16s")  # magic, version, JSON header length, digest
_MAX_HEADER = 64 * 1024
_DISK_DTYPES = {np.dtype("<f2"), np.dtype("<f4")}
_MAX_ENTRY = _PREFIX.size + _MAX_HEADER + int(np.prod(FEATURE_SHAPE)) * 4
_STALE_PART_SECONDS = 3600.0  # a write never takes an hour: older .part = crashed writer
MiB = 1024 * 1024
GiB = 1024 * MiB


def default_cache_dir() -> Path:
    """The embedding cache folder: ``$PERSAM_CACHE_DIR``, else the user cache dir."""
    env = os.environ.get("PERSAM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("persam-studio")) / "embeddings"


def entry_name(key: str) -> str:
    """File name of the entry for ``key``: ``<sanitised key>.emb``.

    Keys are normally file-name safe already and used as they are; anything
    else is replaced by ``_`` and a hash of the full key is appended so that
    two keys never share a file. The name never starts with ``.`` (reserved
    for temporary files) and stays well under file-system name limits.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    if safe != key or len(safe) > 160 or safe.startswith("."):
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()
        safe = f"{safe.lstrip('.')[:140]}-{digest}"
    return safe + SUFFIX


def _digest(header: bytes | memoryview, payload: bytes | memoryview) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(struct.pack("<Q", len(header)))  # where the header ends is covered too
    h.update(header)
    h.update(payload)
    return h.digest()


def encode_entry(embedding: Embedding, dtype: np.dtype | type = np.float16) -> bytes:
    """Serialise ``embedding`` with features stored as ``dtype`` (see module doc).

    float16 values out of range would become inf; such features are stored
    as float32 instead, so a stored entry always reproduces the masks.
    """
    with np.errstate(over="ignore"):  # overflow is detected just below
        features = np.ascontiguousarray(embedding.features, dtype=np.dtype(dtype).newbyteorder("<"))
    if features.dtype.itemsize == 2 and not np.isfinite(features).all():
        features = np.ascontiguousarray(embedding.features, dtype="<f4")
    payload = memoryview(features).cast("B")
    header = json.dumps(
        {
            "key": embedding.cache_key,
            "model_key": embedding.model_key,
            "image_key": embedding.image_key,
            "shape": list(features.shape),
            "dtype": features.dtype.str,
            "original_size": list(embedding.original_size),
            "input_size": list(embedding.input_size),
            "payload_bytes": len(payload),
        },
        sort_keys=True,
    ).encode("utf-8")
    digest = _digest(header, payload)
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header), digest) + header + payload.tobytes()


def _size_pair(value: object) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"bad size {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"bad size {value!r}")
    return int(value[0]), int(value[1])


def decode_entry(data: bytes, key: str, original_size: tuple[int, int] | None = None) -> Embedding:
    """Parse and validate an entry read from disk; float32 features.

    Args:
        data: the whole file.
        key: the cache key asked for.
        original_size: (H, W) of the image the entry will be used for, if
            known; any other stored size is a mismatch.

    Raises:
        ValueError: on any mismatch (the caller treats it as a miss).
    """
    if len(data) < _PREFIX.size:
        raise ValueError("truncated prefix")
    magic, version, n, digest = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("not an embedding file")
    if version != FORMAT_VERSION:
        raise ValueError(f"format version {version}")
    if n > _MAX_HEADER or _PREFIX.size + n > len(data):
        raise ValueError("truncated header")
    header = memoryview(data)[_PREFIX.size : _PREFIX.size + n]
    payload = memoryview(data)[_PREFIX.size + n :]
    if _digest(header, payload) != digest:
        raise ValueError("checksum mismatch")
    meta = json.loads(bytes(header).decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("header is not an object")
    if meta.get("key") != key:
        raise ValueError(f"foreign entry {meta.get('key')!r}")
    model_key, img_key = meta.get("model_key"), meta.get("image_key")
    if not (isinstance(model_key, str) and isinstance(img_key, str)):
        raise ValueError("bad keys")
    if cache_key(img_key, model_key) != key:
        raise ValueError("keys disagree")
    if meta.get("shape") != list(FEATURE_SHAPE):
        raise ValueError(f"shape {meta.get('shape')!r}")
    dtype = np.dtype(str(meta.get("dtype")))
    if dtype not in _DISK_DTYPES:
        raise ValueError(f"dtype {dtype}")
    expected = int(np.prod(FEATURE_SHAPE)) * dtype.itemsize
    if meta.get("payload_bytes") != expected or len(payload) != expected:
        raise ValueError(f"payload is {len(payload)} bytes, expected {expected}")
    size = _size_pair(meta.get("original_size"))
    input_size = _size_pair(meta.get("input_size"))
    if input_size != sam_input_size(size):
        raise ValueError(f"input size {input_size} is not SAM's resize of {size}")
    if original_size is not None and size != tuple(original_size):
        raise ValueError(f"stored for a {size} image, asked for {tuple(original_size)}")
    features = np.frombuffer(payload, dtype=dtype).reshape(FEATURE_SHAPE)
    return Embedding(
        features=features.astype(np.float32),  # a writable float32 copy
        original_size=size,
        input_size=input_size,
        image_key=img_key,
        model_key=model_key,
    )


def _fits(embedding: Embedding, original_size: tuple[int, int] | None) -> bool:
    if original_size is None:
        return True
    size = tuple(embedding.original_size)
    return size == tuple(original_size) and tuple(embedding.input_size) == sam_input_size(size)


class EmbeddingCache:
    """Embeddings by cache key: memory LRU first, then the disk store.

    Args:
        directory: folder of the disk store (created on first write), or
            ``None`` for a memory-only cache.
        memory_bytes: bound on the features bytes held in memory.
        disk_bytes: bound on the total size of the entry files.
        disk_dtype: ``np.float16`` (default; half the disk, masks unchanged
            in practice) or ``np.float32`` (exact).

    Thread-safe: the memory LRU is guarded by a lock; disk I/O runs outside
    it (files are replaced atomically), so a slow write in a worker never
    blocks a lookup from the GUI thread.
    """

    def __init__(
        self,
        directory: Path | str | None,
        memory_bytes: int = 512 * MiB,
        disk_bytes: int = 4 * GiB,
        disk_dtype: type | np.dtype = np.float16,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.memory_bytes = int(memory_bytes)
        self.disk_bytes = int(disk_bytes)
        self.disk_dtype = np.dtype(disk_dtype).newbyteorder("<")
        if self.disk_dtype not in _DISK_DTYPES:
            raise ValueError(f"disk_dtype must be float16 or float32, not {self.disk_dtype}")
        self._memory: OrderedDict[str, Embedding] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        self._warned = False

    # -- public API ---------------------------------------------------------

    def get(self, key: str, original_size: tuple[int, int] | None = None) -> Embedding | None:
        """The embedding for ``key`` (memory, then disk), or ``None``.

        A disk hit is validated, converted to float32 and kept in memory.
        With ``original_size`` ((H, W) of the image it is for), an entry
        whose sizes do not fit that image is a miss (and is dropped).
        """
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                if not _fits(hit, original_size):
                    self._used -= self._memory.pop(key).nbytes
                    hit = None
                else:
                    self._memory.move_to_end(key)
        if hit is not None:
            self._touch(key)  # keep the disk copy young while it is in use
            return hit
        loaded = self._read(key, original_size)
        if loaded is None:
            return None
        with self._lock:
            # Another thread may have loaded it meanwhile: hand out one object.
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
            self._remember(key, loaded)
        return loaded

    def put(self, embedding: Embedding) -> None:
        """Keep ``embedding`` in memory and write it to disk.

        Raises:
            ValueError: features are not shaped (256, 64, 64).
        """
        if tuple(embedding.features.shape) != FEATURE_SHAPE:
            raise ValueError(f"features must be {FEATURE_SHAPE}, got {embedding.features.shape}")
        key = embedding.cache_key
        with self._lock:
            self._remember(key, embedding)
        self._write(embedding)

    def contains(self, key: str) -> bool:
        """Whether ``key`` is in memory or has a file on disk (not validated)."""
        with self._lock:
            if key in self._memory:
                return True
        path = self._path(key)
        return path is not None and path.is_file()

    __contains__ = contains

    @property
    def memory_bytes_used(self) -> int:
        """Bytes of features held in memory (always <= ``memory_bytes``)."""
        return self._used

    def disk_bytes_used(self) -> int:
        """Total size of the entry files on disk (temporary files excluded)."""
        return sum(size for _, size, _ in self._entries())

    def clear(self, memory: bool = True, disk: bool = False) -> None:
        """Forget the memory entries and/or delete the entry files."""
        if memory:
            with self._lock:
                self._memory.clear()
                self._used = 0
        if disk:
            for path, _, _ in self._entries():
                self._unlink(path)

    def __len__(self) -> int:
        return len(self._memory)

    # -- memory -------------------------------------------------------------

    def _remember(self, key: str, embedding: Embedding) -> None:
        # Caller holds the lock.
        old = self._memory.pop(key, None)
        if old is not None:
            self._used -= old.nbytes
        if embedding.nbytes > self.memory_bytes:
            return  # would evict everything and then itself
        self._memory[key] = embedding
        self._used += embedding.nbytes
        while self._used > self.memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._used -= evicted.nbytes

    # -- disk ---------------------------------------------------------------

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / entry_name(key)

    def _disk_error(self, what: str, exc: OSError) -> None:
        # Once per cache at warning level: a read-only cache must not spam.
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "embedding cache %s: %s (continuing in memory)", what, exc)

    def _read(self, key: str, original_size: tuple[int, int] | None = None) -> Embedding | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            # O_NONBLOCK: a FIFO at the entry's path must not hang the reader.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with open(fd, "rb") as fh:
                stat = os.fstat(fh.fileno())
                if not S_ISREG(stat.st_mode):
                    log.info("embedding cache: %s is not a regular file; ignored", path.name)
                    return None
                # Never slurp a huge foreign file: read one byte past the
                # largest valid entry, which decode_entry then rejects.
                data = fh.read(_MAX_ENTRY + 1)
        except FileNotFoundError:
            return None  # never written, or evicted by another process
        except OSError as exc:
            self._disk_error(f"cannot read {path}", exc)
            return None
        try:
            embedding = decode_entry(data, key, original_size)
        except Exception as exc:  # noqa: BLE001 - any bad file is a miss, never a crash
            log.info("embedding cache: dropping bad entry %s: %s", path.name, exc)
            self._unlink_if_same(path, stat)
            return None
        self._touch(key)
        return embedding

    def _write(self, embedding: Embedding) -> None:
        path = self._path(embedding.cache_key)
        if path is None:
            return
        try:
            data = encode_entry(embedding, self.disk_dtype)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
                now = time.time_ns()  # fine-grained mtime: LRU order of quick puts
                os.utime(tmp, ns=(now, now))
        except (OSError, OutputError) as exc:  # OutputError: a non-file sits at the entry's path
            self._disk_error(f"cannot write {path}", exc)
            return
        self._evict_disk(keep=path)

    def _touch(self, key: str) -> None:
        path = self._path(key)
        if path is None:
            return
        now = time.time_ns()
        try:
            os.utime(path, ns=(now, now))
        except OSError:
            pass  # gone or read-only: LRU order is only a preference

    def _entries(self) -> list[tuple[Path, int, int]]:
        """(path, size, mtime_ns) of the entry files; removes stale temp files."""
        if self.directory is None:
            return []
        out = []
        now = time.time()
        try:
            scan = list(os.scandir(self.directory))
        except OSError:
            return []
        for item in scan:
            name = item.name
            try:
                if name.startswith("."):
                    if name.endswith(".part") and now - item.stat().st_mtime > _STALE_PART_SECONDS:
                        self._unlink(Path(item.path))
                    continue
                if name.endswith(SUFFIX) and item.is_file(follow_symlinks=False):
                    st = item.stat()
                    out.append((Path(item.path), st.st_size, st.st_mtime_ns))
            except OSError:
                continue  # removed meanwhile by another process
        return out

    def _evict_disk(self, keep: Path | None = None) -> None:
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        if total <= self.disk_bytes:
            return
        # Oldest first; the entry just written goes last (it is the newest).
        entries.sort(key=lambda e: (e[0] == keep, e[2], e[0].name))
        for path, size, _ in entries:
            if total <= self.disk_bytes:
                break
            self._unlink(path)
            total -= size

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass  # already gone (another process) or read-only

    def _unlink_if_same(self, path: Path, stat: os.stat_result) -> None:
        # Delete the bad file only if it is still the one we read: another
        # process may have replaced it with a good entry meanwhile.
        try:
            now = os.stat(path)
        except OSError:
            return
        if (now.st_ino, now.st_dev) == (stat.st_ino, stat.st_dev):
            self._unlink(path)
