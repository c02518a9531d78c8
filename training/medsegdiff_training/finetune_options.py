"""What a fine-tune is asked to do: :class:`FinetuneOptions`, one type for every caller.

:func:`~medsegdiff_training.finetune.finetune` takes it; ``medsegdiff finetune`` parses its
command line into it (:func:`options_from_args`); the napari plugin turns it into that
command line (:func:`finetune_argv`) to run a fine-tune in its own process; the annotation
session and ``simulate-annotation`` fill in a parent and a store for each fine-tune they
start. Both directions read the one table of flags below, and a test round-trips every
option through the CLI's parser, so the two sides of the process boundary cannot drift.
No torch here (the plugin builds its requests on the GUI thread).

Examples
--------
>>> from dataclasses import replace
>>> options = FinetuneOptions(parent="default", store="corrections",
...                           config=replace(DEFAULT_FINETUNE_CONFIG, steps=None, minutes=3.0))
>>> finetune_argv(options)
['--parent=default', '--store=corrections', '--minutes=3.0']
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .train_config import DEFAULT_FINETUNE_CONFIG, HELD_OUT_CURVE_EVERY, TrainConfig, train_config_from

# FinetuneOptions fields -> the ``medsegdiff finetune`` flags that set them (argparse's
# destination is the field's name). Booleans are switches; the rest take a value.
OPTION_FLAGS = {
    "parent": "--parent",
    "store": "--store",
    "name": "--name",
    "description": "--description",
    "select": "--select",
    "run_dir": "--run-dir",
    "validation_fraction": "--validation-fraction",
    "mix_original": "--mix-original",
    "original_images": "--original-images",
    "original_masks": "--original-masks",
    "mask_loss_weight": "--mask-loss-weight",
    "channels": "--channels",
    "num_classes": "--num-classes",
    "object_crops": "--object-crops",  # --no-object-crops for False
}
# TrainConfig fields the command line sets -> their flags; every other field of the config
# stays DEFAULT_FINETUNE_CONFIG's in a fine-tune process.
CONFIG_FLAGS = {
    "steps": "--steps",
    "minutes": "--minutes",
    "clock": "--clock",
    "batch_size": "--batch-size",
    "learning_rate": "--lr",
    "lr_schedule": "--lr-schedule",
    "warmup_steps": "--warmup-steps",
    "timestep_floor": "--timestep-floor",
    "seed": "--seed",
    "device": "--device",
    "precision": "--precision",
    "channels_last": "--channels-last",  # --no-channels-last for False
    "compile": "--compile",
    "num_workers": "--num-workers",
    "validate_every": "--validate-every",
    "patience": "--patience",
    "best_margin": "--best-margin",
    "keep_best": "--keep-best",  # --no-keep-best for False
}
# switches that are on by default: ``--no-FLAG`` turns them off
_ON_BY_DEFAULT = ("--channels-last", "--object-crops", "--keep-best")
# a field whose None must be spelled out (its default is not None): the value that means None
_NONE_SPELLED = {"patience": "0"}
_PATHS = ("store", "run_dir", "original_images", "original_masks")


@dataclass(frozen=True)
class FinetuneOptions:
    """One fine-tune: which parent, on which corrections, into what, and how to train.

    ``parent`` ``None`` is the registry's selected version; ``store`` ``None`` the default
    corrections folder; ``run_dir`` ``None`` a new folder under the data home. ``config``
    is the training recipe (:data:`DEFAULT_FINETUNE_CONFIG` unless given); its
    ``mask_loss_weight`` is not used: ``mask_loss_weight`` ``None`` continues the parent's.
    ``validation_fraction`` ``None`` is the default hold-out rule
    (:func:`~medsegdiff_training.finetune_data.split_entries`); ``channels`` / ``num_classes``
    force what the child becomes (``None``: the parent's, or what the corrections need).
    ``object_crops`` also trains on each correction cut around each of its objects
    (:mod:`~medsegdiff_training.finetune_data`); off, corrections are used whole only.
    """

    parent: str | None = None
    store: Path | None = None
    name: str | None = None
    description: str | None = None
    select: bool = False  # make the new version the selected one
    run_dir: Path | None = None
    validation_fraction: float | None = None
    mix_original: bool = False  # also train on the parent's own data, about half of each epoch
    original_images: Path | None = None  # with mix_original: folders other than the parent names
    original_masks: Path | None = None
    mask_loss_weight: float | None = None
    channels: int | None = None
    num_classes: int | None = None
    object_crops: bool = True  # --no-object-crops: corrections whole only
    config: TrainConfig = field(default=DEFAULT_FINETUNE_CONFIG)

    def __post_init__(self) -> None:
        for name in _PATHS:  # "folder" and Path("folder") are the same option
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not isinstance(self.config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(self.config).__name__}.")

    def replace(self, **changes: Any) -> FinetuneOptions:
        """A copy with ``changes``; :class:`TrainConfig` fields go into ``config``.

        >>> FinetuneOptions().replace(parent="v1", minutes=2.0).config.minutes
        2.0
        """
        fields = {item.name for item in dataclasses.fields(TrainConfig)}
        training = {name: value for name, value in changes.items() if name in fields}
        own = {name: value for name, value in changes.items() if name not in fields}
        config = dataclasses.replace(self.config, **training) if training else self.config
        return dataclasses.replace(self, **own, config=config)


def _value_flags(flag: str, value: Any) -> list[str]:
    if isinstance(value, bool):
        if flag in _ON_BY_DEFAULT:
            return [flag if value else "--no-" + flag[2:]]
        return [flag] if value else []
    return [f"{flag}={value}"]  # one word: a value that starts with "-" stays a value


def finetune_argv(options: FinetuneOptions) -> list[str]:
    """The ``medsegdiff finetune`` arguments that ask for exactly ``options``.

    Options left at their defaults are left out, except the budget (``--steps`` /
    ``--minutes``), which is always spelled out. A ``config`` that differs from
    :data:`DEFAULT_FINETUNE_CONFIG` in a field the command line cannot set (an EMA decay,
    validation settings) cannot cross a process boundary: :class:`ConfigError`.
    """
    default_config = DEFAULT_FINETUNE_CONFIG
    unsent = [
        item.name
        for item in dataclasses.fields(TrainConfig)
        if item.name not in CONFIG_FLAGS
        and item.name != "mask_loss_weight"  # the options' own mask_loss_weight is what counts
        and getattr(options.config, item.name) != getattr(default_config, item.name)
    ]
    if unsent:
        raise ConfigError(
            f"A fine-tune process takes its recipe from the command line, which cannot set "
            f"{', '.join(unsent)}; run this fine-tune in-process (finetune()) instead."
        )
    argv: list[str] = []
    defaults = FinetuneOptions()
    for name, flag in OPTION_FLAGS.items():
        value = getattr(options, name)
        if value is not None and value != getattr(defaults, name):
            argv += _value_flags(flag, value)
    for name, flag in CONFIG_FLAGS.items():
        value, default = getattr(options.config, name), getattr(default_config, name)
        budget = name in ("steps", "minutes")
        if value is None and default is not None and name in _NONE_SPELLED:
            argv.append(f"{flag}={_NONE_SPELLED[name]}")
        elif value is not None and (budget or value != default):
            argv += _value_flags(flag, value)
    return argv


def process_arguments(options: FinetuneOptions) -> list[str]:
    """The interpreter's arguments that run ``options`` as a fine-tune process reporting
    :mod:`~medsegdiff_training.finetune_events` JSON lines on stdout."""
    return ["-m", "medsegdiff_training", "finetune", *finetune_argv(options), "--progress-json"]


def options_from_args(args: argparse.Namespace | Mapping[str, Any]) -> FinetuneOptions:
    """``medsegdiff finetune``'s parsed arguments as :class:`FinetuneOptions`.

    An option not given keeps its default; ``--minutes`` without ``--steps`` is a time
    budget alone (no step budget), as a budget given is the whole budget; ``--keep-best`` or
    ``--patience`` without ``--validate-every`` scores the held-out corrections every
    :data:`HELD_OUT_CURVE_EVERY` steps.
    """
    values = dict(args) if isinstance(args, Mapping) else dict(vars(args))
    defaults = FinetuneOptions()
    own = {  # a switch not given (None) keeps its default
        name: values[name]
        for name in OPTION_FLAGS
        if name in values and (values[name] is not None or getattr(defaults, name) is None)
    }
    steps = values.get("steps")
    if steps is None:
        steps = None if values.get("minutes") is not None else DEFAULT_FINETUNE_CONFIG.steps
    training = {name: values[name] for name in CONFIG_FLAGS if name in values}
    if training.get("validate_every") is None and (training.get("keep_best") or training.get("patience")):
        training["validate_every"] = HELD_OUT_CURVE_EVERY  # the best needs a curve to be chosen on
    none = {name: None for name, spelled in _NONE_SPELLED.items() if str(training.get(name)) == spelled}
    config = train_config_from(training, DEFAULT_FINETUNE_CONFIG, steps=steps, **none)
    return FinetuneOptions(**{name: value for name, value in own.items()}, config=config)
