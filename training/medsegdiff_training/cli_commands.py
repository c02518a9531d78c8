"""What each ``medsegdiff`` subcommand does; :mod:`.cli` parses the arguments.

Every command takes the parsed ``argparse.Namespace`` and returns the exit code. User
errors are raised as :class:`~medsegdiff_training.errors.MedSegDiffError` and turned into
one line by :func:`medsegdiff_training.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .adaptation import plan_finetune
from .checkpoint import PICKLE_SUFFIXES, Checkpoint, load_checkpoint
from .cli_progress import CountReporter, TrainingReporter, cancel_on_signals, emit_json, json_safe
from .config import (
    ModelConfig,
    image_size_of,
    named_config,
)
from .corrections import CorrectionsStore
from .data.pairs import Pair, find_pairs
from .distributed import distributed_session
from .errors import EXIT_CANCELLED, EXIT_OK, EXIT_USER_ERROR, ConfigError
from .finetune import finetune
from .finetune_events import FinetuneCancelled, FinetuneDone, FinetuneStarted, end_event
from .finetune_options import options_from_args
from .inference import SamplingSettings, Segmenter
from .registry import ModelRegistry
from .summary import describe
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


def load_model(
    spec: str | None, registry: ModelRegistry, device: str = "cpu", *, for_boxes: bool = False
) -> tuple[Checkpoint, str]:
    """A registry version by name, or a checkpoint folder by path; default: the selected one
    (with ``for_boxes``: the one box prompts use, :meth:`~.registry.ModelRegistry.selected_for_boxes`)."""
    name = spec or (registry.selected_for_boxes() if for_boxes else registry.selected())
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


def report_cancelled(args: argparse.Namespace, step: int, run_dir: Path) -> None:
    if getattr(args, "progress_json", False):
        emit_json(FinetuneCancelled(steps=step, run_dir=str(run_dir)).to_dict())
    resumable = (Path(run_dir) / STATE_DIR).is_dir()
    note(
        f"Cancelled at step {step}; nothing was registered."
        + (f" The resumable state is in {run_dir}." if resumable else " No training state was saved yet.")
    )


# -- finetune ---------------------------------------------------------------------------


def command_finetune(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if options.name is not None:
        registry_of(args).check_new_name(options.name)  # now, not after training
    with distributed_session(args.device) as context, cancel_on_signals() as cancel:
        registry = registry_of(args)
        parent = options.parent or registry.selected()
        options = options.replace(parent=parent, device=context.device)
        store = CorrectionsStore(options.store)
        plan = plan_finetune(
            parent, store, registry=registry, channels=options.channels, num_classes=options.num_classes
        )
        entries = len(store.entries()) if context.is_main else 0
        if entries:
            note(f"Fine-tuning {parent}; the new version will be: {plan.describe()}")
            if args.progress_json:
                emit_json(FinetuneStarted(parent, str(store.root), entries, plan.describe()).to_dict())
        reporter = TrainingReporter(json_lines=args.progress_json) if context.is_main else None
        clock, cpu_clock = time.perf_counter(), time.process_time()
        result = finetune(options, registry=registry, progress=reporter, cancel=cancel)
        end = end_event(result, time.perf_counter() - clock, time.process_time() - cpu_clock)
        if reporter is not None:
            reporter.close()
        if not context.is_main:
            return EXIT_CANCELLED if result.cancelled else EXIT_OK
        if not isinstance(end, FinetuneDone):
            report_cancelled(args, result.steps, result.run_dir)
            return EXIT_CANCELLED
        if args.progress_json:
            emit_json(end.to_dict())
        else:
            before, after = end.validation_dice_before, end.validation_dice_after
            scores = (
                "" if before is None or after is None else f"; validation Dice {before:.3f} -> {after:.3f}"
            )
            out(f"Registered {end.version} (parent {end.parent}) after {end.steps} steps{scores}")
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
    check_limit(args.limit)
    pairs = find_pairs(args.images, args.masks, args.split_csv, args.split)
    return pairs[: args.limit] if args.limit else pairs


def check_limit(limit: int | None) -> None:
    """``--limit N`` takes the first N images: N must be at least 1 (``-1`` is not "all but one")."""
    if limit is not None and limit < 1:
        raise ConfigError(
            f"--limit takes the first N images, N at least 1; got {limit} (leave it out for all)."
        )


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
    selected, boxes = registry.selected(), registry.selected_for_boxes()
    versions = registry.versions()
    if args.json:
        document = {
            "registry": str(registry.root),
            "selected": selected,
            "selected_for_boxes": boxes,
            "versions": [
                v.to_dict() | {"selected": v.name == selected, "selected_for_boxes": v.name == boxes}
                for v in versions
            ],
        }
        out(json.dumps(json_safe(document), indent=2))
        return
    if not versions:
        out(f"No model versions in {registry.root} yet (and no shipped default).")
    for version in versions:
        dice = version.validation_dice
        marks = ("*" if version.name == selected else " ") + ("b" if version.name == boxes else " ")
        out(
            f"{marks} {version.name:<24} {version.created[:16]:<17} "
            f"parent {version.parent or '-':<20} Dice {_number(dice)}  {version.config_summary}"
            + ("  (read-only)" if version.read_only else "")
        )
    if selected not in {v.name for v in versions}:
        out(f"selected: {selected} (not installed)")
    if versions:
        out("(* the model for whole images, b the model for box prompts)")


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
    """``select NAME [--for-boxes]``, ``rollback`` (to the parent) or ``rollback NAME``."""
    if getattr(args, "for_boxes", False):
        before = registry.selected_for_boxes()
        registry.select(args.name, role="boxes")
        after = registry.selected_for_boxes()
        out(
            json.dumps({"selected_for_boxes": after, "previous": before})
            if args.json
            else f"Box prompts use {after} (was {before})."
        )
        return
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
