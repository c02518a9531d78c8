"""The CLI's parsing: fast (no torch), defaults from the config modules, options to TrainConfig."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medsegdiff_training.cli import build_parser
from medsegdiff_training.cli.models import MODELS_ACTIONS
from medsegdiff_training.cli.train import train_config_of
from medsegdiff_training.train_config import DEFAULT_FINETUNE_CONFIG, AugmentConfig, TrainConfig

PROBE = """
import sys
from medsegdiff_training.cli import main
try:
    main({argv!r})
except SystemExit as stop:
    print("exit", stop.code)
print("torch loaded:", "torch" in sys.modules)
"""


ARGVS = [
    ["--help"],
    ["train", "--help"],
    ["evaluate", "--help"],  # with the speed options, whose choices come from torch-free modules
    ["train"],
    ["predict", "--sampler", "euler"],
    ["train", "--precision", "half"],
]


@pytest.mark.parametrize("argv", ARGVS)
def test_help_and_argument_errors_do_not_load_torch(argv):
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True)
    assert "torch loaded: False" in done.stdout, done.stdout + done.stderr
    assert ("exit 0" if argv[-1] == "--help" else "exit 2") in done.stdout


def test_train_options_become_the_train_config_field_by_field():
    parser = build_parser()
    base = ["train", "--images", "i", "--masks", "m", "--out", "o"]
    args = parser.parse_args([*base, "--minutes", "5", "--lr", "0.01", "--batch-size", "3", "--no-amp"])
    config = train_config_of(args, "cpu")
    assert (config.steps, config.minutes, config.learning_rate, config.batch_size) == (None, 5.0, 0.01, 3)
    assert config.amp is False and config.augment == AugmentConfig() and config.device == "cpu"
    defaults = train_config_of(parser.parse_args([*base, "--steps", "7", "--no-augment"]), "cpu")
    assert defaults == TrainConfig(steps=7, augment=None, device="cpu")


def test_finetune_options_show_the_finetune_defaults():
    args = build_parser().parse_args(["finetune"])
    assert (args.steps, args.batch_size, args.learning_rate) == (
        None,
        DEFAULT_FINETUNE_CONFIG.batch_size,
        DEFAULT_FINETUNE_CONFIG.learning_rate,
    )


def test_every_models_action_has_its_command():
    parser = build_parser()
    for action in MODELS_ACTIONS:
        needs_name = ["a", "b"] if action == "rename" else ["a"] if action in ("select", "delete") else []
        assert parser.parse_args(["models", action, *needs_name]).action == action
    with pytest.raises(SystemExit):
        parser.parse_args(["models", "promote"])
