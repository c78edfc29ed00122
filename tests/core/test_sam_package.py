"""segment_anything's package __init__ runs on first use of one of its names, not before."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import persam_studio.core.segment.engine  # registers segment_anything lazily
from segment_anything.modeling import Sam, MaskDecoder
assert "torchvision" not in sys.modules, "modeling alone must not import torchvision"
import segment_anything
assert segment_anything.modeling.Sam is Sam
from segment_anything import SamPredictor, sam_model_registry  # runs the package __init__ now
assert "torchvision" in sys.modules
assert SamPredictor.__module__ == "segment_anything.predictor"
assert set(sam_model_registry) >= {"vit_b", "vit_l", "vit_h"}
import segment_anything.utils.transforms as t
assert segment_anything.SamPredictor is SamPredictor and t.ResizeLongestSide
print("ok")
"""


def test_package_init_is_deferred_until_a_name_is_used():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_already_imported_package_is_left_alone():
    script = (
        "import sys, segment_anything\n"
        "from persam_studio.core.models.sam_package import defer_package_init\n"
        "first = sys.modules['segment_anything']\n"
        "assert defer_package_init() is False and sys.modules['segment_anything'] is first\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
