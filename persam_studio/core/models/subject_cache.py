"""Subject-map cache: a small memory LRU over a validated, atomic disk store.

A subject map costs seconds (the model) and is asked for again whenever the
user re-selects, refines or exports, so the model's S x S map is kept, keyed
by ``<model key>-<image key>`` (model file fingerprint and spec, and a hash
of the decoded, oriented pixels; see :class:`~persam_studio.core.models.subject.SubjectModel`).

This is a separate class from :class:`~persam_studio.core.segment.cache.EmbeddingCache`
because that module imports the torch engine at import time and its format
is fixed to SAM's (256, 64, 64) features; the rules are the same: atomic
writes, any bad file is a miss (and is deleted), never a crash; disk errors
are logged once and the memory cache keeps working.

On-disk format of ``<key>.smap`` (integers little-endian)::

    8 bytes   MAGIC b"PSSMAP1\\n"
    uint32    n = length of the JSON header
    n bytes   UTF-8 JSON: key, shape [S, S], dtype "<u2"
    payload   the map quantised to uint16 (value * 65535, rounded), C order
    16 bytes  blake2b digest of everything above (header and payload)

uint16 keeps the map to 1/65535 (float16 would lose the near-0 and near-1
detail that decides the trimap) at half the size of float32: 2 MiB for a
1024 px model.
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

import numpy as np

from persam_studio.core.io.atomic import atomic_path

log = logging.getLogger(__name__)

MAGIC = b"PSSMAP1\n"
SUFFIX = ".smap"
_PREFIX = struct.Struct("<8sI")
_DIGEST = 16
_MAX_SIDE = 4096
_MAX_BYTES = _PREFIX.size + 64 * 1024 + _MAX_SIDE * _MAX_SIDE * 2 + _DIGEST
MiB = 1024 * 1024


def default_subject_cache_dir() -> Path:
    """``subject/`` beside the embedding cache (``$PERSAM_CACHE_DIR`` or the user cache dir)."""
    env = os.environ.get("PERSAM_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "subject"
    import platformdirs

    return Path(platformdirs.user_cache_dir("persam-studio")) / "subject"


def encode_map(key: str, soft: np.ndarray) -> bytes:
    """Serialise float (S, S) ``soft`` in [0, 1] under ``key`` (see module doc)."""
    q = np.rint(np.clip(soft, 0.0, 1.0) * 65535.0).astype("<u2")
    header = json.dumps({"key": key, "shape": list(q.shape), "dtype": "<u2"}, sort_keys=True).encode()
    body = _PREFIX.pack(MAGIC, len(header)) + header + q.tobytes()
    return body + hashlib.blake2b(body, digest_size=_DIGEST).digest()


def decode_map(data: bytes, key: str) -> np.ndarray:
    """The float32 (S, S) map stored in ``data`` for ``key``, read-only.

    Raises:
        ValueError: on any mismatch (other magic, bad checksum or header,
            another key, wrong size); the caller treats it as a miss.
    """
    if len(data) < _PREFIX.size + _DIGEST:
        raise ValueError("truncated")
    body, digest = memoryview(data)[:-_DIGEST], data[-_DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        raise ValueError("checksum mismatch")
    magic, n = _PREFIX.unpack_from(data)
    if magic != MAGIC or _PREFIX.size + n > len(body):
        raise ValueError("not a subject map")
    meta = json.loads(bytes(body[_PREFIX.size : _PREFIX.size + n]))
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("dtype") != "<u2":
        raise ValueError("foreign entry")
    shape = meta.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and 0 < v <= _MAX_SIDE
                                                              for v in shape)):
        raise ValueError(f"bad shape {shape!r}")
    payload = body[_PREFIX.size + n :]
    if len(payload) != shape[0] * shape[1] * 2:
        raise ValueError("payload size")
    soft = np.frombuffer(payload, "<u2").reshape(shape).astype(np.float32) * np.float32(1.0 / 65535.0)
    soft.setflags(write=False)
    return soft


class SubjectMapCache:
    """Subject maps by key: a memory LRU of ``memory_items`` maps, then one file per map.

    Args:
        directory: folder of the disk store, or ``None`` for memory only.
        memory_items: maps kept in memory (4 MiB each for a 1024 px model).
        disk_bytes: bound on the entry files; the least recently used go first.

    Thread-safe; disk I/O runs outside the lock. Maps handed out are read-only.
    """

    def __init__(self, directory: str | Path | None, memory_items: int = 4, disk_bytes: int = 256 * MiB) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.memory_items = int(memory_items)
        self.disk_bytes = int(disk_bytes)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._warned = False

    def get(self, key: str) -> np.ndarray | None:
        """The float32 (S, S) map for ``key`` (memory, then disk), or ``None``."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        path = self._path(key)
        if path is None:
            return None
        try:
            with open(path, "rb") as fh:
                data = fh.read(_MAX_BYTES + 1)  # never slurp a huge foreign file; decode_map rejects it
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._disk_error(f"cannot read {path}", exc)
            return None
        try:
            soft = decode_map(data, key)
        except Exception as exc:  # noqa: BLE001 - any bad file is a miss, never a crash
            log.info("subject cache: dropping bad entry %s: %s", path.name, exc)
            path.unlink(missing_ok=True)
            return None
        _touch(path)  # the disk store is LRU by mtime
        self._remember(key, soft)
        return soft

    def put(self, key: str, soft: np.ndarray) -> None:
        """Keep float (S, S) ``soft`` in [0, 1] in memory and on disk."""
        soft = np.array(soft, dtype=np.float32)
        soft.setflags(write=False)
        self._remember(key, soft)
        path = self._path(key)
        if path is None:
            return
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(encode_map(key, soft))
            _touch(path)
            self._evict(keep=path)
        except OSError as exc:
            self._disk_error(f"cannot write {path}", exc)

    def __len__(self) -> int:
        return len(self._memory)

    def _remember(self, key: str, soft: np.ndarray) -> None:
        with self._lock:
            self._memory[key] = soft
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def _path(self, key: str) -> Path | None:
        if self.directory is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:160].lstrip(".")
        if safe != key:  # keep distinct keys in distinct files
            safe += "-" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
        return self.directory / (safe + SUFFIX)

    def _evict(self, keep: Path) -> None:
        files = []
        for item in os.scandir(self.directory):
            if item.name.endswith(SUFFIX) and not item.name.startswith("."):
                try:
                    st = item.stat()
                except OSError:
                    continue  # removed meanwhile by another process
                files.append((Path(item.path) == keep, st.st_mtime_ns, st.st_size, Path(item.path)))
        total = sum(f[2] for f in files)
        for _, _, size, path in sorted(files):  # oldest first, the one just written last
            if total <= self.disk_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size

    def _disk_error(self, what: str, exc: OSError) -> None:
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "subject cache %s: %s (continuing in memory)", what, exc)


def _touch(path: Path) -> None:
    now = time.time_ns()
    try:
        os.utime(path, ns=(now, now))
    except OSError:
        pass  # gone or read-only: LRU order is only a preference
