"""Model and diffusion configurations, including the paper's named variants.

The paper (Wu et al., MedSegDiff, Section II and Table III) describes MedSegDiff-S, -B and -L
with 4, 5 and 6 downsamplings, and MedSegDiff++ as the largest. ``cpu`` is our own small
variant sized to train on two CPU cores; it ships as the default model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .prompts import DEFAULT_CROP_RULE, CropRule
from .validation import (
    PROMPT_ENCODINGS,
    check_diffusion_fields,
    check_known_keys,
    check_model_fields,
    check_model_size,
    check_preprocess_fields,
)

# ResNet34 residual-block counts of its first three stages; deeper levels take 3 each,
# like ResNet34's last stage.
RESNET34_STAGE_BLOCKS = (3, 4, 6)


def _resnet34_blocks(levels: int) -> tuple[int, ...]:
    return tuple(RESNET34_STAGE_BLOCKS[i] if i < 3 else 3 for i in range(levels))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a MedSegDiff network.

    The encoder has ``len(channel_mults)`` resolution levels. All levels but the last run
    twice, once for the image (E^I) and once for the noisy mask (E^x), each followed by a
    downsampling; E^I + E^x then enter the last encoding level, shared by both. So the
    number of downsamplings is ``len(channel_mults) - 1``.

    Parameters
    ----------
    name
        Name of the variant (``cpu``, ``S``, ``B``, ``L``, ``++`` or a custom one).
    image_size
        (height, width) the network is built for; the FF-Parser maps are sized from it.
    image_channels
        Channels of the conditioning image, 1 to 4.
    num_classes
        Classes including background. 2 means a binary mask (one output channel); K > 2
        means K one-hot mask channels, read out with argmax.
    base_channels, channel_mults
        Feature channels at level ``i`` are ``base_channels * channel_mults[i]``.
    encoder_blocks
        Residual blocks at each encoder level (one number per level).
    decoder_blocks
        Residual blocks at each decoder level.
    groups
        GroupNorm groups.
    dynamic_conditioning, ff_parser
        Switches for the paper's ablation (Table II).
    conditioning_levels
        Levels that get dynamic conditional encoding; ``None`` = the middle two.
    dropout
        Dropout inside residual blocks.
    prompt_channels
        Extra input channels after the image's that carry the prompt (0: none; 1: the box
        channel, see :data:`PROMPT_ENCODINGS`). E^I's stem reads ``image_channels +
        prompt_channels`` channels.
    """

    name: str = "cpu"
    image_size: tuple[int, int] = (96, 96)
    image_channels: int = 1
    num_classes: int = 2
    base_channels: int = 24
    channel_mults: tuple[int, ...] = (1, 2, 3, 4)
    encoder_blocks: tuple[int, ...] = (1, 2, 2, 2)
    decoder_blocks: int = 1
    groups: int = 8
    dynamic_conditioning: bool = True
    ff_parser: bool = True
    conditioning_levels: tuple[int, ...] | None = None
    dropout: float = 0.0
    prompt_channels: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "encoder_blocks", tuple(int(b) for b in self.encoder_blocks))
        if self.conditioning_levels is not None:
            object.__setattr__(self, "conditioning_levels", tuple(int(c) for c in self.conditioning_levels))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` when the configuration cannot build a network."""
        check_model_fields(self.to_dict())
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ConfigError(f"image_size must be (height, width) >= 8, got {self.image_size}.")
        if not 1 <= self.image_channels <= 4:
            raise ConfigError(f"image_channels must be 1 to 4, got {self.image_channels}.")
        if self.prompt_channels not in (0, 1):
            raise ConfigError(
                f"prompt_channels must be 0 or 1 (the box channel), got {self.prompt_channels}."
            )
        if self.num_classes < 2:
            raise ConfigError(f"num_classes counts background too: >= 2, got {self.num_classes}.")
        if len(self.channel_mults) < 2:
            raise ConfigError("channel_mults needs at least two levels (one downsampling).")
        if len(self.encoder_blocks) != len(self.channel_mults):
            raise ConfigError(
                f"encoder_blocks has {len(self.encoder_blocks)} entries but channel_mults has "
                f"{len(self.channel_mults)}: give one block count per level."
            )
        for channels in self.level_channels:
            if channels % self.groups:
                raise ConfigError(f"channels {channels} are not divisible by groups={self.groups}.")
        for level in self.fused_levels:
            if not 0 <= level < self.dual_levels:
                raise ConfigError(
                    f"conditioning level {level} is outside the dual-encoder levels "
                    f"0..{self.dual_levels - 1}."
                )
        check_model_size(self)  # last: the estimate needs a well-formed configuration

    @property
    def level_channels(self) -> list[int]:
        """Feature channels at each level, finest first: ``base_channels`` times each multiplier."""
        return [self.base_channels * mult for mult in self.channel_mults]

    @property
    def downsamplings(self) -> int:
        """Stride-2 steps of the encoder: one after every level but the last."""
        return len(self.channel_mults) - 1

    @property
    def dual_levels(self) -> int:
        """Encoder levels that run separately for the image and for x_t.

        The same number as :attr:`downsamplings`, by design: every level that ends in a
        downsampling has its two encoders; the last (coarsest) level is shared.
        """
        return self.downsamplings

    @property
    def input_channels(self) -> int:
        """Channels E^I's stem reads: the image's, then the prompt's."""
        return self.image_channels + self.prompt_channels

    @property
    def mask_channels(self) -> int:
        """Channels of x_t: 1 for a binary mask, K one-hot channels for K classes."""
        return 1 if self.num_classes == 2 else self.num_classes

    @property
    def fused_levels(self) -> tuple[int, ...]:
        """Levels with dynamic conditional encoding (the middle two by default)."""
        if not self.dynamic_conditioning:
            return ()
        if self.conditioning_levels is not None:
            return self.conditioning_levels
        n = self.dual_levels
        if n == 1:
            return (0,)
        start = max(0, (n - 1) // 2)
        start = min(start, n - 2)
        return (start, start + 1)

    def level_sizes(self) -> list[tuple[int, int]]:
        """Feature-map (height, width) at each level (stride-2 convs round up)."""
        height, width = self.image_size
        sizes = []
        for _ in self.channel_mults:
            sizes.append((height, width))
            height, width = (height + 1) // 2, (width + 1) // 2
        return sizes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        check_model_fields(values)
        check_known_keys(values, cls, "model config")
        values = dict(values)
        for key in ("image_size", "channel_mults", "encoder_blocks", "conditioning_levels"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process: T steps and a beta schedule (paper: T = 1000, linear).

    ``prediction`` is what the network outputs: ``"epsilon"``, the noise, as in the paper
    (eq. 7), or ``"v"`` = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho), whose
    x_0 estimate stays accurate at the noisiest steps, where few-step samplers start.
    Samplers see a noise predictor either way.
    """

    timesteps: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "epsilon"

    def __post_init__(self) -> None:
        check_diffusion_fields(self.to_dict())  # NaN or infinite betas would sample zeros
        if self.schedule not in ("linear", "cosine"):
            raise ConfigError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}.")
        if self.prediction not in ("epsilon", "v"):
            raise ConfigError(f"prediction must be 'epsilon' or 'v', got {self.prediction!r}.")
        if self.timesteps < 2:
            raise ConfigError("timesteps must be >= 2.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiffusionConfig:
        check_diffusion_fields(values)
        return cls(**values)


@dataclass(frozen=True)
class PreprocessConfig:
    """How images become network input: intensity normalisation, resizing, and the crop rule.

    ``crop_rule`` says how the training crops were cut around the object, so that box and
    point prompts cut the same (:mod:`medsegdiff_training.prompts`); ``None`` = not recorded
    (prompts then use :data:`~medsegdiff_training.prompts.DEFAULT_CROP_RULE`).
    ``prompt_encoding`` says whether the network is told where the box is: ``"none"`` (the
    paper's network: the crop alone) or ``"box-channel"`` (one more input channel, +1
    inside the box and -1 outside, at the network's input size; a whole-image run marks
    the whole image). It must agree with the model's ``prompt_channels``.
    """

    normalisation: str = "percentile"  # "percentile" (1-99 %), "minmax" or "zscore"
    resize: str = "bilinear"
    crop_rule: CropRule | None = None
    prompt_encoding: str = "none"

    def __post_init__(self) -> None:
        check_preprocess_fields(self.to_dict())

    @property
    def prompt_channels(self) -> int:
        """Input channels the prompt encoding adds after the image's."""
        return PROMPT_ENCODINGS[self.prompt_encoding]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessConfig:
        check_preprocess_fields(values)
        values = dict(values)
        if values.get("crop_rule") is not None:
            values["crop_rule"] = CropRule.from_dict(values["crop_rule"])
        return cls(**values)

    def prompt_crop_rule(self) -> CropRule:
        """The recorded crop rule, or the documented default for models that record none."""
        return self.crop_rule if self.crop_rule is not None else DEFAULT_CROP_RULE


def check_prompt_encoding(model: ModelConfig, preprocess: PreprocessConfig) -> None:
    """Refuse a model whose input channels disagree with its preprocessing's prompt encoding."""
    if model.prompt_channels != preprocess.prompt_channels:
        raise ConfigError(
            f"The model reads {model.prompt_channels} prompt channel(s) but its preprocessing's prompt "
            f"encoding {preprocess.prompt_encoding!r} makes {preprocess.prompt_channels}: the checkpoint's "
            "config.json is inconsistent."
        )


def _paper(name: str, downsamplings: int, base: int, mults: tuple[int, ...]) -> ModelConfig:
    levels = downsamplings + 1
    return ModelConfig(
        name=name,
        image_size=(256, 256),
        base_channels=base,
        channel_mults=mults[:levels],
        encoder_blocks=_resnet34_blocks(levels),
        decoder_blocks=2,
        groups=32 if base % 32 == 0 else 8,
    )


NAMED_CONFIGS: dict[str, ModelConfig] = {
    "cpu": ModelConfig(),
    "tiny": ModelConfig(
        name="tiny",
        image_size=(32, 32),
        base_channels=8,
        channel_mults=(1, 2, 2),
        encoder_blocks=(1, 1, 1),
        decoder_blocks=1,
        groups=4,
    ),
    "S": _paper("S", 4, 64, (1, 1, 2, 2, 4, 4, 4)),
    "B": _paper("B", 5, 64, (1, 1, 2, 2, 4, 4, 4)),
    "L": _paper("L", 6, 64, (1, 1, 2, 2, 4, 4, 4)),
    "++": _paper("++", 6, 128, (1, 1, 2, 2, 4, 4, 4)),
}


def image_size_of(values: Any) -> tuple[int, ...] | None:
    """A CLI ``--image-size``: N (square) or H W; ``None`` when not given.

    Examples
    --------
    >>> image_size_of([64]), image_size_of([64, 48]), image_size_of(None)
    ((64, 64), (64, 48), None)
    """
    if not values:
        return None
    return tuple(int(v) for v in values) * (2 if len(values) == 1 else 1)


def named_config(name: str, **changes: Any) -> ModelConfig:
    """Return a named configuration (``cpu``, ``tiny``, ``S``, ``B``, ``L``, ``++``).

    Examples
    --------
    >>> named_config("S").downsamplings
    4
    >>> named_config("cpu", num_classes=3).mask_channels
    3
    """
    if name not in NAMED_CONFIGS:
        raise ConfigError(f"Unknown configuration {name!r}: choose one of {', '.join(NAMED_CONFIGS)}.")
    config = NAMED_CONFIGS[name]
    return config.replace(**changes) if changes else config


# Training images per step on one GPU for each named configuration, sized so that a step
# keeps an H100/H200 busy without crowding an 80 GB card (B's images/s and peak memory at
# batch 8 to 64 are in benchmarks/results/training_cuda.json, from gpu_check.sh).
GPU_BATCH_SIZES = {"tiny": 64, "cpu": 64, "S": 32, "B": 32, "L": 16, "++": 8}
DEFAULT_BATCH_SIZE = 8  # elsewhere (CPU, MPS) and for custom configurations


def default_batch_size(name: str, device_type: str) -> int:
    """The training batch size used when none is given: per configuration on CUDA, else 8.

    Examples
    --------
    >>> default_batch_size("B", "cuda"), default_batch_size("B", "cpu")
    (32, 8)
    """
    if device_type == "cuda":
        return GPU_BATCH_SIZES.get(name, DEFAULT_BATCH_SIZE)
    return DEFAULT_BATCH_SIZE
