"""Issue 28, classes 3 and 4: box prompts have bounds, and a boxes file that fits nothing is said.

Memory is measured on small inputs that would show unbounded growth without taking the
machine: the batch the sampler actually receives (a real Segmenter, its ``denoise`` watched)
and the numpy memory a run holds at its peak (tracemalloc) as the number of boxes grows.
"""

from __future__ import annotations

import json
import os
import signal
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import Box

from .conftest import SAMPLING

DEFAULT_SETTINGS = SamplingSettings()


@pytest.fixture
def batches(monkeypatch) -> list[int]:
    """The batch of crops (prompts, before the ensemble) each sampler run receives."""
    seen: list[int] = []
    denoise = Segmenter.denoise

    def watched(self, prepared, settings=DEFAULT_SETTINGS):
        seen.append(int(prepared.shape[0]))
        return (yield from denoise(self, prepared, settings))

    monkeypatch.setattr(Segmenter, "denoise", watched)
    return seen


def _boxes_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("image,x0,y0,x1,y1\n" + "".join(row + "\n" for row in rows))
    return path


def test_a_box_far_larger_than_the_image_is_clipped_to_it(tmp_path, run_cli, registry, image_file, batches):
    boxes = _boxes_csv(tmp_path / "boxes.csv", [f"{image_file.name},-1e7,-1e7,1e7,1e7"])
    outcome = run_cli(
        "predict", image_file, "--boxes", boxes, "--out", tmp_path / "out", "--model", "good",
        "--registry", registry.root, *SAMPLING,
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert (tmp_path / "out" / image_file.name).is_file() and batches == [1]


@pytest.mark.parametrize("row", ["0,0,1e308,1e308", "-1e12,0,10,10", "0,0,inf,10", "nan,0,10,10"])
def test_an_absurd_box_is_one_line_naming_its_line(row, tmp_path, run_cli, registry, image_file):
    boxes = _boxes_csv(tmp_path / "boxes.csv", [f"{image_file.name},1,1,5,5", f"{image_file.name},{row}"])
    line = run_cli(
        "predict", image_file, "--boxes", boxes, "--out", tmp_path / "out", "--model", "good",
        "--registry", registry.root, *SAMPLING,
    ).one_line_error()  # fmt: skip
    assert "line 3" in line and "box" in line


def test_prompts_run_in_batches_of_batch_size(tmp_path, run_cli, registry, image_file, batches):
    rows = [f"{image_file.name},{x},{y},{x + 8},{y + 8}" for x in (2, 12, 22) for y in (2, 20)]
    boxes = _boxes_csv(tmp_path / "boxes.csv", [*rows, rows[0]])  # 7 boxes
    outcome = run_cli(
        "predict", image_file, "--boxes", boxes, "--out", tmp_path / "out", "--model", "good",
        "--registry", registry.root, "--batch-size", "3", "--steps", "1", "--ensemble", "2",
        "--device", "cpu",
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    assert batches == [3, 3, 1]  # never all seven crops (times the ensemble) at once
    labels = np.asarray(Image.open(tmp_path / "out" / image_file.name))
    assert labels.max() <= 7


def test_boxes_from_a_noisy_mask_are_capped_and_said(tmp_path, run_cli, registry, batches):
    from medsegdiff_training.prompt_files import MAX_MASK_BOXES

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 96), dtype=np.uint8)).save(images / "noisy.png")
    noise = (rng.random((96, 96)) < 0.12).astype(np.uint8) * 255  # hundreds of specks
    noise[40:70, 40:70] = 255  # and one real object
    Image.fromarray(noise).save(masks / "noisy.png")
    outcome = run_cli(
        "evaluate", "--images", images, "--masks", masks, "--boxes-from-masks", "--json", "--model", "good",
        "--registry", registry.root, "--batch-size", "8", *SAMPLING,
    )  # fmt: skip
    assert outcome.code == 0, outcome.err
    document = json.loads(outcome.out)
    assert document["images"] == 1
    warnings = [line for line in outcome.err.splitlines() if line.startswith("medsegdiff: warning: ")]
    assert len(warnings) == 1 and "components" in warnings[0] and "noisy" in warnings[0]
    assert 1 <= sum(batches) <= MAX_MASK_BOXES and max(batches) <= 8


def _peak_numpy_bytes(segmenter: Segmenter, count: int) -> int:
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    boxes = [Box(2 + i % 3, 2 + i % 5, 60, 60) for i in range(count)]  # crops as large as the image
    settings = SamplingSettings(steps=1, ensemble=2, seed=0)
    tracemalloc.start()
    try:
        segment_prompts(segmenter, image, boxes, settings)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_prompted_runs_memory_does_not_grow_with_the_number_of_boxes(registry, batches):
    segmenter = Segmenter(load_checkpoint(registry.root / "good"), device="cpu")
    few, many = _peak_numpy_bytes(segmenter, 16), _peak_numpy_bytes(segmenter, 160)
    assert max(batches) <= 8  # the default batch, for the widget as for the CLI
    assert many < 1.5 * few, (few, many)  # ten times the boxes: not ten times the memory


def test_sigterm_stops_a_prompted_run_between_two_batches(
    tmp_path, run_cli, registry, image_file, monkeypatch
):
    # a real SIGTERM to this process, sent once the first batch has been denoised
    seen: list[int] = []
    denoise = Segmenter.denoise

    def first_batch_then_sigterm(self, prepared, settings=DEFAULT_SETTINGS):
        seen.append(int(prepared.shape[0]))
        final = yield from denoise(self, prepared, settings)
        os.kill(os.getpid(), signal.SIGTERM)
        return final

    monkeypatch.setattr(Segmenter, "denoise", first_batch_then_sigterm)
    boxes = _boxes_csv(
        tmp_path / "boxes.csv", [f"{image_file.name},{i},{i},{i + 10},{i + 10}" for i in range(6)]
    )
    outcome = run_cli(
        "predict", image_file, "--boxes", boxes, "--out", tmp_path / "out", "--model", "good",
        "--registry", registry.root, "--batch-size", "2", *SAMPLING,
    )  # fmt: skip
    assert outcome.code == 130 and "SIGTERM" in outcome.err, outcome.err
    assert seen == [2]  # the second batch never started
    assert not (tmp_path / "out" / image_file.name).exists()  # no half-segmented label map


def test_evaluate_with_a_boxes_file_naming_no_image_of_the_set_is_refused(tmp_path, run_cli, registry):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    mask = np.zeros((40, 36), np.uint8)
    mask[10:20, 10:20] = 255
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((40, 36), 90, np.uint8)).save(images / name)
        Image.fromarray(mask).save(masks / name)
    boxes = _boxes_csv(tmp_path / "boxes.csv", ["other.png,10,10,20,20"])
    line = run_cli(
        "evaluate", "--images", images, "--masks", masks, "--boxes", boxes, "--model", "good",
        "--registry", registry.root, *SAMPLING,
    ).one_line_error()  # fmt: skip
    assert "names none of the 2 image(s)" in line and "other.png" in line
    boxes = _boxes_csv(tmp_path / "boxes.csv", ["a.png,10,10,20,20"])
    partial = run_cli(
        "evaluate", "--images", images, "--masks", masks, "--boxes", boxes, "--model", "good",
        "--registry", registry.root, *SAMPLING,
    )  # fmt: skip
    assert partial.code == 0 and "1 of the 2 images have no boxes" in partial.err
