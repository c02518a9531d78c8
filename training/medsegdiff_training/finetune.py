"""Fine-tuning: a parent model version + a corrections store -> a new model version.

The napari menu action (through the ``medsegdiff finetune`` process), the CLI and
``torchrun`` all come here. The parent is only read; the new weights are trained in a run
folder outside the registry and registered at the very end, in one atomic step, with a
link to the parent and the validation Dice before and after. A cancelled fine-tune
registers nothing: the registry is exactly as it was, and the run folder keeps a
resumable state (pass the same ``run_dir`` to continue).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .adaptation import Adaptation, corrections_profile, plan_adaptation, plan_finetune  # noqa: F401 - plan_finetune: callers' old import
from .checkpoint import Checkpoint
from .config import ModelConfig, PreprocessConfig
from .corrections import CorrectionEntry, CorrectionsStore
from .data.dataset import SegmentationDataset
from .data.pairs import find_pairs
from .device import resolve_device
from .distributed import barrier, process_rank
from .errors import ConfigError, DatasetError
from .finetune_options import FinetuneOptions
from .model import MedSegDiffUNet
from .paths import new_run_dir
from .prompts import CropRule
from .registry import ModelRegistry, ModelVersion
from .schedule import NoiseSchedule
from .surgery import adapt_model, adapted_preprocess
from .train_config import DEFAULT_FINETUNE_CONFIG  # noqa: F401 - callers' old import
from .trainer import (
    CancelToken,
    TrainConfig,
    TrainProgress,
    is_cancelled,
    train,
    validation_dice,
)

MIN_ENTRIES_FOR_VALIDATION = 3
# Below this many corrections one is held out (each one is worth more to train on than to
# score; README "Few-shot adapting fine-tunes" measures the cost), from it on a fraction.
FEW_CORRECTIONS = 10
DEFAULT_VALIDATION_FRACTION = 0.2


@dataclass
class FinetuneResult:
    """The outcome of :func:`finetune`; ``version`` is ``None`` when it was cancelled."""

    version: ModelVersion | None
    cancelled: bool
    steps: int
    validation_dice_before: float | None
    validation_dice_after: float | None
    run_dir: Path
    adaptation: Adaptation | None = None
    parent: str = ""  # the version it started from (the selected one when none was named)


def split_entries(
    entries: list[CorrectionEntry], validation_fraction: float | None = None, seed: int = 0
) -> tuple[list[CorrectionEntry], list[CorrectionEntry]]:
    """(train, validation) entries; validation only when there are at least 3 entries.

    ``validation_fraction`` ``None`` is the default rule: one entry held out below
    :data:`FEW_CORRECTIONS` entries, :data:`DEFAULT_VALIDATION_FRACTION` of them from there
    on; a number holds out that fraction (at least one; 0: none). The split depends on the
    entry ids alone, so re-running a fine-tune on the same store holds out the same entries.
    """
    if validation_fraction is not None and not 0 <= validation_fraction < 1:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction}.")
    if len(entries) < MIN_ENTRIES_FOR_VALIDATION or validation_fraction == 0:
        return list(entries), []
    ordered = sorted(entries, key=lambda entry: entry.id)
    order = np.random.default_rng(seed).permutation(len(ordered))
    if validation_fraction is None:
        count = 1 if len(ordered) < FEW_CORRECTIONS else round(len(ordered) * DEFAULT_VALIDATION_FRACTION)
    else:
        count = min(len(ordered) - 1, max(1, round(len(ordered) * validation_fraction)))
    held_out = set(order[:count].tolist())
    return (
        [e for i, e in enumerate(ordered) if i not in held_out],
        [e for i, e in enumerate(ordered) if i in held_out],
    )


def _original_data(
    metadata: dict[str, Any],
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
    images: Path | None,
    masks: Path | None,
) -> SegmentationDataset:
    """The parent's own training data: given folders, else those its checkpoint names."""
    source = (metadata.get("training") or {}).get("source") or {}
    split_csv, split = None, None
    if images is None or masks is None:
        if not source.get("images") or not source.get("masks"):
            raise ConfigError(
                "To mix in the original data, give the folders of the parent's training images and masks "
                "(--original-images and --original-masks): the parent's checkpoint does not name them."
            )
        images, masks = Path(source["images"]), Path(source["masks"])
        split_csv, split = source.get("split_csv"), source.get("split")
    pairs = find_pairs(images, masks, split_csv, split)
    return SegmentationDataset.from_pairs(pairs, model_config, preprocess)


def parent_mask_loss_weight(metadata: dict[str, Any]) -> float:
    """The soft-Dice weight a checkpoint was trained with (0, the paper's MSE alone, if unknown)."""
    weight = ((metadata.get("training") or {}).get("config") or {}).get("mask_loss_weight", 0.0)
    return float(weight) if isinstance(weight, (int, float)) else 0.0


def _balanced(corrections: SegmentationDataset, original: SegmentationDataset) -> SegmentationDataset:
    """Corrections repeated so that they make up about half of every epoch."""
    repeats = max(1, math.ceil(len(original) / max(len(corrections), 1)))
    return SegmentationDataset(corrections.samples * repeats + original.samples)


@dataclass
class _Job:
    """A fine-tune made ready to train: the (adapted) parent network and its data."""

    checkpoint: Checkpoint
    model: MedSegDiffUNet
    preprocess: PreprocessConfig
    adaptation: Adaptation
    config: TrainConfig
    train_entries: list[CorrectionEntry]
    validation_entries: list[CorrectionEntry]
    train_data: SegmentationDataset
    validation_data: SegmentationDataset | None
    crop_rule: CropRule
    prompt_crops: int  # training samples cut around recorded prompt boxes (the rest: whole)


def _corrections(root: Path | None) -> tuple[CorrectionsStore, list[CorrectionEntry]]:
    """The store ``root`` and its entries; a missing or empty store is a named error."""
    store = CorrectionsStore(root)
    if not store.root.is_dir():
        raise DatasetError(
            f"The corrections folder {store.root} does not exist; export some corrections first."
        )
    entries = store.entries()
    if not entries:
        raise DatasetError(f"The corrections store {store.root} has no corrections yet; export some first.")
    return store, entries


def _prepare(
    parent: str,
    store: CorrectionsStore,
    entries: list[CorrectionEntry],
    options: FinetuneOptions,
    registry: ModelRegistry,
) -> _Job:
    """Load the parent, adapt it to the corrections, split and read them (a correction
    exported from a prompted run as one crop per box, by the parent's crop rule)."""
    checkpoint = registry.load(parent, device="cpu")
    adaptation = plan_adaptation(
        checkpoint.model_config, *corrections_profile(entries), options.channels, options.num_classes
    )
    model, preprocess = checkpoint.model, checkpoint.preprocess
    if adaptation.changes:
        model = adapt_model(model, adaptation.channels, adaptation.classes).eval()
        preprocess = adapted_preprocess(preprocess, adaptation)
    mask_loss_weight = options.mask_loss_weight
    if mask_loss_weight is None:
        mask_loss_weight = parent_mask_loss_weight(checkpoint.metadata)
    config = dataclasses.replace(options.config, mask_loss_weight=mask_loss_weight)
    train_entries, validation_entries = split_entries(entries, options.validation_fraction, config.seed)
    crop_rule = preprocess.prompt_crop_rule()
    train_data = store.as_dataset(model.config, preprocess, train_entries, crop_rule=crop_rule)
    validation_data = (
        store.as_dataset(model.config, preprocess, validation_entries, crop_rule=crop_rule)
        if validation_entries
        else None
    )
    if len(train_data) == 0:
        raise DatasetError(f"The corrections in {store.root} hold no labelled image to train on.")
    job = _Job(
        checkpoint, model, preprocess, adaptation, config, train_entries, validation_entries,
        train_data, validation_data, crop_rule, sum(1 for name in train_data.names if ":box" in name),
    )  # fmt: skip
    if options.mix_original:
        job.train_data = _balanced(
            train_data,
            # the parent's labels as the parent read them (an adapted child keeps their meaning)
            _original_data(
                checkpoint.metadata,
                model.config.replace(num_classes=checkpoint.model_config.num_classes),
                preprocess,
                options.original_images,
                options.original_masks,
            ),
        )
    return job


def _score_before(job: _Job) -> float | None:
    """The starting network's Dice on the held-out corrections (rank 0; ``None``: none held out)."""
    if job.validation_data is None or process_rank() != 0:
        return None
    device = resolve_device(job.config.device)
    return validation_dice(
        job.model.to(device),
        NoiseSchedule(job.checkpoint.diffusion),
        job.validation_data,
        job.config.validation_sampling,
        device,
        job.config.validation_images,
    )


def _metadata(
    job: _Job, parent: str, store: CorrectionsStore, options: FinetuneOptions, before: float | None
) -> dict[str, Any]:
    """What the child's checkpoint records about where it came from."""
    return {
        "description": options.description
        or f"fine-tuned from {parent} on {len(job.train_entries)} corrections",
        "parent_version": parent,
        "finetune": {
            "store": str(store.root),
            "train_entries": [e.id for e in job.train_entries],
            "validation_entries": [e.id for e in job.validation_entries],
            "mix_original": options.mix_original,
            "validation_dice_before": before,
            "adaptation": job.adaptation.to_dict(),
            "prompt_crops": job.prompt_crops,
            "crop_rule": job.crop_rule.to_dict(),
        },
        "training": {"source": (job.checkpoint.metadata.get("training") or {}).get("source")},
    }


def _register(
    registry: ModelRegistry,
    checkpoint: Path,
    job: _Job,
    options: FinetuneOptions,
    metadata: dict[str, Any],
    scores: tuple[float | None, float | None],
) -> ModelVersion:
    """Move the child's checkpoint into the registry (selected if asked), with its scores."""
    adaptation = job.adaptation
    version = registry.add(
        checkpoint,
        name=options.name,
        parent=metadata["parent_version"],
        description=metadata["description"],
        move=True,
        metrics={
            "validation_dice_before": scores[0],
            "validation_dice_after": scores[1],
            "corrections": len(job.train_entries) + len(job.validation_entries),
            "validation_corrections": len(job.validation_entries),
            "image_channels": adaptation.channels,
            "num_classes": adaptation.classes,
            "parent_image_channels": adaptation.parent_channels,
            "parent_num_classes": adaptation.parent_classes,
        },
    )
    if options.select:
        registry.select(version.name)
    return version


def finetune(
    options: FinetuneOptions,
    *,
    registry: ModelRegistry | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: CancelToken = None,
) -> FinetuneResult:
    """Fine-tune ``options.parent`` on the corrections in ``options.store``; register the result.

    With 3 or more corrections some are held out and scored before and after (foreground
    Dice of the EMA weights): one below 10 corrections, 20 % from 10 on, or
    ``options.validation_fraction`` of them (at least one; 0: none) when given.
    ``progress`` and ``cancel`` work as in :func:`~medsegdiff_training.trainer.train`.
    Under ``torchrun`` only rank 0 scores and registers. The loss continues the parent's
    recipe: its soft-Dice weight unless ``options.mask_loss_weight`` is given.

    A correction exported from a box- or point-prompted run records its boxes; it trains
    as one crop per box, cut by the parent's crop rule as a prompt is (the held-out ones
    are scored on those crops too); corrections without prompts are used whole.

    The child adapts to the corrections (:func:`plan_finetune`): RGB corrections give a
    grey parent an RGB child, label values the parent lacks give it more classes, by
    weight surgery that starts the child where the parent was
    (:mod:`~medsegdiff_training.surgery`); ``options.channels`` / ``num_classes`` force a
    choice. The scores before and after are then the starting (surgered) network's and
    the child's, on the same held-out corrections read as the child reads them.

    Examples
    --------
    >>> import tempfile
    >>> from medsegdiff_training.checkpoint import save_checkpoint
    >>> from medsegdiff_training.config import DiffusionConfig, named_config
    >>> from medsegdiff_training.model import MedSegDiffUNet
    >>> registry = ModelRegistry(tempfile.mkdtemp())
    >>> parent = save_checkpoint(tempfile.mkdtemp() + "/p", MedSegDiffUNet(named_config("tiny")),
    ...                          DiffusionConfig(), PreprocessConfig())
    >>> _ = registry.add(parent, name="parent")
    >>> store = CorrectionsStore(tempfile.mkdtemp())
    >>> labels = np.zeros((32, 32), np.uint8); labels[8:20, 8:20] = 1
    >>> _ = store.add(np.random.rand(32, 32), labels)
    >>> options = FinetuneOptions(parent="parent", store=store.root, run_dir=Path(tempfile.mkdtemp()) / "run",
    ...                           config=TrainConfig(steps=2, batch_size=1))
    >>> result = finetune(options, registry=registry)
    >>> result.version.parent, result.steps
    ('parent', 2)
    """
    registry = registry or ModelRegistry()
    if options.name is not None:
        registry.check_new_name(options.name)  # before training, not after it
    store, entries = _corrections(options.store)
    parent = options.parent or registry.selected()
    job = _prepare(parent, store, entries, options, registry)
    # a folder of its own, even for a fine-tune that starts in the same second as another
    run_dir = Path(options.run_dir) if options.run_dir is not None else new_run_dir(f"finetune-{parent}")
    before = _score_before(job)
    barrier()
    metadata = _metadata(job, parent, store, options, before)
    if is_cancelled(cancel):
        return FinetuneResult(None, True, 0, before, None, run_dir, job.adaptation, parent)
    result = train(
        job.model,
        job.train_data,
        run_dir,
        config=job.config,
        validation_data=job.validation_data,
        diffusion=job.checkpoint.diffusion,
        preprocess=job.preprocess,
        metadata=metadata,
        progress=progress,
        cancel=cancel,
    )
    if result.cancelled or result.final_checkpoint is None:
        return FinetuneResult(
            None, result.cancelled, result.step, before, None, run_dir, job.adaptation, parent
        )
    validated = result.history and job.validation_data is not None
    after = result.history[-1]["validation_dice"] if validated else None
    version = _register(registry, result.final_checkpoint, job, options, metadata, (before, after))
    shutil.rmtree(run_dir / "state", ignore_errors=True)  # registered: the resumable state is spent
    return FinetuneResult(version, False, result.step, before, after, run_dir, job.adaptation, parent)
