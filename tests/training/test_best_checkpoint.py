"""Keep the best, stop when it stops improving: real fine-tunes of a tiny model.

The held-out score is made to peak at a known step, exactly: a first fine-tune of 4 steps
makes a child, whose prediction on the held-out correction then *becomes* that correction's
label (in a copy of the store, everything else byte-identical). A second fine-tune of the
same recipe follows the same trajectory step for step, so its EMA weights at step 4 are the
first child's, score Dice 1 there and less elsewhere: it must register exactly those
weights, and, with a patience of 4 steps, stop at step 8 of its 40.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import read_checkpoint_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.data.writers import write_label_map
from medsegdiff_training.finetune import finetune
from medsegdiff_training.finetune_data import split_entries
from medsegdiff_training.finetune_events import FinetuneDone, end_event
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.samplers import run_to_end
from medsegdiff_training.schedule import NoiseSchedule
from medsegdiff_training.train_config import TrainConfig
from medsegdiff_training.trainer import train, validation_dice

SAMPLING = SamplingSettings(sampler="ddim", steps=2, ensemble=1, seed=0)
RECIPE = TrainConfig(
    steps=4,
    batch_size=2,
    learning_rate=3e-3,
    lr_schedule="constant",  # the same trajectory whatever the budget
    device="cpu",
    precision="fp32",
    augment=None,
    validate_every=2,
    validation_images=None,
    validation_sampling=SAMPLING,
    checkpoint_every=10**6,
)
PEAK = 4


def weights(registry, name: str) -> dict[str, torch.Tensor]:
    return registry.load(name, device="cpu").model.state_dict()


def prediction(registry, name: str, image: torch.Tensor) -> np.ndarray:
    """The label map ``name`` gives one prepared image, as a validation scores it."""
    segmenter = Segmenter(registry.load(name, device="cpu"), device="cpu", amp=False)
    final = run_to_end(segmenter.denoise(image[None], SAMPLING))
    return segmenter.summarise(final, SAMPLING)[0].labels


@pytest.fixture
def peaked(finetune_setup):
    """(registry, a store whose held-out correction is the step-4 child's prediction, that child)."""
    registry, store, tmp_path = finetune_setup
    first = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, run_dir=tmp_path / "a", name="at-4", object_crops=False
        ).replace(**vars(RECIPE) | {"keep_best": False}),
        registry=registry,
    )
    assert first.steps == PEAK
    (held,) = split_entries(store.entries())[1]
    checkpoint = registry.load("at-4", device="cpu")
    image = store.as_dataset(checkpoint.model_config, checkpoint.preprocess, [held])[0][0]
    labels = prediction(registry, "at-4", image)
    assert 0 < labels.sum() < labels.size, "the step-4 child must predict some object, not all"
    copy = tmp_path / "peaked"
    shutil.copytree(store.root, copy)
    write_label_map(copy / "entries" / held.id / "labels.tif", labels.astype(np.uint8))
    return registry, CorrectionsStore(copy), tmp_path


def test_a_finetune_whose_held_out_score_peaks_early_registers_the_peak(peaked):
    registry, store, tmp_path = peaked
    result = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, run_dir=tmp_path / "b", name="best", object_crops=False
        ).replace(**vars(RECIPE) | {"steps": 40, "keep_best": True, "patience": 4}),
        registry=registry,
    )
    curve = {entry["step"]: entry["validation_dice"] for entry in result.history}
    assert curve[PEAK] == 1.0 and all(dice < 1.0 for step, dice in curve.items() if step != PEAK)
    # the peak is registered, not the last weights: exactly the step-4 child's
    assert result.best_step == PEAK
    registered, at_peak = weights(registry, "best"), weights(registry, "at-4")
    assert all(torch.equal(registered[name], at_peak[name]) for name in at_peak)
    # 4 steps without a better score, then it stopped: at step 8, not 40
    assert (result.steps, result.stopped_early) == (PEAK + 4, True)
    assert sorted(curve) == [2, 4, 6, 8]
    metrics = registry.get("best").metrics
    assert (metrics["best_step"], metrics["steps"], metrics["stopped_early"]) == (PEAK, 8, True)
    document = read_checkpoint_config(registry.get("best").path)
    assert document["training"]["kept"] == "best" and document["metrics"]["last_validation_dice"] < 1.0
    assert document["metrics"]["validation_dice"] == 1.0  # the curve's score of the weights kept
    # before and after: parent and child scored as the annotator segments (DDIM 3 x 5)
    assert metrics["validation_dice_after"] == result.validation_dice_after
    assert 0 < result.validation_dice_after <= 1
    done = end_event(result, 1.0, 1.0)
    assert isinstance(done, FinetuneDone) and (done.best_step, done.stopped_early) == (PEAK, True)


def test_without_keep_best_the_last_weights_are_registered(peaked):
    """The paper's way (and ``--no-keep-best``): the run's last EMA weights, scored last."""
    registry, store, tmp_path = peaked
    result = finetune(
        FinetuneOptions(
            parent="parent", store=store.root, run_dir=tmp_path / "c", name="last", object_crops=False
        ).replace(**vars(RECIPE) | {"steps": 8, "keep_best": False}),
        registry=registry,
    )
    assert result.steps == 8 and not result.stopped_early
    document = read_checkpoint_config(registry.get("last").path)
    assert document["metrics"]["validation_dice"] == result.history[-1]["validation_dice"] < 1.0
    registered, at_peak = weights(registry, "last"), weights(registry, "at-4")
    assert not all(torch.equal(registered[name], at_peak[name]) for name in at_peak)
    assert document["training"]["kept"] == "last"


def test_a_resumed_run_keeps_the_best_it_had(peaked):
    """Cancelled after the peak and resumed: the best weights come back from the saved state."""
    registry, store, tmp_path = peaked
    options = FinetuneOptions(
        parent="parent", store=store.root, run_dir=tmp_path / "d", name="resumed", object_crops=False
    ).replace(**vars(RECIPE) | {"steps": 12, "keep_best": True, "checkpoint_every": 2})
    steps = []

    def cancel_at_six() -> bool:
        return bool(steps) and steps[-1] >= 6

    cancelled = finetune(
        options, registry=registry, progress=lambda p: steps.append(p.step), cancel=cancel_at_six
    )
    assert cancelled.cancelled and cancelled.steps == 6
    resumed = finetune(options, registry=registry)
    assert (resumed.steps, resumed.best_step) == (12, PEAK)
    registered, at_peak = weights(registry, "resumed"), weights(registry, "at-4")
    assert all(torch.equal(registered[name], at_peak[name]) for name in at_peak)


def tiny_blobs(blob):
    """(the tiny configuration, 4 blob images to train on, 2 held out to validate on)."""
    from medsegdiff_training.config import named_config
    from medsegdiff_training.data.dataset import SegmentationDataset

    rng = np.random.default_rng(3)
    pairs = [blob(rng) for _ in range(6)]
    tiny = named_config("tiny")
    data = SegmentationDataset.from_arrays([p[0] for p in pairs[:4]], [p[1] for p in pairs[:4]], tiny)
    held = SegmentationDataset.from_arrays([p[0] for p in pairs[4:]], [p[1] for p in pairs[4:]], tiny)
    return tiny, data, held


def test_the_trainer_scores_the_weights_it_keeps(finetune_setup, blob):
    """train() itself: final/ holds the best validation's EMA weights, which score what was logged."""
    from medsegdiff_training.checkpoint import load_checkpoint

    _, _, tmp_path = finetune_setup
    tiny, data, held = tiny_blobs(blob)
    config = replace(RECIPE, steps=10, keep_best=True, learning_rate=1e-2)
    result = train(tiny, data, tmp_path / "t", config=config, validation_data=held)
    best = max(result.history, key=lambda entry: entry["validation_dice"])  # the first of equals
    assert (result.best_step, result.final_validation_dice) == (best["step"], best["validation_dice"])
    kept = load_checkpoint(result.final_checkpoint)
    rescored = validation_dice(kept.model, NoiseSchedule(kept.diffusion), held, SAMPLING, torch.device("cpu"))
    assert rescored == best["validation_dice"]


def kept_by_margin(history: list[dict], margin: float) -> dict:
    """The validation a best-margin rule keeps: the first, then each that beats it by > margin."""
    kept = history[0]
    for entry in history[1:]:
        if entry["validation_dice"] > kept["validation_dice"] + margin:
            kept = entry
    return kept


def test_a_best_margin_keeps_the_earlier_weights_unless_beaten_by_more(finetune_setup, blob):
    """A later score that beats the best by no more than ``best_margin`` does not replace it:
    the same run (same seed, same trajectory) keeps later weights the smaller the margin."""
    from medsegdiff_training.checkpoint import load_checkpoint

    _, _, tmp_path = finetune_setup
    tiny, data, held = tiny_blobs(blob)
    kept_steps = []
    for margin in (0.0, 0.05, 0.99):
        config = replace(RECIPE, steps=10, keep_best=True, learning_rate=1e-2, best_margin=margin)
        result = train(tiny, data, tmp_path / f"t{margin}", config=config, validation_data=held)
        kept = kept_by_margin(result.history, margin)
        assert (result.best_step, result.final_validation_dice) == (kept["step"], kept["validation_dice"])
        loaded = load_checkpoint(result.final_checkpoint)
        schedule = NoiseSchedule(loaded.diffusion)
        assert (
            validation_dice(loaded.model, schedule, held, SAMPLING, torch.device("cpu"))
            == kept["validation_dice"]
        )
        kept_steps.append(result.best_step)
    scores = [entry["validation_dice"] for entry in result.history]
    assert max(scores) > scores[0], "the tiny run must improve at all for the margins to differ"
    # no margin: the best of the curve; a margin above any gain: the first validation's weights
    assert kept_steps[0] == result.history[scores.index(max(scores))]["step"]
    assert kept_steps[2] == result.history[0]["step"] < kept_steps[0]
    assert kept_steps[0] >= kept_steps[1] >= kept_steps[2]


def test_a_best_margin_outside_0_to_1_is_refused():
    from medsegdiff_training.errors import ConfigError

    for margin in (-0.01, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="best_margin"):
            replace(RECIPE, best_margin=margin)
