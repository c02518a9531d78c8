"""The annotation queue's state: order, accept / skip / previous, resume, scores, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.annotation_queue import AnnotationQueue, folder_items, uncertainty_score
from medsegdiff_training.errors import DatasetError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for index in range(6):
        Image.fromarray(np.full((8, 8), index * 10, np.uint8)).save(images / f"img{index}.png")
    (images / "notes.txt").write_text("not an image")
    (images / ".hidden.png").write_bytes(b"")
    return images


def names(items: list[str]) -> list[str]:
    return [Path(item).name for item in items]


def test_a_folder_queue_lists_its_images_in_file_order_and_starts_at_the_first(folder, tmp_path):
    queue = AnnotationQueue.for_folder(folder, tmp_path / "store")
    assert names(queue.items) == [f"img{i}.png" for i in range(6)]
    assert Path(queue.current).name == "img0.png"
    assert queue.counts() == {"accepted": 0, "skipped": 0, "remaining": 6}
    assert queue.position() == 1


def test_accept_and_skip_move_on_and_count(folder, tmp_path):
    queue = AnnotationQueue.for_folder(folder, tmp_path / "store")
    first = queue.current
    second = queue.accept(first, entry_id="e0", seconds=3.5, fraction_changed=0.1)
    assert Path(second).name == "img1.png" and queue.current == second
    third = queue.skip(second)
    assert Path(third).name == "img2.png"
    assert queue.counts() == {"accepted": 1, "skipped": 1, "remaining": 4}
    assert queue.states[first].entry_id == "e0"


def test_reopening_the_same_folder_resumes_after_the_last_accepted(folder, tmp_path):
    store = tmp_path / "store"
    queue = AnnotationQueue.for_folder(folder, store)
    for _ in range(3):
        queue.accept(queue.current, entry_id="e")
    again = AnnotationQueue.for_folder(folder, store)
    assert Path(again.current).name == "img3.png"
    assert again.counts() == {"accepted": 3, "skipped": 0, "remaining": 3}
    assert again.queue_id == queue.queue_id
    other = AnnotationQueue.for_files([folder / "img0.png"], store)
    assert other.queue_id != queue.queue_id  # another queue, another log


def test_resume_returns_to_an_image_left_mid_edit(folder, tmp_path):
    store = tmp_path / "store"
    queue = AnnotationQueue.for_folder(folder, store)
    queue.accept(queue.current)
    queue.visit(queue.items[4])  # the annotator jumped ahead and was editing img4 when napari closed
    assert Path(AnnotationQueue.for_folder(folder, store).current).name == "img4.png"


def test_new_files_join_at_the_end(folder, tmp_path):
    store = tmp_path / "store"
    AnnotationQueue.for_folder(folder, store).accept(str((folder / "img0.png").resolve()))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a_new.png")
    queue = AnnotationQueue.for_folder(folder, store)
    assert names(queue.items)[-1] == "a_new.png"
    assert queue.counts() == {"accepted": 1, "skipped": 0, "remaining": 6}


def test_previous_walks_back_through_finished_images(folder, tmp_path):
    queue = AnnotationQueue.for_folder(folder, tmp_path / "store")
    queue.accept(queue.current)
    queue.skip(queue.current)
    assert Path(queue.current).name == "img2.png"
    assert Path(queue.previous()).name == "img1.png"
    assert Path(queue.previous()).name == "img0.png"
    assert queue.previous() is None
    assert Path(queue.current).name == "img0.png"


def test_most_uncertain_first_follows_the_scores(folder, tmp_path):
    queue = AnnotationQueue.for_folder(folder, tmp_path / "store", order="uncertain")
    items = queue.items
    for item, value in zip(items, [0.1, 0.5, 0.3, 0.9, 0.2], strict=False):  # img5 not scored yet
        queue.record_score(item, value, "v1")
    assert names(queue.ordered()) == ["img3.png", "img1.png", "img2.png", "img4.png", "img0.png", "img5.png"]
    queue.accept(queue.current)  # img0, current before any score
    assert Path(queue.current).name == "img3.png"
    queue.set_order("file")
    assert names(queue.pending())[0] == "img1.png"
    # scores and the order survive a restart
    again = AnnotationQueue.for_folder(folder, tmp_path / "store", order="uncertain")
    assert again.score(items[3]) == 0.9 and again.order == "uncertain"


def test_a_torn_last_line_loses_only_that_event(folder, tmp_path):
    store = tmp_path / "store"
    queue = AnnotationQueue.for_folder(folder, store)
    queue.accept(queue.current, entry_id="e0")
    queue.accept(queue.current, entry_id="e1")
    with open(queue.path, "ab") as log:
        log.write(b'{"event": "accepted", "item": "')  # a writer killed mid-line
    again = AnnotationQueue.for_folder(folder, store)
    assert again.counts()["accepted"] == 2
    assert again.damaged_lines
    again.accept(again.current, entry_id="e2")  # the next event starts on a line of its own
    assert AnnotationQueue.for_folder(folder, store).counts()["accepted"] == 3
    lines = queue.path.read_bytes().split(b"\n")
    assert sum(1 for line in lines if line.startswith(b'{"entry_id"')) == 3


def test_provenance_names_the_queue_the_position_and_the_time(folder, tmp_path):
    queue = AnnotationQueue.for_folder(folder, tmp_path / "store")
    item = queue.items[2]
    queue.record_score(item, 0.25, "v1")
    record = queue.provenance(item, 12.3456, 0.05)
    assert record["position"] == 3 and record["seconds"] == 12.346
    assert record["fraction_changed_from_presegmentation"] == 0.05 and record["uncertainty_score"] == 0.25
    assert record["queue_id"] == queue.queue_id and record["queue_key"].startswith("folder:")
    json.dumps(record)


def test_user_mistakes_are_named(tmp_path, folder):
    with pytest.raises(DatasetError, match="does not exist"):
        folder_items(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="holds no image"):
        AnnotationQueue.for_folder(empty, tmp_path / "store")
    with pytest.raises(DatasetError, match="Unknown queue order"):
        AnnotationQueue.for_folder(folder, tmp_path / "store", order="random")
    queue = AnnotationQueue.for_folder(folder, tmp_path / "store")
    with pytest.raises(DatasetError, match="not in this queue"):
        queue.accept("elsewhere.png")


def test_volume_slices_are_a_queue_too(tmp_path):
    queue = AnnotationQueue.for_volume("scan", 4, tmp_path / "store")
    assert queue.items == ["scan[0]", "scan[1]", "scan[2]", "scan[3]"]


def test_the_uncertainty_score_is_disputed_share_of_the_object():
    size = 64
    yy, xx = np.mgrid[:size, :size]
    small = ((yy - 32) ** 2 + (xx - 32) ** 2 < 8**2).astype(float)
    large = ((yy - 32) ** 2 + (xx - 32) ** 2 < 24**2).astype(float)
    # the same share (10 %) of each object's pixels disputed at std 0.5
    rng = np.random.default_rng(0)
    scores = []
    for disc in (small, large):
        disputed = np.zeros_like(disc)
        inside = np.flatnonzero(disc)
        disputed.flat[rng.choice(inside, size=len(inside) // 10, replace=False)] = 0.5
        scores.append(uncertainty_score(disc, disputed))
    assert scores[0] == pytest.approx(scores[1], rel=0.05)
    assert scores[0] == pytest.approx(0.05, rel=0.05)
    agree = uncertainty_score(large, np.zeros_like(large))
    assert agree == 0.0 and uncertainty_score(large, None) == 0.0
    # K classes: the object is everything but the background
    three = np.stack([1 - large, large / 2, large / 2])
    assert uncertainty_score(three, large * 0.1) == pytest.approx(0.1)
    # an empty prediction with a few stray doubts does not outrank a real object's doubts
    stray = np.zeros((size, size))
    stray[0, :4] = 0.2
    assert uncertainty_score(np.zeros((size, size)), stray) < scores[0]
