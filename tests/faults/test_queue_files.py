"""Issue 28, class 8 (the core half): a queue's files that vanished or were renamed are said and skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.annotation_queue import AnnotationQueue
from medsegdiff_training.errors import DatasetError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for index in range(4):
        Image.fromarray(np.full((8, 8), index * 10, np.uint8)).save(images / f"img{index}.png")
    return images


def test_resuming_never_lands_on_a_deleted_file(folder, tmp_path):
    store = tmp_path / "store"
    queue = AnnotationQueue.for_folder(folder, store)
    queue.accept(queue.current, entry_id="e0")  # the annotator is now on img1 ...
    assert Path(queue.current).name == "img1.png"
    (folder / "img1.png").unlink()  # ... which is deleted before the queue is reopened
    (folder / "img2.png").rename(folder / "renamed.png")
    again = AnnotationQueue.for_folder(folder, store)
    assert Path(again.current).name == "img3.png"
    assert sorted(Path(item).name for item in again.vanished) == ["img1.png", "img2.png"]
    assert "2 image(s)" in again.vanished_message() and "img1.png" in again.vanished_message()
    pending = [Path(item).name for item in again.pending()]
    assert pending == ["img3.png", "renamed.png"]  # gone ones are not pending; the new name joins
    assert again.counts()["remaining"] == 2


def test_a_file_that_comes_back_is_pending_again(folder, tmp_path):
    store = tmp_path / "store"
    AnnotationQueue.for_folder(folder, store)
    kept = (folder / "img1.png").read_bytes()
    (folder / "img1.png").unlink()
    assert [Path(i).name for i in AnnotationQueue.for_folder(folder, store).vanished] == ["img1.png"]
    (folder / "img1.png").write_bytes(kept)
    back = AnnotationQueue.for_folder(folder, store)
    assert back.vanished == [] and back.vanished_message() is None
    assert "img1.png" in [Path(item).name for item in back.pending()]


def test_a_queue_of_files_skips_a_deleted_one_instead_of_refusing_to_resume(folder, tmp_path):
    store = tmp_path / "store"
    files = sorted(folder.glob("*.png"))
    AnnotationQueue.for_files(files, store)
    files[0].unlink()
    queue = AnnotationQueue.for_files(files, store)
    assert Path(queue.current).name == "img1.png" and [Path(i).name for i in queue.vanished] == ["img0.png"]
    for path in files[1:]:
        path.unlink()
    with pytest.raises(DatasetError, match="does not exist"):
        AnnotationQueue.for_files(files, store)
