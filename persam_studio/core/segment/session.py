"""Opening an engine: the one place that turns user choices into a ready :class:`Engine`.

The command line (``--checkpoint``, ``--model``, ``--device``, ``--cache-dir``)
and the app (its settings, flags and environment) both call
:func:`open_engine`, so both find, load and cache a model the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from persam_studio.core.models import load_model, require_checkpoint
from persam_studio.core.segment.cache import SUFFIX, EmbeddingCache, default_cache_dir
from persam_studio.core.segment.engine import Engine


def open_engine(
    checkpoint: str | Path | None = None,
    model_type: str | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
) -> Engine:
    """Find and load a SAM checkpoint and wrap it in an :class:`Engine` with the embedding cache.

    Args:
        checkpoint: a file or folder (``--checkpoint``), else ``PERSAM_CHECKPOINT``,
            else the usual folders (see :func:`~persam_studio.core.models.find_checkpoint`).
        model_type: ``vit_b``, ``vit_t``, ...; None infers it from the file.
        device: ``cpu``, ``cuda``...; None picks the best available.
        cache_dir: embedding cache folder; None for the default one.

    Returns:
        An engine whose ``model_type`` and ``checkpoint`` say what was loaded.

    Raises:
        CheckpointError: no checkpoint found, or the file is not a SAM model.
        PersamError: an unavailable device.
    """
    path = require_checkpoint(checkpoint or None, model_type or None)
    loaded = load_model(path, model_type or None, device=device or None)
    cache = EmbeddingCache(Path(cache_dir) if cache_dir else default_cache_dir())
    return Engine(loaded.sam, loaded.model_key, cache, model_type=loaded.model_type, checkpoint=path)


@dataclass(frozen=True)
class EngineOptions:
    """The arguments of :func:`open_engine` as plain, picklable data.

    A batch command's work spec carries one to cluster workers, which open
    their own engine from it. :meth:`resolved` fixes what a worker on another
    machine would otherwise pick for itself (the checkpoint found, the default
    cache folder), so every worker loads the same file and fills the same cache.
    """

    checkpoint: str | None = None
    model_type: str | None = None
    device: str | None = None  # None: each worker picks its best device (a GPU when it has one)
    cache_dir: str | None = None

    def resolved(self) -> EngineOptions:
        """These options with an absolute checkpoint file and cache folder; loads no model.

        Raises:
            CheckpointError: no checkpoint found.
        """
        path = require_checkpoint(self.checkpoint or None, self.model_type or None)
        cache = Path(self.cache_dir) if self.cache_dir else default_cache_dir()
        return EngineOptions(str(Path(path).resolve()), self.model_type, self.device, str(cache.resolve()))

    def open(self) -> Engine:
        """:func:`open_engine` with these options."""
        return open_engine(self.checkpoint, self.model_type, self.device, self.cache_dir)

    def cache_entries(self) -> list[Path]:
        """The entry files now in the cache folder ([] without one).

        A worker killed while writing an entry leaves a temporary beside it;
        the cluster runner removes those of entries that exist after its run.
        """
        folder = Path(self.cache_dir) if self.cache_dir else None
        if folder is None or not folder.is_dir():
            return []
        return sorted(folder.glob(f"*{SUFFIX}"))
