"""core.personalize.targets: references grouped into named targets, names checked."""

from __future__ import annotations

import numpy as np
import pytest

from persam_studio.core.errors import TargetError
from persam_studio.core.personalize.targets import ReferenceGroup, check_target_name, group_references


def test_references_group_by_name_in_first_seen_order():
    refs = [("dog", "d1.jpg", "d1.png"), ("cat", "c1.jpg", "c1.png"), ("dog", "d2.jpg", "d2.png")]
    assert group_references(refs) == [
        ReferenceGroup("dog", (("d1.jpg", "d1.png"), ("d2.jpg", "d2.png"))),
        ReferenceGroup("cat", (("c1.jpg", "c1.png"),)),
    ]


@pytest.mark.parametrize("refs, problem", [
    ([], "no reference"),
    ([("", "a", "b")], "target name ''"),
    ([(".hidden", "a", "b")], "target name '.hidden'"),
    ([("a/b", "a", "b")], "target name 'a/b'"),
    ([("Report.CSV", "a", "b")], "target name 'Report.CSV'"),
    ([("Dog", "a", "b"), ("dog", "c", "d")], "'Dog' and 'dog' differ only by case"),
])
def test_bad_names_are_one_line_target_errors(refs, problem):
    with pytest.raises(TargetError) as info:
        group_references(refs, reserved=["report.csv"])
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_good_names_pass():
    for name in ["dog", "Dog 2", "my_mug.v1", "9-lives"]:
        assert check_target_name(name) == name


def test_fit_targets_fits_one_target_per_group_and_reports_progress_by_name(tiny_engine, rgb_image):
    from persam_studio.core.errors import Cancelled
    from persam_studio.core.personalize.targets import fit_targets

    mask = np.zeros(rgb_image.shape[:2], bool)
    mask[100:200, 150:250] = True
    groups = group_references([("dog", rgb_image, mask), ("cat", rgb_image[::-1].copy(), mask),
                               ("dog", rgb_image[:, ::-1].copy(), mask)])
    seen: dict[str, list[int]] = {}
    targets = fit_targets(tiny_engine, groups, finetune=True,
                          progress=lambda name, done, total: seen.setdefault(name, []).append(done))
    assert [t.name for t in targets] == ["dog", "cat"]
    assert all(t.mode == "persam_f" for t in targets)
    assert set(seen) == {"dog", "cat"} and all(max(v) > 0 for v in seen.values())
    with pytest.raises(Cancelled):
        fit_targets(tiny_engine, groups, finetune=False, should_cancel=lambda: True)


def test_free_text_names_group_when_no_files_are_made_from_them():
    refs = [("Mia's dog!", "a.jpg", "a.png"), ("Mia's dog!", "b.jpg", "b.png")]
    with pytest.raises(TargetError):
        group_references(refs)
    assert [g.name for g in group_references(refs, file_names=False)] == ["Mia's dog!"]
    with pytest.raises(TargetError, match="needs a name"):
        group_references([("  ", "a.jpg", "a.png")], file_names=False)
