"""Opening an engine: the one place that turns user choices into a ready :class:`Engine`.

The command line (``--checkpoint``, ``--model``, ``--device``, ``--cache-dir``)
and the app (its settings, flags and environment) both call
:func:`open_engine`, so both find, load and cache a model the same way.
"""

from __future__ import annotations

from pathlib import Path

from persam_studio.core.models import load_model, require_checkpoint
from persam_studio.core.segment.cache import EmbeddingCache, default_cache_dir
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
