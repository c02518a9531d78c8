"""The training loop: it learns, reports progress, stops on cancel and on its time budget."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from medsegdiff_training.checkpoint import load_checkpoint, read_checkpoint_config
from medsegdiff_training.config import named_config
from medsegdiff_training.data import SegmentationDataset
from medsegdiff_training.errors import Cancelled, ConfigError, DatasetError
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.trainer import TrainConfig, raise_if_cancelled, train

TINY = named_config("tiny")


def squares(count: int, seed: int = 0) -> SegmentationDataset:
    """Bright squares on noise, 32x32: a task a tiny model starts to learn in a few steps."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(count):
        mask = np.zeros((32, 32), np.uint8)
        row, col = rng.integers(8, 24, 2)
        mask[row - 5 : row + 5, col - 5 : col + 5] = 1
        images.append(rng.normal(0, 0.2, (32, 32)) + mask)
        labels.append(mask)
    return SegmentationDataset.from_arrays(images, labels, TINY)


def quick(**changes) -> TrainConfig:
    values = dict(
        steps=4, batch_size=4, augment=None, checkpoint_every=10**6, validate_every=10**6, device="cpu"
    )
    values.update(changes)
    return TrainConfig(**values)


@pytest.mark.precision_policy  # trains in bf16 where "auto" says so
def test_a_few_steps_lower_the_loss(tmp_path):
    losses = []
    train(
        TINY,
        squares(16),
        tmp_path / "run",
        config=quick(steps=30, batch_size=8, learning_rate=2e-3),
        progress=lambda p: losses.append(p.loss),
    )
    assert len(losses) == 30
    first, last = np.mean(losses[:6]), np.mean(losses[-6:])
    assert last < 0.7 * first, f"loss went from {first:.3f} to {last:.3f}"


def test_progress_reports_every_step_with_time_left(tmp_path):
    reports = []
    result = train(TINY, squares(4), tmp_path / "run", config=quick(steps=3), progress=reports.append)
    assert [r.step for r in reports] == [1, 2, 3]
    assert all(r.total_steps == 3 and np.isfinite(r.loss) and r.images_per_s > 0 for r in reports)
    assert reports[-1].remaining_s == pytest.approx(0.0)
    assert result.final_checkpoint == tmp_path / "run" / "final"
    assert load_checkpoint(result.final_checkpoint).model_config == TINY


def test_cancel_stops_before_the_next_step_and_keeps_a_resumable_state(tmp_path):
    cancel = threading.Event()

    def progress(report):
        if report.step == 2:
            cancel.set()

    result = train(
        TINY, squares(4), tmp_path / "run", config=quick(steps=50), progress=progress, cancel=cancel
    )
    assert result.cancelled and result.step == 2
    assert result.final_checkpoint is None and not (tmp_path / "run" / "final").exists()
    state = json.loads((tmp_path / "run" / "state" / "state.json").read_text())
    assert state["step"] == 2
    with pytest.raises(Cancelled, match="step 2"):
        raise_if_cancelled(result)


def test_a_callable_cancel_token_works_too(tmp_path):
    result = train(TINY, squares(4), tmp_path / "run", config=quick(steps=10), cancel=lambda: True)
    assert result.cancelled and result.step == 0


class _StepClock:
    """``time`` for the trainer, with a clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def _steps_taking(seconds: float, monkeypatch):
    """A progress callback that moves the trainer's clock ``seconds`` at every step."""
    import medsegdiff_training.trainer as trainer_module

    clock = _StepClock()
    monkeypatch.setattr(trainer_module, "time", clock)

    def tick(report) -> None:
        clock.now += seconds

    return tick


def test_a_minutes_budget_ends_the_run(tmp_path, monkeypatch):
    tick = _steps_taking(30.0, monkeypatch)
    result = train(TINY, squares(4), tmp_path / "run", config=quick(steps=None, minutes=1.0), progress=tick)
    assert not result.cancelled and result.step == 2  # 2 x 30 s spend the minute
    training = read_checkpoint_config(result.final_checkpoint)["training"]
    assert training["steps"] == 2 and training["wall_time_s"] == pytest.approx(60.0)
    # with both budgets, the first reached wins: here the steps
    both = train(TINY, squares(4), tmp_path / "both", config=quick(steps=3, minutes=60.0), progress=tick)
    assert both.step == 3


def test_a_minutes_budget_is_not_overrun_by_a_step(tmp_path, monkeypatch):
    tick = _steps_taking(25.0, monkeypatch)
    # 2 x 25 s leave 10 s of the minute: a third 25 s step would end past it, so none starts
    result = train(TINY, squares(4), tmp_path / "run", config=quick(steps=None, minutes=1.0), progress=tick)
    assert result.step == 2
    assert read_checkpoint_config(result.final_checkpoint)["training"]["wall_time_s"] == pytest.approx(50.0)


def test_a_budget_spent_before_the_first_step_saves_no_model(tmp_path, monkeypatch):
    import medsegdiff_training.trainer as trainer_module

    class _Spent(_StepClock):
        def monotonic(self) -> float:
            self.now += 120.0  # every reading is two minutes later: the budget is gone at once
            return self.now

    monkeypatch.setattr(trainer_module, "time", _Spent())
    with pytest.raises(ConfigError, match="before the first training step"):
        train(TINY, squares(4), tmp_path / "run", config=quick(steps=None, minutes=1.0))
    assert not (tmp_path / "run" / "final").exists()


@pytest.mark.parametrize(
    ("budget", "message"),
    [({"steps": 0}, "steps must be at least 1"), ({"steps": None, "minutes": 0.0}, "minutes must be")],
)
def test_an_empty_budget_is_a_clear_error(budget, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**budget)


def test_validation_is_logged_and_recorded_with_the_final_model(tmp_path):
    config = quick(
        steps=4,
        validate_every=2,
        validation_images=2,
        validation_sampling=SamplingSettings(sampler="ddim", steps=2, ensemble=1),
    )
    result = train(
        TINY,
        squares(6),
        tmp_path / "run",
        config=config,
        validation_data=squares(2, seed=1),
        metadata={"description": "test run"},
    )
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [2, 4]
    assert all(0 <= entry["validation_dice"] <= 1 for entry in log)
    document = read_checkpoint_config(result.final_checkpoint)
    assert document["metrics"]["validation_dice"] == log[-1]["validation_dice"]
    assert document["description"] == "test run"
    assert document["training"]["data_digest"] == squares(6).digest()


def test_the_last_step_is_validated_even_off_the_cadence(tmp_path):
    config = quick(
        steps=3,
        validate_every=2,
        validation_images=1,
        validation_sampling=SamplingSettings(sampler="ddim", steps=2, ensemble=1),
    )
    result = train(TINY, squares(4), tmp_path / "run", config=config, validation_data=squares(1, seed=1))
    assert [entry["step"] for entry in result.history] == [2, 3]


def test_a_budget_is_required():
    with pytest.raises(ConfigError, match="budget"):
        TrainConfig(steps=None, minutes=None)


def test_no_training_data_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no training data"):
        train(TINY, SegmentationDataset([]), tmp_path / "run", config=quick())
