"""Album state: JSON round trip, mask files, references, merging, read-only folders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from persam_studio.core.io.album import (
    ALBUM_FILE,
    SIDECAR,
    Album,
    Box,
    ImageRecord,
    ImageState,
    Point,
    Stroke,
    album_root,
)
from persam_studio.core.errors import OutputError


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    paths = []
    for i in range(3):
        p = folder / f"img{i}.png"
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(p)
        paths.append(p)
    return folder, paths


def test_state_round_trips_through_the_sidecar(photos):
    folder, paths = photos
    album = Album.open(paths, root=folder)
    r = album.records[1]
    r.state = ImageState.NEEDS_REVIEW
    r.points = (Point(3.5, 4.0, 1), Point(10, 2, 0))
    r.box = Box.from_corners(9, 8, 1, 2)
    r.strokes = (Stroke("add", 2.5, ((1.0, 1.0), (5.0, 6.0))),)
    r.base = "logits"
    r.confidence = 0.42
    r.size = (20, 30)
    logits = np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32)
    album.save_logits(r, logits)
    mask = np.zeros((20, 30), bool)
    mask[5:9, 3:12] = True
    album.save_display_mask(r, mask)
    album.method, album.exact_fit, album.instances = "persam_f", True, None
    album.save()

    again = Album.open(paths, root=folder)
    assert (again.method, again.exact_fit, again.instances) == ("persam_f", True, None)
    assert again.records[1] == r
    assert again.records[0].state == ImageState.UNTOUCHED
    np.testing.assert_allclose(again.load_logits(again.records[1]), logits, atol=1e-2)  # float16 on disk
    np.testing.assert_array_equal(again.load_display_mask(again.records[1]), mask)
    assert (folder / SIDECAR / ALBUM_FILE).is_file()
    assert again.counts()[ImageState.NEEDS_REVIEW] == 1


def test_propagation_choices_default_and_survive_hand_edits(photos):
    import json

    folder, paths = photos
    album = Album.open(paths, root=folder)
    assert (album.method, album.exact_fit, album.instances) == ("", False, 1)  # a new album: the defaults
    album.instances = 3
    album.save()
    assert Album.open(paths, root=folder).instances == 3
    data = json.loads((folder / SIDECAR / ALBUM_FILE).read_text())
    for bad in (0, -2, "all", True, 2.5):
        data["instances"], data["exact_fit"] = bad, "yes"
        (folder / SIDECAR / ALBUM_FILE).write_text(json.dumps(data))
        again = Album.open(paths, root=folder)
        assert again.instances == 1 and again.exact_fit is False, bad


def test_box_corners_are_normalised():
    b = Box.from_corners(9, 8, 1, 2)
    assert (b.x0, b.y0, b.x1, b.y1) == (1, 2, 9, 8)
    np.testing.assert_array_equal(b.as_array(), [1, 2, 9, 8])


def test_opening_a_subset_keeps_the_other_images_state(photos):
    folder, paths = photos
    album = Album.open(paths, root=folder)
    album.records[2].state = ImageState.ACCEPTED
    album.save()
    subset = Album.open(paths[:1], root=folder)
    assert [r.path for r in subset.records] == ["img0.png"]
    subset.records[0].state = ImageState.MASKED
    subset.save()
    full = Album.open(paths, root=folder)
    assert [r.state for r in full.records] == [ImageState.MASKED, ImageState.UNTOUCHED, ImageState.ACCEPTED]


def test_damaged_or_foreign_state_file_starts_fresh(photos):
    folder, paths = photos
    (folder / SIDECAR).mkdir()
    (folder / SIDECAR / ALBUM_FILE).write_text("{not json")
    assert all(r.state == ImageState.UNTOUCHED for r in Album.open(paths, root=folder).records)
    (folder / SIDECAR / ALBUM_FILE).write_text(json.dumps({"version": 999, "images": []}))
    assert Album.open(paths, root=folder).records[0].state == ImageState.UNTOUCHED


def test_references_keep_full_size_masks(photos):
    folder, paths = photos
    album = Album.open(paths, root=folder)
    mask = np.zeros((20, 30), bool)
    mask[2:10, 4:20] = True
    ref = album.add_reference("dog", album.records[0], mask)
    second = album.new_reference_file(album.records[0])
    assert second.name != ref.mask
    album.save()
    again = Album.open(paths, root=folder)
    assert again.reference_names() == ["dog"]
    np.testing.assert_array_equal(again.reference_mask(again.references[0]), mask)
    assert again.reference_image(again.references[0]) == paths[0]


def test_reference_with_missing_mask_file_is_dropped(photos):
    folder, paths = photos
    album = Album.open(paths, root=folder)
    ref = album.add_reference("dog", album.records[0], np.ones((20, 30), bool))
    album.save()
    (folder / SIDECAR / "references" / ref.mask).unlink()
    assert Album.open(paths, root=folder).references == []


def test_root_is_the_common_folder_of_chosen_files(tmp_path):
    a, b = tmp_path / "x" / "a.jpg", tmp_path / "x" / "y" / "b.jpg"
    assert album_root([a, b]) == tmp_path / "x"
    album = Album.open([a, b])
    assert [r.path for r in album.records] == ["a.jpg", "y/b.jpg"]
    assert album.index_of(b) == 1 and album.index_of(tmp_path / "zzz.jpg") is None


def test_sidecar_is_hidden_from_image_listing(photos):
    from persam_studio.core.io.imageio import list_images

    folder, paths = photos
    album = Album.open(paths, root=folder)
    album.save_display_mask(album.records[0], np.ones((20, 30), bool))
    album.save()
    assert list_images([folder]) == paths


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_read_only_album_raises_a_one_line_output_error(photos):
    folder, paths = photos
    album = Album.open(paths, root=folder)
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError) as err:
            album.save()
        assert "cannot save album state" in str(err.value) and "\n" not in str(err.value)
    finally:
        folder.chmod(0o755)


def test_unwritable_sidecar_raises_output_error(photos):
    folder, paths = photos
    (folder / SIDECAR).write_text("a file where the sidecar folder should be")
    album = Album.open(paths, root=folder)
    with pytest.raises(OutputError):
        album.save()


def test_record_ids_are_stable_and_file_safe():
    r = ImageRecord(path="sub dir/ä photo.jpg")
    assert r.id == ImageRecord(path="sub dir/ä photo.jpg").id
    assert r.id.isalnum() and r.id != ImageRecord(path="other.jpg").id
