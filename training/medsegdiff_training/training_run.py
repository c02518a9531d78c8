"""One training run, from split data to a registered version: :func:`run_training`.

``medsegdiff train`` and ``scripts/train_default_model.py`` (the shipped models' recipe)
describe a run as a :class:`TrainingRequest` and hand it here, so both build the network,
the preprocessing, the data and the checkpoint's record the same way:

1. the network: a named configuration sized to the data (its channels and classes read
   from the images and masks unless given), or a model's weights (``init_from``), kept as
   they compute and widened to colour, more classes or the box channel where asked, or
   resized to another input size (``image_size``: :func:`~.surgery.resize_input`);
2. the preprocessing: the normalisation (the parent's with ``init_from``), the crop rule
   and whether the network is told where the box is;
3. the data (:func:`~.training_data.build_datasets`), the trainer
   (:func:`~.trainer.train`), on every process of a ``torchrun`` job;
4. registration of the final checkpoint when asked (rank 0).

The request's data is already split: :func:`~.training_data.split_sources` (a named split
or a share of each dataset) or :func:`~.training_data.hold_out_cases` (whole cases).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint
from .config import DiffusionConfig, ModelConfig, PreprocessConfig, default_batch_size, named_config
from .data.roi_crops import CropRecipe
from .device import resolve_device
from .distributed import distributed_session
from .errors import ConfigError
from .model import MedSegDiffUNet
from .model_lookup import load_model
from .preprocess import LUMINANCE_ANCHORED
from .prompts import CropRule
from .registry import ModelRegistry
from .surgery import adapt_model, add_box_channel, resize_input
from .train_config import TrainConfig
from .trainer import CancelToken, TrainProgress, TrainResult, train
from .training_data import SplitSource, build_datasets, data_record, detect_channels, detect_num_classes


@dataclass(frozen=True)
class TrainingRequest:
    """A training run: the data, the network to start from, the recipe, and where it goes.

    ``data`` holds each dataset's training and validation pairs. The network is the named
    ``model`` configuration with ``image_size`` and ``model_options`` (other
    :class:`~.config.ModelConfig` fields, e.g. the paper's ablations), or, with
    ``init_from`` (a registry version or a checkpoint folder), that model: its architecture,
    diffusion and normalisation kept. ``num_classes`` / ``channels`` ``None`` are read from
    the data. ``crop_rule`` with ``crops`` trains on crops around the objects
    (``box_channel``: the network is told where the box is). ``config.device`` is the
    device asked for (each ``torchrun`` process takes its own); with
    ``batch_size_of_model`` the batch size is the configuration's on that device
    (:func:`~.config.default_batch_size`). ``register`` ``None`` registers nothing, ``""``
    registers under a new version name.
    """

    data: Sequence[SplitSource]
    run_dir: Path
    config: TrainConfig = field(default_factory=TrainConfig)
    batch_size_of_model: bool = False
    model: str = "cpu"
    image_size: tuple[int, ...] | None = None
    num_classes: int | None = None
    channels: int | None = None
    model_options: Mapping[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    normalisation: str | None = None
    prediction: str | None = None
    schedule: str = "linear"
    crop_rule: CropRule | None = None
    crops: CropRecipe | None = None
    box_channel: bool = False
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)  # more for the checkpoint's record
    resume: bool = True
    register: str | None = None
    select: bool = False
    registry: Path | None = None

    def __post_init__(self) -> None:
        if (self.crop_rule is None) != (self.crops is None):
            raise ConfigError("Training on crops needs both the crop rule and how crops are drawn.")
        if self.box_channel and self.crop_rule is None:
            raise ConfigError("The box channel is trained on crops around the objects: give a crop rule.")

    @property
    def described(self) -> str:
        """The new model's description: the one given, else the datasets it was trained on."""
        return self.description or "trained on " + ", ".join(part.source.name for part in self.data)


@dataclass(frozen=True)
class TrainingOutcome:
    """What :func:`run_training` did: the trainer's result, whether this process is the one
    that writes and reports (rank 0), and the registered version (or None)."""

    result: TrainResult
    is_main: bool
    version: str | None = None


def run_training(
    request: TrainingRequest,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: CancelToken = None,
    say: Callable[[str], None] | None = None,
) -> TrainingOutcome:
    """Train as ``request`` asks and register the result when asked.

    ``progress`` (rank 0 only) gets a :class:`~.trainer.TrainProgress` after every step;
    ``cancel`` stops the run before its next step, its state saved (nothing is registered);
    ``say`` (rank 0 only) gets one line about the data and the network before training.
    A version name that cannot be registered is refused before anything is read.
    """
    registry = ModelRegistry(request.registry)
    if request.register:
        registry.check_new_name(request.register)  # now, not after hours of training
    with distributed_session(request.config.device) as context:
        start, diffusion, parent = start_model(request, registry)
        model_config = start.config if isinstance(start, MedSegDiffUNet) else start
        preprocess = PreprocessConfig(
            normalisation=normalisation_of(request, model_config, parent),
            crop_rule=request.crop_rule,
            prompt_encoding="box-channel" if model_config.prompt_channels else "none",
        )
        train_data, validation_data = build_datasets(
            request.data, model_config, preprocess, request.crops, request.config.seed
        )
        if context.is_main and say is not None:
            say(describe_run(request, model_config, f"{context.world_size} process(es) on {context.device}"))
        config = replace(request.config, device=context.device)
        if request.batch_size_of_model:
            batch_size = default_batch_size(model_config.name, resolve_device(context.device).type)
            config = replace(config, batch_size=batch_size)
        record: dict[str, Any] = data_record(request.data, train_data)
        if parent is not None:
            record["init_from"] = {"model": request.init_from, "version": parent.version}
        result = train(
            start,
            train_data,
            request.run_dir,
            config=config,
            validation_data=validation_data,
            diffusion=diffusion,
            preprocess=preprocess,
            metadata={**request.metadata, "description": request.described, "training": record},
            progress=progress if context.is_main else None,
            cancel=cancel,
            resume=request.resume,
        )
        version = None
        if context.is_main and not result.cancelled and request.register is not None:
            version = register(request, registry, result)
        return TrainingOutcome(result, context.is_main, version)


def register(request: TrainingRequest, registry: ModelRegistry, result: TrainResult) -> str:
    """Add the run's final checkpoint to ``registry`` (selected when asked); its name."""
    assert result.final_checkpoint is not None
    version = registry.add(
        result.final_checkpoint, name=request.register or None, description=request.described
    )
    if request.select:
        registry.select(version.name)
    return version.name


def describe_run(request: TrainingRequest, model_config: ModelConfig, processes: str) -> str:
    """One line: the images on each side, the network, where it trains (and the crops)."""
    parts = request.data
    each = ", ".join(f"{p.source.name} {len(p.train)}+{len(p.validation)}" for p in parts)
    height, width = model_config.image_size
    line = (
        f"{sum(len(p.train) for p in parts)} training and {sum(len(p.validation) for p in parts)} "
        f"validation images{f' ({each})' if len(parts) > 1 else ''}; model {model_config.name} "
        f"{height}x{width}, {model_config.image_channels} "
        f"channel(s){' + the box' if model_config.prompt_channels else ''}, "
        f"{model_config.num_classes} classes; {processes}"
    )
    if request.crop_rule is not None and request.crops is not None:
        around = "each object's box" if request.crops.per_object else "each mask's box"
        line += f"\nTraining on crops around {around}: {request.crop_rule.description}"
    return line


def start_model(
    request: TrainingRequest, registry: ModelRegistry
) -> tuple[ModelConfig | MedSegDiffUNet, DiffusionConfig, Checkpoint | None]:
    """(a configuration or a network to start from, the diffusion, the ``init_from`` checkpoint)."""
    pairs = [pair for part in request.data for pair in part.train]
    channels = detect_channels(pairs) if request.channels is None else request.channels
    classes = detect_num_classes(pairs) if request.num_classes is None else request.num_classes
    box = 1 if request.box_channel else 0
    if request.init_from is None:
        changes: dict[str, Any] = {**request.model_options, "prompt_channels": box}
        if request.image_size:
            changes["image_size"] = request.image_size
        changes.update(num_classes=classes, image_channels=channels)
        diffusion = DiffusionConfig(prediction=request.prediction or "epsilon", schedule=request.schedule)
        return named_config(request.model, **changes), diffusion, None
    parent, _ = load_model(request.init_from, registry)
    config = parent.model_config
    if request.prediction and request.prediction != parent.diffusion.prediction:
        raise ConfigError(
            f"--init-from keeps the model's prediction ({parent.diffusion.prediction}); drop --prediction."
        )
    if request.model_options:
        changed = ", ".join(request.model_options)
        raise ConfigError(f"--init-from keeps the model's architecture; drop the changes to {changed}.")
    model = parent.model
    if request.image_size and tuple(request.image_size) != tuple(config.image_size):
        height, width = request.image_size  # its FF-Parser filters resampled:
        model = resize_input(model, (height, width))
    if channels > config.image_channels or classes > config.num_classes:
        model = adapt_model(model, max(channels, config.image_channels), max(classes, config.num_classes))
    if box and not config.prompt_channels:
        model = add_box_channel(model)
    return model, parent.diffusion, parent


def normalisation_of(request: TrainingRequest, model_config: ModelConfig, parent: Checkpoint | None) -> str:
    """The normalisation asked for (percentile by default); with ``init_from`` the model's
    (anchored on the luminance when widened to colour, as an adapted fine-tune's), and
    another one asked for is refused."""
    if parent is None:
        return str(request.normalisation or "percentile")
    normalisation = parent.preprocess.normalisation
    if model_config.image_channels != parent.model_config.image_channels:
        normalisation = LUMINANCE_ANCHORED + normalisation.removeprefix(LUMINANCE_ANCHORED)
    if request.normalisation not in (None, normalisation):
        raise ConfigError(
            f"--init-from keeps the model's normalisation ({normalisation}); drop --normalisation."
        )
    return normalisation
