"""Checking a checkpoint's ``config.json`` field by field before anything is built from it.

A config.json is user input: edited by hand, truncated, or written by someone else. Every
field's type and range is checked here, with a message naming the field, and a model whose
estimated memory is beyond reason is refused before a single tensor is allocated (a
``base_channels`` of 10**6 would otherwise try to allocate terabytes).

Examples
--------
>>> check_model_fields({"name": "cpu", "image_size": [96, 96]})
>>> check_diffusion_fields({"beta_end": float("nan")})
Traceback (most recent call last):
...
medsegdiff_training.errors.ConfigError: diffusion.beta_end must be a finite number, got nan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

# Far beyond the paper's largest variant (MedSegDiff++ at 256², about 0.7 GB of parameters
# and a few GB of activations per image), far below what would exhaust a large GPU node.
MAX_PARAMETER_BYTES = 8 * 2**30
MAX_ACTIVATION_BYTES = 32 * 2**30
MAX_IMAGE_SIDE = 8192
MAX_TIMESTEPS = 100_000
_METHODS = ("percentile", "minmax", "zscore")
# an adapted RGB child of a grey parent normalises the luminance and keeps colour beside it
# (preprocess.LUMINANCE_ANCHORED; written out here, since this module imports nothing of torch)
NORMALISATIONS: tuple[str, ...] = _METHODS + tuple(f"luminance-{method}" for method in _METHODS)
RESIZE_MODES = ("bilinear",)
#: Prompt encodings and the input channels each adds (config.PreprocessConfig.prompt_encoding).
PROMPT_ENCODINGS = {"none": 0, "box-channel": 1}
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")


def check_known_keys(values: Mapping[str, Any], record: type, what: str) -> None:
    """:class:`ConfigError` naming the keys of ``values`` that are no field of the dataclass
    ``record`` (``what``: the record's name in the message, e.g. ``crop rule``)."""
    unknown = set(values) - {field.name for field in dataclasses.fields(record)}
    if unknown:
        raise ConfigError(f"Unknown {what} keys: {sorted(unknown)}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(section: str, key: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(f"{section}.{key} must be a whole number from {low} to {high}, got {value!r:.80}.")


def _int_list(section: str, key: str, value: Any, low: int, high: int, lengths: tuple[int, int]) -> None:
    if (
        not isinstance(value, (list, tuple))
        or not lengths[0] <= len(value) <= lengths[1]
        or not all(_is_int(v) and low <= v <= high for v in value)
    ):
        raise ConfigError(
            f"{section}.{key} must be a list of {lengths[0]} to {lengths[1]} whole numbers from {low} "
            f"to {high}, got {value!r:.80}."
        )


def _number(section: str, key: str, value: Any, low: float, high: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{section}.{key} must be a finite number, got {value!r:.80}.")
    if not low <= value <= high:
        raise ConfigError(f"{section}.{key} must be from {low} to {high}, got {value!r}.")


def _choice(section: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices or not isinstance(value, str):
        raise ConfigError(f"{section}.{key} must be one of {', '.join(choices)}, got {value!r:.80}.")


def _mapping(section: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"{section} must be a JSON object, got {type(values).__name__}.")
    return values


def check_model_fields(values: Any) -> None:
    """Type and range of every field of a ``model`` section that is present."""
    values = _mapping("model", values)
    section = "model"
    checks = {
        "image_size": lambda v: _int_list(section, "image_size", v, 8, MAX_IMAGE_SIDE, (2, 2)),
        "image_channels": lambda v: _int(section, "image_channels", v, 1, 4),
        "num_classes": lambda v: _int(section, "num_classes", v, 2, 1024),
        "base_channels": lambda v: _int(section, "base_channels", v, 1, 4096),
        "channel_mults": lambda v: _int_list(section, "channel_mults", v, 1, 64, (2, 10)),
        "encoder_blocks": lambda v: _int_list(section, "encoder_blocks", v, 1, 32, (2, 10)),
        "decoder_blocks": lambda v: _int(section, "decoder_blocks", v, 1, 32),
        "groups": lambda v: _int(section, "groups", v, 1, 4096),
        "dropout": lambda v: _number(section, "dropout", v, 0.0, 0.99),
        "prompt_channels": lambda v: _int(section, "prompt_channels", v, 0, 1),
    }
    for key, value in values.items():
        if key in checks:
            checks[key](value)
        elif key == "name" and not (isinstance(value, str) and 0 < len(value) <= 80):
            raise ConfigError(f"model.name must be a short text, got {value!r:.80}.")
        elif key in ("dynamic_conditioning", "ff_parser") and not isinstance(value, bool):
            raise ConfigError(f"model.{key} must be true or false, got {value!r:.80}.")
        elif key == "conditioning_levels" and value is not None:
            _int_list(section, key, value, 0, 9, (0, 10))


def check_diffusion_fields(values: Any) -> None:
    """Type and range of every field of a ``diffusion`` section that is present."""
    values = _mapping("diffusion", values)
    if "timesteps" in values:
        _int("diffusion", "timesteps", values["timesteps"], 2, MAX_TIMESTEPS)
    for key in ("beta_start", "beta_end"):
        if key in values:
            _number("diffusion", key, values[key], 1e-12, 0.999)
    if values.get("beta_start", 0.0) > values.get("beta_end", 1.0):
        raise ConfigError("diffusion.beta_start must not exceed diffusion.beta_end.")
    if "schedule" in values:
        _choice("diffusion", "schedule", values["schedule"], SCHEDULES)
    if "prediction" in values:
        _choice("diffusion", "prediction", values["prediction"], PREDICTIONS)


def check_preprocess_fields(values: Any) -> None:
    """Type and range of every field of a ``preprocess`` section that is present."""
    values = _mapping("preprocess", values)
    if "normalisation" in values:
        _choice("preprocess", "normalisation", values["normalisation"], NORMALISATIONS)
    if "resize" in values:
        _choice("preprocess", "resize", values["resize"], RESIZE_MODES)
    if "prompt_encoding" in values:
        _choice("preprocess", "prompt_encoding", values["prompt_encoding"], tuple(PROMPT_ENCODINGS))


def estimated_memory(config: Any) -> tuple[int, int]:
    """(parameter bytes, activation bytes for one image) of a :class:`ModelConfig`, roughly.

    Counts the 3x3 convolutions of both encoders and the decoder, and the FF-Parser's
    complex maps; activations are the feature maps one forward pass keeps per level. Within
    a factor of about two of the real figures, which is all a sanity limit needs.
    """
    height, width = config.image_size
    parameters = activations = 0
    levels = len(config.channel_mults)
    for level, mult in enumerate(config.channel_mults):
        channels = config.base_channels * mult
        blocks = config.encoder_blocks[level] * (2 if level < levels - 1 else 1)
        convs = 2 * blocks + (4 * config.decoder_blocks if level < levels - 1 else 0)
        parameters += 4 * convs * 9 * channels * channels
        if config.ff_parser and level < levels - 1:
            parameters += 8 * channels * height * (width // 2 + 1)
        activations += 4 * height * width * channels * (2 * convs + 4)
        height, width = (height + 1) // 2, (width + 1) // 2
    return parameters, activations


def check_model_size(config: Any) -> None:
    """Refuse a configuration whose network would not fit any reasonable machine."""
    parameter_bytes, activation_bytes = estimated_memory(config)
    if parameter_bytes > MAX_PARAMETER_BYTES or activation_bytes > MAX_ACTIVATION_BYTES:
        raise ConfigError(
            f"The model configuration {config.name!r} ({config.image_size[0]}x{config.image_size[1]}, "
            f"base_channels {config.base_channels}) would need about {parameter_bytes / 2**30:.1f} GiB "
            f"of parameters and {activation_bytes / 2**30:.1f} GiB of activations per image, beyond "
            f"the limits of {MAX_PARAMETER_BYTES // 2**30} and {MAX_ACTIVATION_BYTES // 2**30} GiB; "
            "check image_size and base_channels."
        )


MAX_NESTING = 32


def check_nesting(document: Any, limit: int = MAX_NESTING) -> None:
    """Refuse JSON nested deeper than ``limit`` (which would exhaust recursion later on)."""
    stack = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise ConfigError(f"it is nested more than {limit} levels deep.")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def check_checkpoint_document(document: dict[str, Any]) -> None:
    """Check the ``model``, ``diffusion`` and ``preprocess`` sections of a config.json."""
    check_nesting(document)
    if "model" not in document:
        raise ConfigError("it has no 'model' section.")
    check_model_fields(document["model"])
    check_diffusion_fields(document.get("diffusion", {}))
    check_preprocess_fields(document.get("preprocess", {}))
    for key in ("metrics", "training"):
        if document.get(key) is not None and not isinstance(document[key], dict):
            raise ConfigError(f"{key} must be a JSON object, got {type(document[key]).__name__}.")
