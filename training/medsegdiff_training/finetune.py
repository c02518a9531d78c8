"""Fine-tuning: a parent model version + a corrections store -> a new model version.

The napari menu action (through the ``medsegdiff finetune`` process), the CLI and
``torchrun`` all come here. The parent is only read; the new weights are trained in a run
folder outside the registry and registered at the very end, in one atomic step, with a
link to the parent and the validation Dice before and after: the held-out corrections are
scored as it trains, and the best EMA weights are registered, not the last (training stops
once they have not improved for ``patience`` steps). A cancelled fine-tune
registers nothing: the registry is exactly as it was, and the run folder keeps a
resumable state (pass the same ``run_dir`` to continue).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .adaptation import Adaptation, corrections_profile, plan_adaptation, plan_finetune  # noqa: F401 - plan_finetune: callers' old import
from .checkpoint import Checkpoint, load_checkpoint
from .config import PreprocessConfig
from .corrections import CorrectionEntry, CorrectionsStore
from .data.dataset import SegmentationDataset
from .device import resolve_device
from .distributed import barrier, process_rank
from .errors import DatasetError
from .finetune_data import (
    correction_data,
    object_crop_recipe,
    original_data,
    parent_mask_loss_weight,
    split_entries,
)
from .finetune_options import FinetuneOptions
from .inference import SamplingSettings
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

# How the held-out corrections are scored before and after (the keep-or-switch decision): as
# the annotator segments, DDIM 3 x 5 (the recommended sampling). The curve during training
# that picks the best weights uses the config's cheaper validation_sampling (one sample).
HELD_OUT_SCORING = SamplingSettings()


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
    best_step: int | None = None  # the step whose EMA weights were registered (keep_best)
    stopped_early: bool = False  # the held-out Dice stopped improving before the budget ended
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one entry per validation


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
    object_crops: int  # corrections also trained on as crops around their objects


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
    original = None
    if options.mix_original:
        original = original_data(
            checkpoint.metadata,
            # the parent's labels as the parent read them (an adapted child keeps their meaning)
            model.config.replace(num_classes=checkpoint.model_config.num_classes),
            preprocess,
            options.original_images,
            options.original_masks,
        )
    recipe = (
        object_crop_recipe(checkpoint.metadata, model.config, preprocess) if options.object_crops else None
    )
    data = correction_data(
        store, train_entries, validation_entries, model.config, preprocess,
        recipe=recipe, original=original, seed=config.seed,
    )  # fmt: skip
    if len(data.train) == 0:
        raise DatasetError(f"The corrections in {store.root} hold no labelled image to train on.")
    return _Job(
        checkpoint, model, preprocess, adaptation, config, train_entries, validation_entries,
        data.train, data.validation, preprocess.prompt_crop_rule(), data.prompt_crops, data.object_crops,
    )  # fmt: skip


def _score_held_out(job: _Job, model: MedSegDiffUNet) -> float | None:
    """``model``'s Dice on the held-out corrections as the annotator would segment them
    (:data:`HELD_OUT_SCORING`; rank 0; ``None``: none held out)."""
    if job.validation_data is None or process_rank() != 0:
        return None
    device = resolve_device(job.config.device)
    return validation_dice(
        model.to(device),
        NoiseSchedule(job.checkpoint.diffusion),
        job.validation_data,
        HELD_OUT_SCORING,
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
            "object_crops": job.object_crops,
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
    result: Any,
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
            "validation_samples": 0 if job.validation_data is None else len(job.validation_data),
            "best_step": result.best_step if scores[1] is not None else None,
            "steps": result.step,
            "stopped_early": result.stopped_early,
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

    With 3 or more corrections some are held out (a fifth, at least one, or
    ``options.validation_fraction`` of them; 0: none; :func:`~.finetune_data.split_entries`)
    and scored every ``config.validate_every`` steps (foreground Dice of the EMA weights,
    one cheap sample: ``config.validation_sampling``). With ``config.keep_best`` (the
    fine-tune default) the registered child is the EMA weights of the best of those scores;
    ``config.patience`` steps without a better one end the run. Before and after, parent and
    child are scored as the annotator segments (:data:`HELD_OUT_SCORING`): the numbers the
    queue's keep-or-switch rule compares.
    ``progress`` and ``cancel`` work as in :func:`~medsegdiff_training.trainer.train`.
    Under ``torchrun`` only rank 0 scores and registers. The loss continues the parent's
    recipe: its soft-Dice weight unless ``options.mask_loss_weight`` is given.

    A correction exported from a box- or point-prompted run records its boxes; it trains
    as one crop per box, cut by the parent's crop rule as a prompt is (the held-out ones
    are scored on those crops too); corrections without prompts are used whole and, with
    ``options.object_crops`` (the default), also cut around each of their objects by the
    parent's crop rule (:mod:`~medsegdiff_training.finetune_data`).

    The child adapts to the corrections (:func:`plan_finetune`): RGB corrections give a
    grey parent an RGB child, label values the parent lacks give it more classes, by
    weight surgery that starts the child where the parent was
    (:mod:`~medsegdiff_training.surgery`); ``options.channels`` / ``num_classes`` force a
    choice. The scores before and after are then the starting (surgered) network's and
    the child's, on the same held-out corrections read as the child reads them.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
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
    before = _score_held_out(job, job.model)
    barrier()
    metadata = _metadata(job, parent, store, options, before)
    if is_cancelled(cancel):
        return FinetuneResult(None, True, 0, before, None, run_dir, job.adaptation, parent)
    return _train_and_register(job, registry, options, run_dir, metadata, before, progress, cancel)


def _train_and_register(
    job: _Job,
    registry: ModelRegistry,
    options: FinetuneOptions,
    run_dir: Path,
    metadata: dict[str, Any],
    before: float | None,
    progress: Callable[[TrainProgress], None] | None,
    cancel: CancelToken,
) -> FinetuneResult:
    """Train the prepared job, score the weights it kept and register them (nothing when
    cancelled: the run folder keeps the resumable state)."""
    parent = metadata["parent_version"]
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
            None, result.cancelled, result.step, before, None, run_dir, job.adaptation, parent,
            history=result.history,
        )  # fmt: skip
    validated = bool(result.history) and job.validation_data is not None
    after = _score_held_out(job, load_checkpoint(result.final_checkpoint).model) if validated else None
    version = _register(registry, result.final_checkpoint, job, options, metadata, (before, after), result)
    shutil.rmtree(run_dir / "state", ignore_errors=True)  # registered: the resumable state is spent
    return FinetuneResult(
        version, False, result.step, before, after, run_dir, job.adaptation, parent,
        result.best_step if validated else None, result.stopped_early, result.history,
    )  # fmt: skip
