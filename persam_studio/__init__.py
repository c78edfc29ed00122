"""PerSAM Studio: click-to-segment and one-shot personalized segmentation.

The public Python API lives in :mod:`persam_studio.core`; the GUI
(:mod:`persam_studio.gui`) and the CLI (:mod:`persam_studio.cli`) are thin
layers over it.
"""

__version__ = "0.1.0"
