"""Downloading an official checkpoint, resumable and verified.

:func:`download` streams to a ``.part`` file, resumes with HTTP ranges,
verifies the SHA-256 (or the MD5, for entries that publish only that) and
only then moves the file into place. The registry (``KNOWN_MODELS``) and the
folder helpers come from :mod:`.registry`. Failures are one-line
:class:`DownloadError` messages; no torch is needed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from persam_studio.core.errors import Cancelled, DownloadError
from persam_studio.core.models import registry
from persam_studio.core.models.registry import ModelInfo


_CHUNK = 1 << 20
_MAX_ATTEMPTS = 5  # automatic resumes after a dropped connection that made progress
_USER_AGENT = "persam-studio-downloader/1"


class _Interrupted(Exception):
    """The transfer stopped early; the .part file holds what arrived."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def default_download_dir() -> Path:
    """``checkpoints/`` of a source checkout when writable, else the user data folder's."""
    source = registry.source_checkpoints_dir()
    if source is not None and os.access(source, os.W_OK):
        return source
    return registry.user_data_dir() / "checkpoints"


def download(
    model: str | ModelInfo,
    dest_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    timeout: float = 30,
) -> Path:
    """Download a checkpoint into ``dest_dir`` and return its path.

    Streams to ``<dest>/.<filename>.part``; an interrupted transfer is resumed
    with an HTTP Range request (automatically, and on the next call). The
    SHA-256 (or ``info.md5`` when no SHA-256 is known) is computed while
    streaming and the file is moved into place with ``os.replace`` only when
    it matches; with neither it is not verified (the CLI says so). An existing verified file is returned as is.
    ``progress(done_bytes, total_bytes)`` is called after each MiB;
    ``should_cancel()`` is polled as often.

    Raises:
        DownloadError: unknown model, offline, HTTP error, interrupted, a
            checksum mismatch (the partial file is deleted) or a write error.
        Cancelled: ``should_cancel()`` returned True; the ``.part`` file is
            kept so that the next call resumes.
    """
    info = model if isinstance(model, registry.ModelInfo) else registry.KNOWN_MODELS.get(model)
    if info is None:
        raise DownloadError(None, f"unknown model {model!r}; known: {', '.join(registry.KNOWN_MODELS)}")
    dest_dir = Path(dest_dir).expanduser() if dest_dir else default_download_dir()
    final = dest_dir / info.filename
    algo, expected = _expected_digest(info)
    if final.is_file() and (expected is None or _digest_of(final, algo, should_cancel) == expected):
        return final
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(dest_dir, f"cannot create folder ({exc.strerror or exc})") from None
    part = dest_dir / f".{info.filename}.part"
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        before = _size(part)
        try:
            digest = _fetch(info, algo, part, progress, should_cancel, timeout)
            break
        except _Interrupted as exc:
            if attempt < _MAX_ATTEMPTS and _size(part) > before:
                continue  # the connection dropped after some progress: resume
            raise DownloadError(info.url, f"download interrupted at {_size(part) / 1e6:.1f} MB ({exc.reason}); "
                                "run it again to resume") from None
    if expected and digest != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(info.filename, f"checksum mismatch (expected {_LABELS[algo]} {expected[:12]}..., "
                            f"got {digest[:12]}...); the download was deleted, try again")
    try:
        os.replace(part, final)
        _fsync_dir(dest_dir)
    except OSError as exc:
        raise DownloadError(final, f"cannot move the download into place ({exc.strerror or exc})") from None
    return final


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


_LABELS = {"sha256": "SHA-256", "md5": "MD5"}


def _expected_digest(info: ModelInfo) -> tuple[str, str | None]:
    """(hashlib algorithm, expected hex digest or None): SHA-256 when known, else MD5."""
    if info.sha256 or not info.md5:
        return "sha256", info.sha256
    return "md5", info.md5.lower()


def _digest_of(path: Path, algo: str, should_cancel: Callable[[], bool] | None, h: Any = None) -> str:
    h = h or hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            if should_cancel and should_cancel():
                raise Cancelled()
            h.update(chunk)
    return h.hexdigest()


def _fetch(info: ModelInfo, algo: str, part: Path, progress: Callable[[int, int], None] | None,
           should_cancel: Callable[[], bool] | None, timeout: float) -> str:
    """One HTTP request; appends to ``part`` and returns the ``algo`` hex digest of the whole part."""
    have = _size(part)
    hasher = hashlib.new(algo)
    if have:
        _digest_of(part, algo, should_cancel, hasher)  # the hash must cover the bytes already there
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(info.url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:  # nothing past our end: the part is stale; start over
            part.unlink(missing_ok=True)
            return _fetch(info, algo, part, progress, should_cancel, timeout)
        raise DownloadError(info.url, f"HTTP error {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(info.url, _unreachable(info.url, getattr(exc, "reason", exc), timeout)) from None
    with response:
        resumed = have > 0 and response.status == 206 and _range_start(response.headers.get("Content-Range")) == have
        if not resumed:  # a full body (server ignored Range) or a range we did not ask for
            have, hasher = 0, hashlib.new(algo)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else info.size_bytes
        done = have
        if progress:
            progress(done, total)
        try:
            with open(part, "ab" if resumed else "wb") as fh:
                while True:
                    if should_cancel and should_cancel():
                        raise Cancelled()
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Interrupted(str(exc) or type(exc).__name__) from None
                    if not chunk:
                        break
                    fh.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise DownloadError(part, f"cannot write ({exc.strerror or exc})") from None
    if length and length.isdigit() and done < total:
        raise _Interrupted(f"connection closed after {done} of {total} bytes")
    return hasher.hexdigest()


def _range_start(content_range: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", content_range or "")
    return int(match.group(1)) if match else None


def _unreachable(url: str, reason: Any, timeout: float) -> str:
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(reason, socket.gaierror):
        return f"cannot reach {host} (offline? the name does not resolve)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"cannot reach {host}: no answer within {timeout:g} s (offline?)"
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot reach {host}: connection refused"
    return f"cannot reach {host} (offline?): {reason}"


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not supported everywhere (Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
