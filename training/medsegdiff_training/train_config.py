"""How to train and fine-tune: :class:`TrainConfig` and its parts, importing no torch.

The CLI reads its training defaults here, so ``medsegdiff --help`` and argument errors
stay fast; :mod:`.trainer` runs a :class:`TrainConfig`.

Examples
--------
>>> TrainConfig().batch_size, DEFAULT_FINETUNE_CONFIG.steps
(8, 300)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import ConfigError
from .sampling_defaults import SamplingSettings

# The choices of the speed options, here (no torch) so that the CLI can offer them:
# precision.py and fast_paths.py hold what they mean.
PRECISIONS = ("auto", "bf16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
LR_SCHEDULES = ("constant", "cosine")  # what each means: TrainConfig.lr_schedule's comment


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of the training augmentation (:func:`~.data.augment.augment_batch`)."""

    horizontal_flip: float = 0.5
    vertical_flip: float = 0.0
    rotate_degrees: float = 10.0
    scale: float = 0.1
    shift: float = 0.05
    gamma: float = 0.2
    contrast: float = 0.15
    brightness: float = 0.1
    # colour images only: each image's colour (its channels' deviations from the luminance)
    # scaled by a factor from [1 - saturation, 1 + saturation] (at 0: grey), the luminance kept
    saturation: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Give a budget in ``steps``, in ``minutes``, or both (first reached wins).

    A ``minutes`` budget is kept, not overrun: the run stops before a step that would, at
    the last step's pace, end past it.
    """

    steps: int | None = 1000
    minutes: float | None = None
    batch_size: int = 8
    learning_rate: float = 1e-4  # the paper's
    # linear warm-up over warmup_steps, then "constant" (the paper's, with no warm-up) or
    # "cosine": decay to 0 at the end of the budget (steps or minutes, whichever ends first)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    # what ``minutes`` counts: "wall" time, or this process's "cpu" time (budgets that hold
    # on a machine shared with other work)
    clock: str = "wall"
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    mask_loss_weight: float = 0.0  # > 0 adds a soft-Dice loss on the implied x_0 (not the paper's)
    # train on timesteps t >= timestep_floor * T only (the paper's 0: uniform over all T); the
    # few-step samplers visit only the noisy end (DDIM 3: t = 999, 500 and 0 of 1000)
    timestep_floor: float = 0.0
    amp: bool = True  # False forces float32; True lets ``precision`` decide
    precision: str = "auto"  # "auto" (per device, see precision.py), "bf16" or "fp32"
    channels_last: bool | None = None  # None: the device's default (fast_paths.py)
    compile: str | None = None  # a torch.compile mode, or None (eager)
    num_workers: int | None = None  # DataLoader workers; None: 4 on CUDA, 0 (main thread) elsewhere
    seed: int = 0
    validate_every: int = 500
    validation_images: int | None = 32  # None: every validation sample
    # keep_best: final/ holds the EMA weights of the best validation, not the last ones;
    # patience: stop once this many steps have passed without a better validation Dice;
    # best_margin: a validation is better only when it beats the best so far by more than this
    # Dice (0: any gain; a few held-out images cannot tell apart checkpoints closer than that)
    keep_best: bool = False
    patience: int | None = None
    best_margin: float = 0.0
    # one member: validation tracks the network, not the ensemble's averaging
    validation_sampling: SamplingSettings = SamplingSettings(sampler="ddim", steps=10, seed=0, ensemble=1)
    checkpoint_every: int = 500
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ConfigError("Give a training budget: steps, minutes or both.")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}.")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ConfigError(f"minutes must be a finite number above 0, got {self.minutes}.")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1.")
        if self.clock not in ("wall", "cpu"):
            raise ConfigError(f"clock must be 'wall' or 'cpu', got {self.clock!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}.")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be 0 or more, got {self.warmup_steps}.")
        if not (self.mask_loss_weight >= 0 and math.isfinite(self.mask_loss_weight)):
            raise ConfigError("mask_loss_weight must be a finite number, 0 or more.")
        if not 0 <= self.timestep_floor < 1:
            raise ConfigError(f"timestep_floor must be at least 0 and below 1, got {self.timestep_floor}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ConfigError(
                f"compile must be one of {', '.join(COMPILE_MODES)} or None, got {self.compile!r}."
            )
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError("num_workers must be 0 (load in the main process) or more.")
        if self.validate_every < 1:
            raise ConfigError(f"validate_every must be at least 1 step, got {self.validate_every}.")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1 step (or none), got {self.patience}.")
        if not (0 <= self.best_margin < 1):
            raise ConfigError(f"best_margin must be a Dice from 0 to below 1, got {self.best_margin}.")
        if self.augment is not None and not 0 <= self.augment.saturation <= 1:
            raise ConfigError(f"augment.saturation must be from 0 to 1, got {self.augment.saturation}.")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["validation_sampling"] = self.validation_sampling.to_dict()
        return values


# Short runs on a handful of images: fewer steps, a faster EMA; a learning rate of 1e-3 warmed
# up over 30 steps and then constant, every step at the noisy half of the timesteps (where the
# recommended DDIM 3 samples, t = 999 and 500); the held-out corrections scored every
# HELD_OUT_CURVE_EVERY steps (one DDIM 3 sample of the EMA weights) and the best weights
# registered, not the last, a later score counting as better only when it beats the best by
# more than half a Dice point (HELD_OUT_MARGIN). A constant rate makes a longer budget the same
# run continued, so the best over 30 minutes is chosen among more checkpoints than the best over
# 10: without the margin, a few held-out images picked a later checkpoint that was no better
# (busi: 0.35 points higher on 4 held-out corrections, 6 points lower on other training images).
# Chosen by measurement (issue 29, scripts/full_frame_finetune_experiment.py, docs/benchmarks.md
# "Fine-tuning on full frames"): 20 corrections, 10 CPU-minutes, whole-image and box-prompt Dice
# on training images no run corrected (busi, lgg_mri full frames, ph2 colour, drishti crops);
# the recipe it replaced (peak 3e-3 cosine to the budget, the last weights, corrections whole
# only) stays available: --lr 3e-3 --lr-schedule cosine --no-keep-best --no-object-crops
# --validate-every 1000000000 --best-margin 0; the paper's: --lr 1e-4 --lr-schedule constant
# --timestep-floor 0.
HELD_OUT_CURVE_EVERY = 50  # steps between two scores of the held-out corrections, for keep_best
HELD_OUT_MARGIN = 0.005  # Dice by which a held-out score must beat the best to count as better
DEFAULT_FINETUNE_CONFIG = TrainConfig(
    steps=300,
    batch_size=4,
    learning_rate=1e-3,
    lr_schedule="constant",
    warmup_steps=30,
    ema_decay=0.995,
    timestep_floor=0.5,
    validate_every=HELD_OUT_CURVE_EVERY,
    validation_images=64,
    validation_sampling=SamplingSettings(sampler="ddim", steps=3, seed=0, ensemble=1),
    keep_best=True,
    best_margin=HELD_OUT_MARGIN,
    patience=None,
    checkpoint_every=50,
)


def train_config_from(
    values: Mapping[str, Any] | Any,
    base: TrainConfig = TrainConfig(),
    **overrides: Any,
) -> TrainConfig:
    """``base`` with every :class:`TrainConfig` field that ``values`` names, then ``overrides``.

    ``values`` is a mapping or an object with attributes (parsed CLI arguments, whose
    destinations carry the field names); values that are ``None`` (an option not given)
    keep ``base``'s.

    Examples
    --------
    >>> import argparse
    >>> args = argparse.Namespace(batch_size=4, learning_rate=None, images="folder")
    >>> config = train_config_from(args, seed=3)
    >>> config.batch_size, config.learning_rate, config.seed
    (4, 0.0001, 3)
    """
    source = values if isinstance(values, Mapping) else vars(values)
    names = {item.name for item in dataclasses.fields(TrainConfig)}
    changes = {name: value for name, value in source.items() if name in names and value is not None}
    return dataclasses.replace(base, **{**changes, **overrides})
