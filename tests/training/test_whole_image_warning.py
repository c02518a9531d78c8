"""The whole-image warning's rule and signals, and what a version's Dice was measured on (issue 30)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsegdiff_training.whole_image_warning import (
    DEFAULT_RULE,
    AnswerSignals,
    TrainingLook,
    WarningRule,
    answer_signals,
    judge_signals,
    judge_whole_image,
)

GREY_300 = TrainingLook((300, 300), (300, 300), colour=False)


def _blob(shape=(300, 300), share=0.3):
    probabilities = np.zeros(shape, np.float32)
    side = int(np.sqrt(share * shape[0] * shape[1]))
    probabilities[:side, :side] = 1.0
    return probabilities


def test_the_module_needs_no_torch():
    code = (
        "import sys, medsegdiff_training.whole_image_warning, medsegdiff_training.score_labels; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_an_answer_like_the_training_ones_is_not_warned_about():
    image = np.random.default_rng(0).random((300, 300))
    verdict = judge_whole_image(image, _blob(), np.zeros((300, 300)), GREY_300)
    assert not verdict.poor and verdict.reasons == () and verdict.message() == ""
    assert verdict.signals.size_ratio == 1.0 and not verdict.signals.colour


@pytest.mark.parametrize(
    ("shape", "uncertainty", "reason"),
    [
        ((900, 900), 0.0, "the image is 3.0 times the size of its training images"),
        ((200, 200), 0.0, "the image is 0.7 times the size of its training images"),
        ((300, 300), 0.2, "the ensemble disagrees about 67 % of the object"),
    ],
)
def test_size_and_disagreement_each_give_the_warning_and_say_why(shape, uncertainty, reason):
    image = np.random.default_rng(0).random(shape)
    verdict = judge_whole_image(image, _blob(shape), np.full(shape, uncertainty), GREY_300)
    assert verdict.poor and reason in verdict.reasons
    assert "draw a box around the object" in verdict.message("'default'")


def test_an_image_unlike_the_training_intensities_is_told_apart():
    ultrasound = np.random.default_rng(0).gamma(2.0, 30.0, (300, 300))
    look = TrainingLook.of_images([ultrasound])
    mri_like = np.zeros((300, 300))
    mri_like[100:200, 100:200] = np.random.default_rng(1).random((100, 100))  # mostly black
    near = answer_signals(ultrasound, _blob(), np.zeros((300, 300)), look).histogram_distance
    far = answer_signals(mri_like, _blob(), np.zeros((300, 300)), look).histogram_distance
    assert near is not None and far is not None and near < 0.05 < DEFAULT_RULE.histogram_distance < far
    assert (
        "its intensities are unlike those of its training images"
        in judge_whole_image(mri_like, _blob(), np.zeros((300, 300)), look).reasons
    )


def test_colour_and_the_rule_options_that_ignore_or_use_it():
    photo = np.random.default_rng(0).random((300, 300, 3))
    signals = answer_signals(photo, _blob(), np.full((300, 300), 0.01), GREY_300)
    assert signals.colour
    rule = WarningRule(1.0, 0.0, 1.01, 1.0, 2.0, None, None)
    assert not judge_signals(signals, rule).poor  # colour alone never warns under this rule
    colour_rule = WarningRule(1.0, 0.0, 1.01, 1.0, 2.0, None, 0.0)
    assert judge_signals(signals, colour_rule).reasons == (
        "the image has colour where its training images were grey",
    )


def test_one_sample_has_no_disagreement_and_size_alone_decides():
    signals = answer_signals(np.zeros((600, 600)), _blob((600, 600)), None, GREY_300)
    assert not signals.ensemble and signals.disagreement == 0.0
    rule = WarningRule(0.1, 0.0, 1.01, 1.0, 1.5, 0.3, None)  # with an ensemble: size and disagreement
    assert judge_signals(signals, rule).poor  # without one: the size alone


def test_without_a_recorded_look_only_the_answer_is_judged():
    signals = answer_signals(np.zeros((900, 900)), _blob((900, 900)), np.zeros((900, 900)), None)
    assert signals.size_ratio is None and signals.histogram_distance is None
    assert not judge_signals(signals, DEFAULT_RULE).poor


def test_the_look_round_trips_through_a_checkpoint_document():
    look = TrainingLook.of_images([np.zeros((300, 280)), np.ones((320, 300, 3)) * [1, 0, 0]])
    assert look.height == (300, 320) and look.width == (280, 300) and look.colour
    assert TrainingLook.of_checkpoint({"training_data": {"image_look": look.to_dict()}}) == TrainingLook(
        look.height, look.width, look.colour, tuple(round(v, 5) for v in look.histogram)
    )
    assert TrainingLook.of_checkpoint({}) is None
    assert TrainingLook.of_checkpoint({"training_data": {"image_look": {"height": "x"}}}) is None


def test_the_shipped_models_record_their_training_images_look():
    from medsegdiff_training.checkpoint_files import read_checkpoint_config
    from medsegdiff_training.registry import ModelRegistry

    registry = ModelRegistry()
    default = TrainingLook.of_checkpoint(read_checkpoint_config(registry.get("default").path))
    assert default is not None and default.height == default.width == (300, 300) and not default.colour
    assert default.histogram is not None and abs(sum(default.histogram) - 1) < 1e-3
    fundus = TrainingLook.of_checkpoint(read_checkpoint_config(registry.get("drishti-disc-cup").path))
    assert fundus is not None and fundus.colour and fundus.height == (512, 512)


def test_the_core_rule_is_the_one_the_benchmark_chose_and_meets_the_goal(repository_root: Path):
    results = repository_root / "benchmarks" / "results"
    if not (results / "whole_image_warning.json").is_file():
        pytest.skip("no whole_image_warning benchmark result")
    chosen = json.loads((results / "whole_image_warning.json").read_text())
    assert WarningRule(**chosen["rule"]) == DEFAULT_RULE
    columns = json.loads((results / chosen["records"]).read_text())
    signals = [key for key in AnswerSignals.__dataclass_fields__ if key in columns]
    test = [i for i, split in enumerate(columns["split"]) if split == "test"]
    warned = {
        i: judge_signals(AnswerSignals(**{key: columns[key][i] for key in signals}), DEFAULT_RULE).poor
        for i in test
    }
    poor = [warned[i] for i in test if columns["dice"][i] < 0.5]
    good = [warned[i] for i in test if columns["dice"][i] >= 0.8]
    reported = chosen["results"]["test"]["all"]["rule"]
    # the core's own verdicts on the recorded signals give the rates the benchmark reported
    assert (len(poor), len(good)) == (reported["poor_images"], reported["good_images"])
    assert np.mean(poor) == pytest.approx(reported["warned_on_poor"])
    assert np.mean(good) == pytest.approx(reported["warned_on_good"])
    assert np.mean(poor) >= 0.9 and np.mean(good) <= 0.1  # the goal, on the test splits


# -- what a Dice was measured on ----------------------------------------------------------------


def test_the_shipped_default_says_its_validation_images(medsegdiff_home):
    from medsegdiff_training.registry import ModelRegistry
    from medsegdiff_training.score_labels import version_score

    score = version_score(ModelRegistry().get("default"))
    assert score.label() == "Dice 0.882 on 30 held-out DDTI training images"
    assert score.details().startswith("Dice 0.882 on 30 held-out DDTI training images: 101_1(1), 101_1(2)")
    assert score.details().endswith("and 27 more")


def test_a_fine_tuned_version_is_scored_beside_its_parent_on_the_same_corrections(
    medsegdiff_home, finetune_setup
):
    from medsegdiff_training.finetune import finetune
    from medsegdiff_training.finetune_options import FinetuneOptions
    from medsegdiff_training.score_labels import version_score

    registry, store, _ = finetune_setup
    result = finetune(
        FinetuneOptions(parent="parent", store=str(store.root)).replace(steps=1), registry=registry
    )
    score = version_score(result.version)
    assert score.parent == "parent" and len(score.images) == 1  # 5 corrections: 1 held out
    assert score.images[0] in [entry.id for entry in store.entries()]
    assert score.dice == pytest.approx(result.validation_dice_after)
    assert score.parent_dice == pytest.approx(result.validation_dice_before)
    assert score.label().endswith("on 1 held-out correction")
    comparison = score.comparison(result.version.name)
    assert comparison.startswith("On the same 1 held-out correction (") and "parent Dice" in comparison


def test_a_fine_tune_without_held_out_corrections_says_it_was_not_compared():
    from medsegdiff_training.score_labels import VersionScore

    score = VersionScore(None, (), "held-out correction", parent="default", parent_dice=None)
    assert score.label().startswith("not scored: no correction was held out")
    assert score.comparison("v2").startswith("v2 was not compared with default")
