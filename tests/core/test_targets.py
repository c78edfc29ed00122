"""core.personalize.targets: references grouped into named targets, names checked."""

from __future__ import annotations

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
