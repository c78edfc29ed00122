"""The Qt-free core: engine, cache, personalization, IO, export.

Importing it registers ``segment_anything`` with its package ``__init__``
deferred to first use (see :mod:`persam_studio.core.models.sam_package`): a command
whose embeddings are cached never needs torchvision.
"""

from persam_studio.core.models.sam_package import defer_package_init

defer_package_init()
