"""What each ``medsegdiff`` subcommand does; :mod:`.cli` parses the arguments.

Every command takes the parsed ``argparse.Namespace`` and returns the exit code. User
errors are raised as :class:`~medsegdiff_training.errors.MedSegDiffError` and turned into
one line by :func:`medsegdiff_training.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .adaptation import plan_finetune
from .checkpoint import PICKLE_SUFFIXES, Checkpoint, load_checkpoint
from .cli_progress import CountReporter, TrainingReporter, cancel_on_signals, emit_json, json_safe
from .config import (
    DiffusionConfig,
    ModelConfig,
    PreprocessConfig,
    default_batch_size,
    image_size_of,
    named_config,
)
from .corrections import CorrectionsStore
from .data.dataset import SegmentationDataset
from .data.io import read_array, read_mask
from .data.pairs import Pair, find_pairs
from .data.roi_crops import DEFAULT_JITTER, RoiCropDataset
from .device import resolve_device
from .distributed import distributed_session
from .errors import EXIT_CANCELLED, EXIT_OK, EXIT_USER_ERROR, ConfigError
from .finetune import DEFAULT_FINETUNE_CONFIG, finetune
from .inference import SamplingSettings, Segmenter
from .prompts import DEFAULT_CROP_RULE, CropRule
from .registry import ModelRegistry
from .summary import describe
from .train_config import TrainConfig, train_config_from
from .trainer import train
from .training_state import STATE_DIR

__all__ = ["EXIT_CANCELLED", "EXIT_OK", "EXIT_USER_ERROR"]  # re-exported for callers of the commands
PROG_NAME = "medsegdiff"


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def note(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def registry_of(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(args.registry)


def load_model(spec: str | None, registry: ModelRegistry, device: str = "cpu") -> tuple[Checkpoint, str]:
    """A registry version by name, or a checkpoint folder by path; default: the selected one."""
    name = spec or registry.selected()
    path = Path(name)
    looks_like_path = "/" in name or "\\" in name or path.suffix.lower() in PICKLE_SUFFIXES
    if name not in registry.names() and (looks_like_path or path.exists()):
        return load_checkpoint(path, device), str(path)
    return registry.load(name, device), name


def precision_of(args: argparse.Namespace) -> str | None:
    """``--precision``, with ``--no-amp`` meaning ``fp32``; None when neither is given.

    ``--no-amp`` beside ``--precision auto`` or ``bf16`` asks for two things: a user error.
    """
    precision = getattr(args, "precision", None)
    if getattr(args, "no_amp", False):
        if precision not in (None, "fp32"):
            raise ConfigError(
                f"--no-amp means --precision fp32, which contradicts --precision {precision}: "
                "give one of them."
            )
        return "fp32"
    return precision


def segmenter_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`Segmenter` keywords of ``predict`` / ``evaluate``'s speed options
    (None keeps the device's default)."""
    return {
        "precision": precision_of(args) or "auto",
        "channels_last": args.channels_last,
        "cuda_graphs": args.cuda_graphs,
        "compile": args.compile,
    }


def segmenter_of(args: argparse.Namespace, checkpoint: Checkpoint) -> Segmenter:
    """The Segmenter that ``predict`` and ``evaluate`` (plain or with boxes) sample with."""
    return Segmenter(checkpoint, device=args.device, **segmenter_options(args))


def sampling_settings(args: argparse.Namespace) -> SamplingSettings:
    if args.ensemble < 1:
        raise ConfigError("--ensemble must be at least 1.")
    return SamplingSettings(
        sampler=args.sampler,
        steps=args.steps,
        ensemble=args.ensemble,
        seed=args.seed,
        threshold=args.threshold,
    )


# -- train ------------------------------------------------------------------------------


def detect_num_classes(pairs: list[Pair]) -> int:
    """2 for 0/1 or 0/255 masks, else the largest label + 1 (label maps such as 0/1/2)."""
    top = 0
    for pair in pairs:
        mask = read_mask(pair.mask)
        values = np.unique(mask[..., 0] if mask.ndim == 3 else mask)
        if set(values.tolist()) <= {0, 255}:
            continue
        top = max(top, int(values.max()))
    return max(2, top + 1)


def detect_channels(pair: Pair) -> int:
    image = read_array(pair.image)
    return 3 if image.ndim == 3 and image.shape[-1] in (3, 4) else 1


def model_config_for(args: argparse.Namespace, pairs: list[Pair]) -> ModelConfig:
    changes: dict[str, Any] = {}
    if args.image_size:
        changes["image_size"] = image_size_of(args.image_size)
    changes["num_classes"] = (
        detect_num_classes(pairs) if args.num_classes == "auto" else int(args.num_classes)
    )
    changes["image_channels"] = detect_channels(pairs[0]) if args.channels == "auto" else int(args.channels)
    return named_config(args.config, **changes)


def split_training_pairs(args: argparse.Namespace) -> tuple[list[Pair], list[Pair]]:
    """(train, validation) pairs from --split / --val-split / --val-fraction."""
    if (args.split or args.val_split) and not args.split_csv:
        raise ConfigError("--split and --val-split need --split-csv (a name,split CSV).")
    pairs = find_pairs(args.images, args.masks, args.split_csv, args.split)
    if args.val_split:
        validation = find_pairs(args.images, args.masks, args.split_csv, args.val_split)
        held_out = {pair.name for pair in validation}
        return [p for p in pairs if p.name not in held_out], validation
    if not 0 <= args.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {args.val_fraction}.")
    count = round(len(pairs) * args.val_fraction)
    if count == 0 or len(pairs) - count < 1:
        return pairs, []
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    held = set(order[:count].tolist())
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


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


def roi_crop_rule(args: argparse.Namespace) -> CropRule | None:
    """The crop rule of ``train --roi-crops`` (``None`` without it), from ``--crop-margin``."""
    if not args.roi_crops:
        if args.crop_margin is not None:
            raise ConfigError("--crop-margin needs --roi-crops.")
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
    return CropRule(
        margin_px=margin_px,
        margin_fraction=fraction,
        description=(
            f"training crops (medsegdiff train --roi-crops): the mask's bounding box + {shown} on each "
            f"side, edges jittered by up to {DEFAULT_JITTER * 100:g} %, resized non-uniformly to the input"
        ),
    )


def command_train(args: argparse.Namespace) -> int:
    if args.steps is None and args.minutes is None:
        raise ConfigError("Give a training budget: --steps N, --minutes M or both.")
    precision_of(args)  # a contradiction now, not after the data is read
    if args.register:
        registry_of(args).check_new_name(args.register)  # now, not after hours of training
    with distributed_session(args.device) as context, cancel_on_signals() as cancel:
        main_process = context.is_main
        train_pairs, validation_pairs = split_training_pairs(args)
        model_config = model_config_for(args, train_pairs)
        crop_rule = roi_crop_rule(args)
        preprocess = PreprocessConfig(normalisation=args.normalisation, crop_rule=crop_rule)
        if main_process:
            note(
                f"{len(train_pairs)} training and {len(validation_pairs)} validation images; model "
                f"{model_config.name} {model_config.image_size[0]}x{model_config.image_size[1]}, "
                f"{model_config.image_channels} channel(s), {model_config.num_classes} classes; "
                f"{context.world_size} process(es) on {context.device}"
            )
        dataset: type[SegmentationDataset] = SegmentationDataset
        options: dict[str, Any] = {}
        if crop_rule is not None:
            dataset, options = RoiCropDataset, {"seed": args.seed}
            if main_process:
                note(f"Training on crops around each mask's box: {crop_rule.description}")
        train_data = dataset.from_pairs(train_pairs, model_config, preprocess, **options)
        validation_data = (
            dataset.from_pairs(validation_pairs, model_config, preprocess, **options)
            if validation_pairs
            else None
        )
        config = train_config_of(args, context.device)
        if args.batch_size is None:  # per configuration on CUDA, else TrainConfig's
            device_type = resolve_device(context.device).type
            config = replace(config, batch_size=default_batch_size(model_config.name, device_type))
        source = {
            "images": str(Path(args.images).resolve()),
            "masks": str(Path(args.masks).resolve()),
            "split_csv": str(Path(args.split_csv).resolve()) if args.split_csv else None,
            "split": args.split,
        }
        metadata: dict[str, Any] = {
            "description": args.description or f"trained on {Path(args.images).resolve().parent.name}",
            "training": {"source": source, "validation_images": sorted(p.name for p in validation_pairs)},
        }
        if isinstance(train_data, RoiCropDataset):
            metadata["training"]["roi_crops"] = train_data.recipe()
        reporter = TrainingReporter(json_lines=args.progress_json) if main_process else None
        result = train(
            model_config,
            train_data,
            args.out,
            config=config,
            validation_data=validation_data,
            diffusion=DiffusionConfig(prediction=args.prediction, schedule=args.schedule),
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
        version_name = None
        if args.register is not None:
            registry = registry_of(args)
            assert result.final_checkpoint is not None
            version = registry.add(
                result.final_checkpoint, name=args.register or None, description=metadata["description"]
            )
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


def report_cancelled(args: argparse.Namespace, step: int, run_dir: Path) -> None:
    if getattr(args, "progress_json", False):
        emit_json({"event": "cancelled", "steps": step, "run_dir": str(run_dir)})
    resumable = (Path(run_dir) / STATE_DIR).is_dir()
    note(
        f"Cancelled at step {step}; nothing was registered."
        + (f" The resumable state is in {run_dir}." if resumable else " No training state was saved yet.")
    )


# -- finetune ---------------------------------------------------------------------------


def command_finetune(args: argparse.Namespace) -> int:
    if args.name is not None:
        registry_of(args).check_new_name(args.name)  # now, not after training
    with distributed_session(args.device) as context, cancel_on_signals() as cancel:
        registry = registry_of(args)
        parent = args.parent or registry.selected()
        steps = (
            args.steps
            if args.steps is not None
            else (None if args.minutes is not None else DEFAULT_FINETUNE_CONFIG.steps)
        )
        # --mask-loss-weight is the finetune's own choice (default: the parent's), not the config's
        values = {k: v for k, v in vars(args).items() if k != "mask_loss_weight"}
        config = train_config_from(values, DEFAULT_FINETUNE_CONFIG, steps=steps, device=context.device)
        store = CorrectionsStore(args.store)
        plan = plan_finetune(
            parent, store, registry=registry, channels=args.channels, num_classes=args.num_classes
        )
        if context.is_main and store.entries():
            note(f"Fine-tuning {parent}; the new version will be: {plan.describe()}")
        reporter = TrainingReporter(json_lines=args.progress_json) if context.is_main else None
        result = finetune(
            parent,
            store,
            registry=registry,
            config=config,
            mix_original=args.mix_original,
            original_images=args.original_images,
            original_masks=args.original_masks,
            validation_fraction=args.validation_fraction,
            progress=reporter,
            cancel=cancel,
            run_dir=args.run_dir,
            name=args.name,
            mask_loss_weight=args.mask_loss_weight,
            channels=args.channels,
            num_classes=args.num_classes,
        )
        if reporter is not None:
            reporter.close()
        if not context.is_main:
            return EXIT_CANCELLED if result.cancelled else EXIT_OK
        if result.cancelled or result.version is None:
            report_cancelled(args, result.steps, result.run_dir)
            return EXIT_CANCELLED
        if args.select:
            registry.select(result.version.name)
        if args.progress_json:
            emit_json(
                {
                    "event": "done",
                    "version": result.version.name,
                    "parent": parent,
                    "validation_dice_before": result.validation_dice_before,
                    "validation_dice_after": result.validation_dice_after,
                    "steps": result.steps,
                    "path": str(result.version.path),
                    "adaptation": plan.to_dict(),
                }
            )
        else:
            before, after = result.validation_dice_before, result.validation_dice_after
            scores = (
                "" if before is None or after is None else f"; validation Dice {before:.3f} -> {after:.3f}"
            )
            out(f"Registered {result.version.name} (parent {parent}) after {result.steps} steps{scores}")
        return EXIT_OK


# -- predict / evaluate -----------------------------------------------------------------


def command_predict(args: argparse.Namespace) -> int:
    from .prediction import list_inputs, predict_files

    files = list_inputs(args.inputs)
    settings = sampling_settings(args)
    checkpoint, name = load_model(args.model, registry_of(args), "cpu")
    segmenter = segmenter_of(args, checkpoint)
    note(
        f"Segmenting {len(files)} file(s) with {name} ({settings.sampler}, {settings.resolved_steps()} steps)"
    )
    with cancel_on_signals() as cancel:
        written = predict_files(
            segmenter,
            files,
            Path(args.out),
            settings,
            label_format=args.format,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            uncertainty=args.uncertainty,
            progress=CountReporter("segmented"),
            cancel=cancel.is_set,
        )
    for path in written:
        out(str(path))
    return EXIT_CANCELLED if len(written) < len(files) else EXIT_OK


METRICS = ("dice", "iou", "hd95")


def evaluation_document(
    name: str,
    report: Any,
    num_classes: int,
    per_image: bool,
    structures: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    summary = report.summary
    classes = [1] if num_classes == 2 else list(range(1, num_classes))
    document = {
        "model": name,
        "images": int(summary.get("count", 0)),
        "settings": report.settings,
        "mean": {
            key: summary.get(key) for key in ("dice", "iou", "hd95", "dice_5threshold") if key in summary
        },
        "per_class": {
            str(k): {m: summary.get(f"{m}_class{k}") for m in ("dice", "iou", "hd95")} for k in classes
        },
        "hd95_undefined": int(summary.get("hd95_undefined", 0)),
        "warnings": list(getattr(report, "warnings", [])),
    }
    if structures:
        document["structures"] = {
            name: {
                "classes": list(classes),
                **{m: summary.get(f"{name}_{m}") for m in ("dice", "iou", "hd95")},
            }
            for name, classes in structures.items()
        }
    if per_image:
        document["per_image"] = report.per_image
    return json_safe(document)


def evaluation_pairs(args: argparse.Namespace) -> list[Pair]:
    """The image/mask pairs ``evaluate`` scores (its split and ``--limit``)."""
    if args.split and not args.split_csv:
        raise ConfigError("--split needs --split-csv (a name,split CSV).")
    pairs = find_pairs(args.images, args.masks, args.split_csv, args.split)
    return pairs[: args.limit] if args.limit else pairs


def command_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_pairs

    pairs = evaluation_pairs(args)
    settings = sampling_settings(args)
    checkpoint, name = load_model(args.model, registry_of(args), "cpu")
    structures = evaluation_structures(args.structures, checkpoint.model_config.num_classes)
    segmenter = segmenter_of(args, checkpoint)
    note(
        f"Evaluating {name} on {len(pairs)} images ({settings.sampler}, {settings.resolved_steps()} steps, "
        f"ensemble {settings.ensemble})"
    )
    with cancel_on_signals() as cancel:
        report = evaluate_pairs(
            segmenter,
            pairs,
            settings,
            batch_size=args.batch_size,
            progress=CountReporter("evaluated"),
            cancel=cancel.is_set,
            structures=structures,
        )
    document = evaluation_document(
        name, report, checkpoint.model_config.num_classes, args.per_image, structures
    )
    for warning in report.warnings:
        note(f"{PROG_NAME}: warning: {warning}")
    if args.json:
        out(json.dumps(document, indent=2))
    else:
        print_evaluation(document)
    return EXIT_CANCELLED if cancel.is_set() else EXIT_OK


def evaluation_structures(text: str | None, num_classes: int) -> dict[str, tuple[int, ...]] | None:
    """``--structures`` checked against the model's classes (ConfigError with what to write)."""
    from .metrics import parse_structures

    if not text:
        return None
    try:
        structures = parse_structures(text)
    except ValueError as error:
        raise ConfigError(f"--structures: {error}") from None
    for name, classes in structures.items():
        if max(classes) >= num_classes:
            raise ConfigError(
                f"--structures: {name!r} names class {max(classes)}, but the model has classes "
                f"0..{num_classes - 1} (0 is the background)."
            )
    return structures


def _number(value: float | None, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def print_evaluation(document: dict[str, Any]) -> None:
    mean = document["mean"]
    out(
        f"{document['model']} on {document['images']} images "
        f"({document['settings']['sampler']}, {document['settings']['steps']} steps, "
        f"ensemble {document['settings']['ensemble']})"
    )
    line = (
        f"  mean       Dice {_number(mean.get('dice'))}  IoU {_number(mean.get('iou'))}  "
        f"HD95 {_number(mean.get('hd95'), 1)} px"
    )
    if "dice_5threshold" in mean:
        line += f"  5-threshold Dice {_number(mean['dice_5threshold'])}"
    out(line)
    for k, values in document["per_class"].items():
        out(
            f"  class {k:<4} Dice {_number(values['dice'])}  IoU {_number(values['iou'])}  "
            f"HD95 {_number(values['hd95'], 1)} px"
        )
    for name, values in document.get("structures", {}).items():
        classes = "+".join(map(str, values["classes"]))
        dice, iou, hd95 = (_number(values["dice"]), _number(values["iou"]), _number(values["hd95"], 1))
        label = f"{name} ({classes})"
        out(f"  {label:<10} Dice {dice}  IoU {iou}  HD95 {hd95} px")  # in line with the class rows
    if document["hd95_undefined"]:
        out(f"  HD95 undefined (one mask empty) on {document['hd95_undefined']} images, left out of the mean")


# -- models / info ----------------------------------------------------------------------


def _models_list(args: argparse.Namespace, registry: ModelRegistry) -> None:
    selected = registry.selected()
    versions = registry.versions()
    if args.json:
        document = {
            "registry": str(registry.root),
            "selected": selected,
            "versions": [v.to_dict() | {"selected": v.name == selected} for v in versions],
        }
        out(json.dumps(json_safe(document), indent=2))
        return
    if not versions:
        out(f"No model versions in {registry.root} yet (and no shipped default).")
    for version in versions:
        dice = version.validation_dice
        out(
            f"{'*' if version.name == selected else ' '} {version.name:<24} {version.created[:16]:<17} "
            f"parent {version.parent or '-':<20} Dice {_number(dice)}  {version.config_summary}"
            + ("  (read-only)" if version.read_only else "")
        )
    if selected not in {v.name for v in versions}:
        out(f"selected: {selected} (not installed)")


def _models_show(args: argparse.Namespace, registry: ModelRegistry) -> None:
    info = registry.describe(args.name or registry.selected())
    if args.json:
        out(json.dumps(json_safe(info), indent=2))
        return
    for key in (
        "name",
        "path",
        "parent",
        "created",
        "description",
        "config_summary",
        "data_digest",
        "read_only",
        "selected",
    ):
        out(f"{key:<15} {info[key]}")
    for key, value in info["metrics"].items():
        out(f"{'metric':<15} {key} = {value}")


def _models_select(args: argparse.Namespace, registry: ModelRegistry) -> None:
    """``select NAME``, ``rollback`` (to the parent) or ``rollback NAME``."""
    before = registry.selected()
    if args.name:
        registry.select(args.name)
    elif args.action == "rollback":
        registry.rollback()
    else:
        raise ConfigError("Name the version to select: medsegdiff models select NAME.")
    after = registry.selected()
    out(
        json.dumps({"selected": after, "previous": before})
        if args.json
        else f"Selected {after} (was {before})."
    )


def _models_rename(args: argparse.Namespace, registry: ModelRegistry) -> None:
    version = registry.rename(args.name, args.new_name)
    out(json.dumps(version.to_dict()) if args.json else f"Renamed {args.name} to {version.name}.")


def _models_delete(args: argparse.Namespace, registry: ModelRegistry) -> None:
    registry.delete(args.name)
    out(json.dumps({"deleted": args.name}) if args.json else f"Deleted {args.name}.")


MODELS_ACTIONS = {
    "list": _models_list,
    "show": _models_show,
    "select": _models_select,
    "rollback": _models_select,
    "rename": _models_rename,
    "delete": _models_delete,
}


def command_models(args: argparse.Namespace) -> int:
    args.action = args.action or "list"
    MODELS_ACTIONS[args.action](args, registry_of(args))
    return EXIT_OK


def describe_config(config: ModelConfig) -> str:
    """The architecture summary with its parameter count (:func:`.summary.describe`)."""
    return describe(config)


def command_info(args: argparse.Namespace) -> int:
    from . import __version__
    from .device import device_availability
    from .paths import data_home

    if args.config:
        changes: dict[str, Any] = {}
        if args.image_size:
            changes["image_size"] = image_size_of(args.image_size)
        if args.num_classes:
            changes["num_classes"] = args.num_classes
        if args.channels:
            changes["image_channels"] = args.channels
        config = named_config(args.config, **changes)
        if args.json:
            from .model import MedSegDiffUNet, count_parameters

            out(
                json.dumps(
                    {"config": config.to_dict(), "parameters": count_parameters(MedSegDiffUNet(config))},
                    indent=2,
                )
            )
        else:
            out(describe_config(config))
        return EXIT_OK
    if args.model:
        checkpoint, name = load_model(args.model, registry_of(args), "cpu")
        out(f"model {name}: {checkpoint.metadata.get('description', '')}")
        out(describe_config(checkpoint.model_config))
        return EXIT_OK
    registry = registry_of(args)
    document = {
        "medsegdiff_training": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "devices": {k: v or "available" for k, v in device_availability().items()},
        "data_home": str(data_home()),
        "registry": str(registry.root),
        "selected_model": registry.selected(),
        "versions": registry.names(),
        "corrections": len(CorrectionsStore()),
    }
    if args.json:
        out(json.dumps(document, indent=2))
    else:
        for key, value in document.items():
            out(f"{key:<20} {value}")
    return EXIT_OK
