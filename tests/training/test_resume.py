"""An interrupted run, started again, ends exactly where an uninterrupted one does."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.config import named_config
from medsegdiff_training.data import SegmentationDataset
from medsegdiff_training.errors import CheckpointError
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.trainer import TrainConfig, train

TINY = named_config("tiny")
CONFIG = TrainConfig(
    steps=6,
    batch_size=3,
    device="cpu",
    checkpoint_every=4,
    validate_every=2,
    validation_images=1,
    validation_sampling=SamplingSettings(sampler="ddim", steps=2, ensemble=1),
)


def dataset(count: int, seed: int) -> SegmentationDataset:
    rng = np.random.default_rng(seed)
    images = [rng.random((32, 32)) for _ in range(count)]
    return SegmentationDataset.from_arrays(images, [(image > 0.6).astype(np.uint8) for image in images], TINY)


def weights(folder) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder).model.state_dict()


def cancel_at(step: int):
    cancel = threading.Event()

    def progress(report):
        if report.step == step:
            cancel.set()

    return cancel, progress


@pytest.mark.precision_policy  # bit-identical also when "auto" trains in bf16
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    train_data, validation_data = dataset(5, 0), dataset(1, 1)
    straight = train(TINY, train_data, tmp_path / "straight", config=CONFIG, validation_data=validation_data)

    cancel, progress = cancel_at(3)  # between two checkpoints, after a validation
    first = train(
        TINY,
        train_data,
        tmp_path / "resumed",
        config=CONFIG,
        validation_data=validation_data,
        progress=progress,
        cancel=cancel,
    )
    assert first.cancelled and first.step == 3 and first.final_checkpoint is None
    second = train(TINY, train_data, tmp_path / "resumed", config=CONFIG, validation_data=validation_data)

    assert not second.cancelled and second.step == straight.step == 6
    assert second.final_checkpoint is not None and (second.final_checkpoint / "model.safetensors").is_file()
    # nothing lost or repeated: the same validations, logged once each
    log = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert log == [entry["step"] for entry in straight.history] == [2, 4, 6]
    # and the very same weights: optimiser, EMA, data order and random state were all restored
    resumed_weights, straight_weights = weights(second.final_checkpoint), weights(straight.final_checkpoint)
    assert all(torch.equal(resumed_weights[name], straight_weights[name]) for name in straight_weights)


def test_a_finished_run_started_again_does_no_more_steps(tmp_path):
    train_data = dataset(3, 0)
    config = TrainConfig(steps=2, batch_size=2, device="cpu")
    train(TINY, train_data, tmp_path / "run", config=config)
    again = train(TINY, train_data, tmp_path / "run", config=config)
    assert again.step == 2 and again.final_checkpoint is not None


def test_leftovers_of_a_crashed_save_do_not_stop_a_resume(tmp_path):
    train_data = dataset(3, 0)
    cancel, progress = cancel_at(2)
    train(
        TINY,
        train_data,
        tmp_path / "run",
        config=TrainConfig(steps=4, batch_size=2, device="cpu"),
        progress=progress,
        cancel=cancel,
    )
    # a process killed while writing leaves a hidden partial state beside the real one
    partial = tmp_path / "run" / ".state.partial-crashed"
    partial.mkdir()
    (partial / "weights.safetensors").write_bytes(b"half a file")
    result = train(
        TINY, train_data, tmp_path / "run", config=TrainConfig(steps=4, batch_size=2, device="cpu")
    )
    assert result.step == 4 and result.final_checkpoint is not None
    assert not partial.exists()  # cleared by the next successful save


def test_fresh_start_ignores_a_saved_state(tmp_path):
    train_data = dataset(3, 0)
    train(TINY, train_data, tmp_path / "run", config=TrainConfig(steps=2, batch_size=2, device="cpu"))
    result = train(
        TINY,
        train_data,
        tmp_path / "run",
        config=TrainConfig(steps=1, batch_size=2, device="cpu"),
        resume=False,
    )
    assert result.step == 1


def test_a_damaged_state_is_a_clear_error(tmp_path):
    train_data = dataset(3, 0)
    train(TINY, train_data, tmp_path / "run", config=TrainConfig(steps=1, batch_size=2, device="cpu"))
    (tmp_path / "run" / "state" / "ema.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        train(TINY, train_data, tmp_path / "run", config=TrainConfig(steps=2, batch_size=2, device="cpu"))


def test_a_state_saved_without_its_best_step_resumes_knowing_it(tmp_path):
    """States written before the best step was recorded keep only the best score: the step
    comes back from the logged history, and the progress line names it (not "step None")."""
    train_data, validation_data = dataset(5, 0), dataset(1, 1)
    cancel, progress = cancel_at(4)
    first = train(
        TINY,
        train_data,
        tmp_path / "run",
        config=CONFIG,
        validation_data=validation_data,
        progress=progress,
        cancel=cancel,
    )
    assert first.cancelled and first.best_step is not None
    state = tmp_path / "run" / "state" / "state.json"
    document = json.loads(state.read_text())
    del document["best_step"]
    state.write_text(json.dumps(document))
    reports = []
    resumed = train(
        TINY,
        train_data,
        tmp_path / "run",
        config=CONFIG,
        validation_data=validation_data,
        progress=reports.append,
    )
    assert reports[0].best_step == first.best_step
    assert resumed.best_step is not None
