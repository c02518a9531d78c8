"""The fine-tune contract: one options type that crosses the process boundary unchanged, and
events that a plugin and a core which disagree cannot misread."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from medsegdiff_training.cli import build_parser
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.finetune_events import (
    EVENT_TYPES,
    FinetuneCancelled,
    FinetuneDone,
    FinetuneEvent,
    FinetuneEventError,
    FinetuneFailed,
    FinetuneProgress,
    FinetuneStarted,
)
from medsegdiff_training.finetune_options import (
    CONFIG_FLAGS,
    OPTION_FLAGS,
    FinetuneOptions,
    finetune_argv,
    options_from_args,
    process_arguments,
)
from medsegdiff_training.train_config import DEFAULT_FINETUNE_CONFIG


def through_the_cli(options: FinetuneOptions) -> FinetuneOptions:
    """``options`` as the fine-tune process gets them: to a command line and parsed back."""
    return options_from_args(build_parser().parse_args(["finetune", *finetune_argv(options)]))


def every_option_changed() -> FinetuneOptions:
    """Options with every field the command line carries away from its default."""
    return FinetuneOptions(
        parent="-v1 odd name",  # a value that starts with "-" stays a value
        store=Path("/data/corrections store"),
        name="child",
        description="tuned on Monday's corrections",
        select=True,
        run_dir=Path("runs/ft"),
        validation_fraction=0.25,
        mix_original=True,
        original_images=Path("originals/images"),
        original_masks=Path("originals/masks"),
        mask_loss_weight=0.0,
        channels=3,
        num_classes=4,
        object_crops=False,
    ).replace(
        steps=17,
        minutes=2.5,
        clock="cpu",
        batch_size=3,
        learning_rate=1e-4,
        lr_schedule="cosine",
        warmup_steps=0,
        timestep_floor=0.0,
        seed=7,
        device="cpu",
        precision="fp32",
        channels_last=False,
        compile="default",
        num_workers=2,
        validate_every=7,
        patience=120,
        best_margin=0.01,
        keep_best=False,
    )


@pytest.mark.parametrize(
    "options",
    [
        FinetuneOptions(),
        every_option_changed(),
        every_option_changed().replace(channels_last=True, select=False, mix_original=False),
        every_option_changed().replace(patience=None, keep_best=True, object_crops=True),
        FinetuneOptions(parent="v2", store="corrections").replace(steps=None, minutes=3.0),  # the queue's
        FinetuneOptions().replace(steps=50, minutes=None),
    ],
    ids=["defaults", "everything", "switches-flipped", "best-weights", "minutes-alone", "steps-alone"],
)
def test_options_round_trip_through_the_clis_parser(options):
    assert through_the_cli(options) == options


def test_every_field_is_changed_in_the_round_trip_test():
    changed, defaults = every_option_changed(), FinetuneOptions()
    for name in OPTION_FLAGS:
        assert getattr(changed, name) != getattr(defaults, name), name
    for name in CONFIG_FLAGS:
        assert getattr(changed.config, name) != getattr(DEFAULT_FINETUNE_CONFIG, name), name


def test_the_flag_table_and_the_finetune_parser_name_the_same_options():
    parser = build_parser()
    finetune = next(
        action.choices["finetune"] for action in parser._actions if getattr(action, "choices", None)
    )
    parsed = {
        option: action.dest
        for action in finetune._actions
        for option in action.option_strings
        if option.startswith("--") and not option.startswith("--no-")
    }
    # only the process's own switches are not fine-tune options
    assert set(parsed) - {"--help", "--progress-json", "--registry"} == {
        *OPTION_FLAGS.values(),
        *CONFIG_FLAGS.values(),
    }
    for name, flag in {**OPTION_FLAGS, **CONFIG_FLAGS}.items():
        assert parsed[flag] == name, flag  # argparse's destination is the field's name


def test_a_recipe_the_command_line_cannot_carry_is_refused():
    options = FinetuneOptions().replace(ema_decay=0.9, validation_images=5)
    with pytest.raises(ConfigError, match="cannot set ema_decay, validation_images"):
        finetune_argv(options)


def test_the_process_command_asks_for_json_events():
    arguments = process_arguments(FinetuneOptions(parent="v1"))
    assert arguments[:3] == ["-m", "medsegdiff_training", "finetune"] and arguments[-1] == "--progress-json"
    assert "--parent=v1" in arguments


def test_paths_and_their_strings_are_the_same_options():
    assert FinetuneOptions(store="a/b", run_dir="r") == FinetuneOptions(store=Path("a/b"), run_dir=Path("r"))


EVENTS = [
    FinetuneStarted(parent="v1", store="/s", corrections=5, plan="binary, grey, as the parent"),
    FinetuneProgress(
        step=3,
        total_steps=None,
        loss=0.25,
        validation_dice=0.5,
        elapsed_s=1.5,
        remaining_s=None,
        validation_step=2,
        best_validation_dice=0.625,
        best_step=1,
    ),  # fmt: skip
    FinetuneDone(
        version="v2",
        parent="v1",
        path="/models/v2",
        steps=3,
        validation_dice_before=0.5,
        validation_dice_after=0.75,
        adaptation={"channels": 1, "classes": 2},
        seconds=12.0,
        cpu_seconds=11,
        best_step=2,
        stopped_early=True,
    ),  # fmt: skip
    FinetuneCancelled(steps=2, run_dir="runs/ft"),
    FinetuneFailed(message="The corrections store is empty."),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: event.kind)
def test_every_event_reads_back_as_itself(event):
    assert FinetuneEvent.parse(event.to_json()) == event
    assert FinetuneEvent.parse(event.to_json().encode()) == event  # a process's bytes


def test_every_event_kind_is_tested():
    assert {event.kind for event in EVENTS} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: event.kind)
def test_a_renamed_field_is_refused_loudly(event):
    document = json.loads(event.to_json())
    first = next(name for name in document if name != "event")
    document[first + "_renamed"] = document.pop(first)
    with pytest.raises(FinetuneEventError, match=f"lacks {first} and has unknown {first}_renamed"):
        FinetuneEvent.parse(json.dumps(document))


def test_a_done_event_that_lost_its_version_never_reads_as_one():
    document = json.loads(EVENTS[2].to_json())
    del document["version"]
    with pytest.raises(FinetuneEventError, match="lacks version"):
        FinetuneEvent.parse(json.dumps(document))
    document["version"] = None  # present, but nothing to switch to
    with pytest.raises(FinetuneEventError, match="version=None"):
        FinetuneEvent.parse(json.dumps(document))


def test_unknown_events_and_wrong_types_are_refused_and_other_lines_ignored():
    with pytest.raises(FinetuneEventError, match="unknown event 'finished'"):
        FinetuneEvent.parse('{"event": "finished"}')
    with pytest.raises(FinetuneEventError, match="step='3'"):
        FinetuneEvent.parse(json.dumps({**json.loads(EVENTS[1].to_json()), "step": "3"}))
    with pytest.raises(FinetuneEventError, match="steps=True"):
        FinetuneEvent.parse('{"event": "cancelled", "steps": true, "run_dir": ""}')
    # a library's print, or JSON that is no event: not ours, not an error
    assert FinetuneEvent.parse("Downloading weights...") is None
    assert FinetuneEvent.parse('{"loss": 0.1}') is None and FinetuneEvent.parse("[1, 2]") is None


def test_a_diverged_loss_is_written_as_null():
    event = dataclasses.replace(EVENTS[1], loss=float("nan"))
    assert json.loads(event.to_json())["loss"] is None
    assert FinetuneEvent.parse(event.to_json()).loss is None
