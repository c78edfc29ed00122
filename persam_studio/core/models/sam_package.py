"""Import ``segment_anything``'s model classes without the package's top-level imports.

``import segment_anything.modeling`` first runs ``segment_anything/__init__.py``,
which imports ``SamPredictor`` and ``SamAutomaticMaskGenerator`` and, through
them, torchvision; torchvision imports ``torch._dynamo`` and sympy. On the
2-core development VM that was 1.2-2.2 s of a 4-5 s ``persam-studio segment``
whose embedding was cached, the largest part of the command. PerSAM Studio
itself only needs ``segment_anything.modeling`` to build and run the model;
the resize helper that needs torchvision is imported only when an image is
encoded (:attr:`persam_studio.core.segment.engine.Engine.transform`).

:func:`defer_package_init` registers the package without running its
``__init__``; the first time anyone asks the package for a name its
``__init__`` defines (``from segment_anything import SamPredictor``,
``segment_anything.sam_model_registry``), the ``__init__`` runs then, once,
and the name is returned. Submodules import as usual. Nothing in the package
is modified or copied. ``persam_studio.core`` calls it on import.
"""

from __future__ import annotations

import importlib.util
import sys
import threading

_NAME = "segment_anything"
_lock = threading.RLock()


def defer_package_init() -> bool:
    """Register ``segment_anything`` with its ``__init__`` deferred to first use.

    Returns:
        True if the package is now registered lazily; False if it was
        imported already (nothing to do) or cannot be found (a normal import
        will then report it).
    """
    with _lock:
        if _NAME in sys.modules:
            return False
        spec = importlib.util.find_spec(_NAME)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return False
        module = importlib.util.module_from_spec(spec)
        state = {"done": False}

        def __getattr__(name: str):  # PEP 562: only called for names not (yet) defined
            if name.startswith("__") or state["done"]:
                raise AttributeError(f"module {_NAME!r} has no attribute {name!r}")
            with _lock:
                if not state["done"]:
                    state["done"] = True
                    module.__dict__.pop("__getattr__", None)
                    spec.loader.exec_module(module)  # the package's own __init__
            return getattr(module, name)

        module.__getattr__ = __getattr__
        sys.modules[_NAME] = module
        return True
