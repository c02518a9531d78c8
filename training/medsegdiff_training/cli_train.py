"""``medsegdiff train``: one dataset or several, whole images or crops around the objects.

The data of the run is read and split by :mod:`.training_data`; this module turns the
command line into it, into the model (fresh, or started from a model's weights with
``--init-from``) and into a :class:`~.train_config.TrainConfig`, then runs the trainer.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from .checkpoint import Checkpoint
from .cli_commands import (
    EXIT_CANCELLED,
    EXIT_OK,
    load_model,
    note,
    out,
    precision_of,
    registry_of,
    report_cancelled,
)
from .cli_progress import TrainingReporter, cancel_on_signals, emit_json
from .config import (
    DiffusionConfig,
    ModelConfig,
    PreprocessConfig,
    default_batch_size,
    image_size_of,
    named_config,
)
from .data.roi_crops import CropRecipe
from .data.sources import DatasetSource, check_distinct, read_dataset_list, source_from_folder
from .device import resolve_device
from .distributed import distributed_session
from .errors import ConfigError
from .model import MedSegDiffUNet
from .preprocess import LUMINANCE_ANCHORED
from .prompts import DEFAULT_CROP_RULE, DEFAULT_JITTER, CropRule
from .surgery import adapt_model, add_box_channel
from .train_config import TrainConfig, train_config_from
from .trainer import train
from .training_data import build_datasets, data_record, detect_channels, detect_num_classes, split_sources


def sources_of(args: argparse.Namespace) -> list[DatasetSource]:
    """The datasets the command line names: --images/--masks, --dataset folders or a --datasets file."""
    given = [args.images is not None or args.masks is not None, bool(args.dataset), args.datasets is not None]
    if sum(given) != 1:
        raise ConfigError(
            "Give the data one way: --images and --masks, --dataset DIR (repeatable) or --datasets FILE."
        )
    if given[0]:
        if args.images is None or args.masks is None:
            raise ConfigError("--images and --masks go together.")
        if (args.split or args.val_split) and not args.split_csv:
            raise ConfigError("--split and --val-split need --split-csv (a name,split CSV).")
        name = Path(args.images).resolve().parent.name or "data"
        split_csv = args.split_csv if args.split or args.val_split else None
        return [DatasetSource(name, Path(args.images), Path(args.masks), split_csv, args.split)]
    if args.split_csv:
        raise ConfigError(
            "--split-csv goes with --images/--masks; a dataset folder brings its own split.csv."
        )
    if given[1]:
        sources = [source_from_folder(folder, args.split) for folder in args.dataset]
        if args.val_split:  # the folder's split.csv also names the validation split
            sources = [replace(s, split_csv=Path(s.images).parent / "split.csv") for s in sources]
        check_distinct(sources)
        return sources
    sources = read_dataset_list(args.datasets)
    return [replace(s, split=s.split or args.split) for s in sources]


def crop_rule_of(args: argparse.Namespace) -> CropRule | None:
    """The crop rule of ``--roi-crops`` (``None`` without it), from ``--crop-margin``."""
    if not args.roi_crops:
        crop_options = ("crop_margin", "jitter", "crop_context", "scale_augment")
        given = [name for name in crop_options if getattr(args, name) is not None]
        given += [name for name in ("per_object", "box_channel") if getattr(args, name)]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --roi-crops.")
        return None
    text = (args.crop_margin or f"{DEFAULT_CROP_RULE.margin_fraction * 100:g}%").strip().lower()
    try:
        if text.endswith("px"):
            margin_px, fraction, shown = float(text[:-2]), 0.0, f"{float(text[:-2]):g} px"
        elif text.endswith("%"):
            margin_px, fraction, shown = 0.0, float(text[:-1]) / 100, f"{float(text[:-1]):g} % of its size"
        else:
            raise ValueError(text)
    except ValueError:
        raise ConfigError(
            f"--crop-margin takes pixels or per cent, e.g. 30px or 10%; got {args.crop_margin!r}."
        ) from None
    if not (math.isfinite(margin_px) and math.isfinite(fraction)) or margin_px < 0 or fraction < 0:
        raise ConfigError(f"--crop-margin must be zero or positive, got {args.crop_margin!r}.")
    jitter = DEFAULT_JITTER if args.jitter is None else args.jitter
    each = "each object's (connected component's)" if args.per_object else "the mask's"
    return CropRule(
        margin_px=margin_px,
        margin_fraction=fraction,
        description=(
            f"training crops (medsegdiff train --roi-crops): {each} bounding box + {shown} on each "
            f"side, edges jittered by up to {jitter * 100:g} %, resized non-uniformly to the input"
        ),
    )


def crop_recipe_of(args: argparse.Namespace) -> CropRecipe:
    """How ``--roi-crops`` draws its crops (see :class:`~.data.roi_crops.CropRecipe`)."""
    if args.crop_context is not None and not args.box_channel:
        raise ConfigError("--crop-context needs --box-channel: the network must be told where the box is.")
    scale = None
    if args.scale_augment is not None:
        if not 0 < args.scale_augment <= 1:
            raise ConfigError(
                f"--scale-augment is a share of the crop's pixels in (0, 1], got {args.scale_augment}."
            )
        scale = (args.scale_augment, 1.0)
    return CropRecipe(
        per_object=args.per_object,
        jitter=DEFAULT_JITTER if args.jitter is None else args.jitter,
        context=None if args.crop_context is None else tuple(args.crop_context),
        scale=scale,
    )


def train_config_of(args: argparse.Namespace, device: str) -> TrainConfig:
    """``medsegdiff train``'s options as a :class:`TrainConfig` (options carry the field names)."""
    overrides: dict[str, Any] = {"augment": None} if args.no_augment else {}
    precision = precision_of(args)
    if precision is not None:
        overrides["precision"] = precision
    return train_config_from(
        args,
        steps=args.steps,  # None with --minutes alone: no step budget
        amp=not args.no_amp,
        device=device,
        **overrides,
    )


def start_model(
    args: argparse.Namespace, sources_pairs: list[Any]
) -> tuple[ModelConfig | MedSegDiffUNet, DiffusionConfig, Checkpoint | None]:
    """(a configuration or a network to start from, the diffusion, the --init-from checkpoint)."""
    box = 1 if args.box_channel else 0
    if args.init_from is None:
        changes: dict[str, Any] = {"prompt_channels": box}
        if args.image_size:
            changes["image_size"] = image_size_of(args.image_size)
        changes["num_classes"] = (
            detect_num_classes(sources_pairs) if args.num_classes == "auto" else int(args.num_classes)
        )
        changes["image_channels"] = (
            detect_channels(sources_pairs) if args.channels == "auto" else int(args.channels)
        )
        diffusion = DiffusionConfig(prediction=args.prediction or "epsilon", schedule=args.schedule)
        return named_config(args.config, **changes), diffusion, None
    parent, _ = load_model(args.init_from, registry_of(args), "cpu")
    config = parent.model_config
    if args.image_size and image_size_of(args.image_size) != config.image_size:
        raise ConfigError(f"--init-from keeps the model's input size {config.image_size}; drop --image-size.")
    if args.prediction and args.prediction != parent.diffusion.prediction:
        raise ConfigError(
            f"--init-from keeps the model's prediction ({parent.diffusion.prediction}); drop --prediction."
        )
    channels = detect_channels(sources_pairs) if args.channels == "auto" else int(args.channels)
    classes = detect_num_classes(sources_pairs) if args.num_classes == "auto" else int(args.num_classes)
    model = parent.model
    if channels > config.image_channels or classes > config.num_classes:
        model = adapt_model(model, max(channels, config.image_channels), max(classes, config.num_classes))
    if box and not config.prompt_channels:
        model = add_box_channel(model)
    return model, parent.diffusion, parent


def normalisation_of(args: argparse.Namespace, model_config: ModelConfig, parent: Checkpoint | None) -> str:
    """--normalisation; with --init-from the model's (anchored on the luminance when widened to
    colour, as an adapted fine-tune's), and another one given is refused."""
    if parent is None:
        return str(args.normalisation or "percentile")
    normalisation = parent.preprocess.normalisation
    if model_config.image_channels != parent.model_config.image_channels:
        normalisation = LUMINANCE_ANCHORED + normalisation.removeprefix(LUMINANCE_ANCHORED)
    if args.normalisation not in (None, normalisation):
        raise ConfigError(
            f"--init-from keeps the model's normalisation ({normalisation}); drop --normalisation."
        )
    return normalisation


def command_train(args: argparse.Namespace) -> int:
    if args.steps is None and args.minutes is None:
        raise ConfigError("Give a training budget: --steps N, --minutes M or both.")
    precision_of(args)  # a contradiction now, not after the data is read
    if args.register:
        registry_of(args).check_new_name(args.register)  # now, not after hours of training
    sources = sources_of(args)
    crop_rule = crop_rule_of(args)
    recipe = crop_recipe_of(args) if crop_rule is not None else None
    with distributed_session(args.device) as context, cancel_on_signals() as cancel:
        main_process = context.is_main
        parts = split_sources(
            sources, args.val_split, 0.0 if args.val_split else args.val_fraction, args.seed
        )
        start, diffusion, parent = start_model(args, [pair for part in parts for pair in part.train])
        model_config = start.config if isinstance(start, MedSegDiffUNet) else start
        normalisation = normalisation_of(args, model_config, parent)
        preprocess = PreprocessConfig(
            normalisation=normalisation,
            crop_rule=crop_rule,
            prompt_encoding="box-channel" if model_config.prompt_channels else "none",
        )
        train_data, validation_data = build_datasets(parts, model_config, preprocess, recipe, args.seed)
        if main_process:
            each = ", ".join(f"{p.source.name} {len(p.train)}+{len(p.validation)}" for p in parts)
            note(
                f"{sum(len(p.train) for p in parts)} training and {sum(len(p.validation) for p in parts)} "
                f"validation images{f' ({each})' if len(parts) > 1 else ''}; model {model_config.name} "
                f"{model_config.image_size[0]}x{model_config.image_size[1]}, {model_config.image_channels} "
                f"channel(s){' + the box' if model_config.prompt_channels else ''}, "
                f"{model_config.num_classes} classes; {context.world_size} process(es) on {context.device}"
            )
            if crop_rule is not None:
                around = "each object's box" if args.per_object else "each mask's box"
                note(f"Training on crops around {around}: {crop_rule.description}")
        config = train_config_of(args, context.device)
        if args.batch_size is None:  # per configuration on CUDA, else TrainConfig's
            device_type = resolve_device(context.device).type
            config = replace(config, batch_size=default_batch_size(model_config.name, device_type))
        training: dict[str, Any] = data_record(parts, train_data)
        if parent is not None:
            training["init_from"] = {"model": args.init_from, "version": parent.version}
        description = args.description or "trained on " + ", ".join(s.name for s in sources)
        metadata: dict[str, Any] = {"description": description, "training": training}
        reporter = TrainingReporter(json_lines=args.progress_json) if main_process else None
        result = train(
            start,
            train_data,
            args.out,
            config=config,
            validation_data=validation_data,
            diffusion=diffusion,
            preprocess=preprocess,
            metadata=metadata,
            progress=reporter,
            cancel=cancel,
            resume=not args.fresh,
        )
        if reporter is not None:
            reporter.close()
        if not main_process:
            return EXIT_CANCELLED if result.cancelled else EXIT_OK
        if result.cancelled:
            report_cancelled(args, result.step, result.run_dir)
            return EXIT_CANCELLED
        return report_trained(args, result, description)


def report_trained(args: argparse.Namespace, result: Any, description: str) -> int:
    """Register (when asked) and say what was trained: one line, or a JSON ``done`` event."""
    version_name = None
    if args.register is not None:
        registry = registry_of(args)
        assert result.final_checkpoint is not None
        version = registry.add(result.final_checkpoint, name=args.register or None, description=description)
        version_name = version.name
        if args.select:
            registry.select(version.name)
    validation = result.history[-1]["validation_dice"] if result.history else None
    if args.progress_json:
        emit_json(
            {
                "event": "done",
                "run_dir": str(result.run_dir),
                "final": str(result.final_checkpoint),
                "steps": result.step,
                "validation_dice": validation,
                "version": version_name,
            }
        )
    else:
        out(
            f"Trained {result.step} steps; checkpoint in {result.final_checkpoint}"
            + ("" if validation is None else f"; validation Dice {validation:.3f}")
            + ("" if version_name is None else f"; registered as {version_name}")
        )
    return EXIT_OK
