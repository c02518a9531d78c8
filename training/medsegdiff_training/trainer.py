"""The training loop: AdamW, EMA, clipping, mixed precision, validation, resume, DDP.

One entry point, :func:`train`, serves the CLI, the napari menu action (through
fine-tuning) and ``torchrun``. Progress goes to a callback and a cancel token stops the
run cleanly; nothing here prints or knows about a GUI.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import Checkpoint, save_checkpoint
from .config import DiffusionConfig, ModelConfig, PreprocessConfig
from .data.augment import augment_batch
from .data.dataset import SegmentationDataset
from .device import resolve_device
from .distributed import barrier, gather_objects, max_over_ranks, process_rank, world_size
from .errors import Cancelled, ConfigError, DatasetError
from .fast_paths import compiled, resolve_fast_paths, to_memory_format
from .inference import SamplingSettings, Segmenter
from .metrics import mean_dice
from .model import MedSegDiffUNet
from .precision import autocast, enable_tf32, precision_label, resolve_precision
from .samplers import run_to_end
from .schedule import NoiseSchedule, diffusion_loss, mask_to_model_space
from .threads import thread_record
from .train_config import TrainConfig
from .training_batches import Batches
from .training_state import (
    has_training_state,
    load_best_weights,
    load_training_state,
    save_training_state,
)

CancelToken = Callable[[], bool] | threading.Event | None
LOG_FILE = "log.jsonl"
FINAL_DIR = "final"


@dataclass(frozen=True)
class TrainProgress:
    """What a progress callback receives after every step."""

    step: int
    total_steps: int | None
    loss: float
    validation_dice: float | None
    elapsed_s: float
    remaining_s: float | None
    images_per_s: float
    validation_step: int | None = None  # the step ``validation_dice`` was measured at
    best_validation_dice: float | None = None
    best_step: int | None = None


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    ``final_validation_dice`` is the validation Dice of the weights ``final/`` holds: the
    best validation's with ``keep_best``, else the last one's.
    """

    run_dir: Path
    step: int
    cancelled: bool
    final_checkpoint: Path | None
    history: list[dict[str, Any]]
    best_validation_dice: float | None
    best_step: int | None = None
    stopped_early: bool = False  # ended by ``patience``, before its budget
    final_validation_dice: float | None = None


def is_cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, in a few multi-tensor kernels (not 2 per tensor)."""

    def real(tensors):  # complex filters as (..., 2) real views: one dtype family for the kernels
        return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]

    ema_params, params = real(ema.parameters()), real(p.detach() for p in model.parameters())
    torch._foreach_mul_(ema_params, decay)
    torch._foreach_add_(ema_params, params, alpha=1 - decay)
    for ema_b, b in zip(ema.buffers(), model.buffers(), strict=True):
        ema_b.copy_(b)


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over ``model``: the fused CUDA kernel for real weights on CUDA.

    The fused kernel takes no complex tensors, so the FF-Parser's filters form a second
    group with the multi-tensor implementation (two groups on every device, so a state
    saved on one device resumes on another).
    """
    real = [p for p in model.parameters() if p.requires_grad and not p.is_complex()]
    complex_ = [p for p in model.parameters() if p.requires_grad and p.is_complex()]
    fused = device.type == "cuda"
    groups: list[dict[str, Any]] = [{"params": real, "fused": fused}]
    if complex_:
        groups.append({"params": complex_, "fused": False})
    return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)


def validation_dice(
    model: MedSegDiffUNet,
    schedule: NoiseSchedule,
    dataset: SegmentationDataset,
    settings: SamplingSettings,
    device: torch.device,
    limit: int | None = None,
    batch_size: int = 16,
) -> float:
    """Mean foreground Dice of ``model`` on (up to ``limit``) samples, at the model's size.

    It samples through the :class:`~medsegdiff_training.inference.Segmenter` (float32, the
    seed 0 when ``settings`` has none) and scores with :func:`~.metrics.mean_dice`.
    """
    model.eval()
    in_memory = Checkpoint(model, model.config, schedule.config, PreprocessConfig())
    segmenter = Segmenter(in_memory, device=device, amp=False)
    settings = dataclasses.replace(settings, seed=settings.seed or 0)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    scores = []
    for start in range(0, count, batch_size):
        images, labels = zip(*(dataset[i] for i in range(start, min(start + batch_size, count))), strict=True)
        final = run_to_end(segmenter.denoise(torch.stack(images).to(segmenter.device), settings))
        for result, truth in zip(segmenter.summarise(final, settings), labels, strict=True):
            scores.append(mean_dice(result.labels, truth.numpy(), model.config.num_classes))
    return float(np.mean(scores)) if scores else float("nan")


def beats_best(score: float, best: float | None, margin: float = 0.0) -> bool:
    """Whether a validation ``score`` is a new best: finite, and above ``best`` by more than
    ``margin`` (``TrainConfig.best_margin``); the first finite score always is.

    >>> beats_best(0.905, 0.902, margin=0.005), beats_best(0.91, 0.902, margin=0.005)
    (False, True)
    """
    return math.isfinite(score) and (best is None or not score <= best + margin)


def step_of_best(history: list[dict[str, Any]], best: float | None) -> int | None:
    """The step whose logged validation Dice is ``best``: for a state saved before the best
    step was recorded (it kept only the score), so that a resumed run can still say it."""
    if best is None:
        return None
    return next((entry["step"] for entry in history if entry.get("validation_dice") == best), None)


def _weights_digest(*modules: torch.nn.Module) -> str:
    """SHA-256 over the state of ``modules``: equal on every rank when DDP kept them in step."""
    hasher = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            hasher.update(name.encode())
            hasher.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


class _Run:
    """One run's moving parts: network, EMA, optimiser, data order, clock and history."""

    def __init__(
        self,
        model_or_config: MedSegDiffUNet | ModelConfig,
        train_data: SegmentationDataset,
        run_dir: Path,
        config: TrainConfig,
        validation_data: SegmentationDataset | None,
        diffusion: DiffusionConfig,
        resume: bool,
    ) -> None:
        self.run_dir, self.config, self.train_data = run_dir, config, train_data
        self.validation_data = (
            validation_data if validation_data is not None and len(validation_data) else None
        )
        self.device = resolve_device(config.device)
        self.rank, self.world = process_rank(), world_size()
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        model = (
            model_or_config
            if isinstance(model_or_config, MedSegDiffUNet)
            else MedSegDiffUNet(model_or_config)
        )
        requested = config.precision if config.amp else "fp32"
        self.precision = resolve_precision(self.device, requested, "training")
        self.fast = resolve_fast_paths(self.device, config.channels_last, False, config.compile)
        enable_tf32(self.device)
        self.model = model.to(self.device).train()
        if self.fast.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = make_optimizer(self.model, config, self.device)
        self.generator = torch.Generator().manual_seed(config.seed * 1000 + self.rank)
        self.schedule = NoiseSchedule(diffusion)
        cuda = self.device.type == "cuda"
        workers = config.num_workers if config.num_workers is not None else (4 if cuda else 0)
        self.batches = Batches(train_data, config.batch_size, config.seed, workers, pin_memory=cuda)
        self.step, self.elapsed_before = 0, 0.0
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None  # keep_best: the EMA at best_step
        self.stop_early = False
        torch.manual_seed(config.seed + self.rank)  # but different noise on each rank
        if resume and has_training_state(run_dir):
            info = load_training_state(run_dir, self.model, self.ema, self.optimizer, self.generator)
            self.step, self.elapsed_before = int(info["step"]), float(info["elapsed_s"])
            self.history, self.best = info.get("history", []), info.get("best_validation_dice")
            self.best_step = info.get("best_step", step_of_best(self.history, self.best))
            self.best_weights = load_best_weights(run_dir) if config.keep_best else None
            self.batches.restore(info["batches"])
            if self.world > 1:  # the saved RNG state is rank 0's: give each rank its own again
                torch.manual_seed(config.seed + self.rank + 7919 * self.step)
            if self.rank == 0:  # the log must match the state resumed from, no line twice
                self._rewrite_log()
        self.network: torch.nn.Module = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.network = compiled(self.network, self.fast)
        self.autocast = autocast(self.device, self.precision)
        self.clock = time.process_time if config.clock == "cpu" else time.monotonic
        self.started = self.clock()
        self.checked_at: float | None = None  # elapsed() at the last budget check
        self.last_validation: float | None = self.history[-1]["validation_dice"] if self.history else None

    def elapsed(self) -> float:
        return self.elapsed_before + self.clock() - self.started

    def budget_spent(self) -> bool:
        """Whether to stop before the next step; called once per step.

        A minutes budget also ends when one more step at the last step's pace (training,
        validation and saving between two calls) would finish past it, so a run keeps
        within its minutes rather than overrunning them by a step.
        """
        if self.config.steps is not None and self.step >= self.config.steps:
            return True
        if self.config.minutes is None:
            return False
        now = self.elapsed()
        pace = now - self.checked_at if self.checked_at is not None else 0.0
        self.checked_at = now
        return now + pace > self.config.minutes * 60 or now >= self.config.minutes * 60

    def remaining_s(self) -> float | None:
        spent, estimates = self.elapsed(), []
        if self.config.steps is not None and self.step:
            estimates.append(spent / self.step * (self.config.steps - self.step))
        if self.config.minutes is not None:
            estimates.append(max(self.config.minutes * 60 - spent, 0.0))
        return min(estimates) if estimates else None

    def budget_fraction(self) -> float:
        """How much of the budget is spent, 0 to 1 (the larger of steps and minutes)."""
        fractions = [0.0]
        if self.config.steps is not None:
            fractions.append(self.step / max(self.config.steps, 1))
        if self.config.minutes is not None:
            fractions.append(self.elapsed() / max(self.config.minutes * 60, 1e-9))
        return min(1.0, max(fractions))

    def learning_rate(self) -> float:
        warm = min(1.0, (self.step + 1) / self.config.warmup_steps) if self.config.warmup_steps else 1.0
        if self.config.lr_schedule == "constant":
            return self.config.learning_rate * warm
        return self.config.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * self.budget_fraction()))

    def train_step(self) -> float:
        if self.config.lr_schedule != "constant" or self.config.warmup_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate()
        images, labels = self.batches.next()
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        x0 = mask_to_model_space(labels, self.model.config.num_classes)
        if self.config.augment is not None:
            images, x0 = augment_batch(
                images,
                x0,
                self.config.augment,
                generator=None,
                prompt_channels=self.model.config.prompt_channels,
            )
        images, x0 = to_memory_format(images, self.fast), to_memory_format(x0, self.fast)
        with self.autocast:
            loss = diffusion_loss(
                self.network,
                self.schedule,
                images,
                x0,
                mask_loss_weight=self.config.mask_loss_weight,
                timestep_floor=self.config.timestep_floor,
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        # EMA warm-up: short fine-tunes must not be dominated by the starting weights
        _update_ema(self.ema, self.model, min(self.config.ema_decay, (1 + self.step) / (10 + self.step)))
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"The training loss became {loss_value} at step {self.step}; lower the learning rate."
            )
        return loss_value

    def validate(self, loss_value: float | None) -> None:
        """Score the EMA weights on the validation data (rank 0), keep the best, log it.

        A Dice above the best so far by more than ``best_margin`` is a new best (its EMA
        weights kept with ``keep_best``); ``patience`` steps past the best, the run is marked
        to stop.
        """
        assert self.validation_data is not None
        if self.rank == 0:
            score = validation_dice(
                self.ema,
                self.schedule,
                self.validation_data,
                self.config.validation_sampling,
                self.device,
                self.config.validation_images,
            )
            self.last_validation = score
            if beats_best(score, self.best, self.config.best_margin):
                self.best, self.best_step = score, self.step
                if self.config.keep_best:
                    self.best_weights = {
                        k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()
                    }
            patience = self.config.patience
            self.stop_early = bool(
                patience is not None and self.best_step is not None and self.step - self.best_step >= patience
            )
        self.history.append(
            {
                "step": self.step,
                "loss": loss_value,
                "validation_dice": self.last_validation,
                "best_validation_dice": self.best,
                "best_step": self.best_step,
                "elapsed_s": self.elapsed(),
            }
        )
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with (self.run_dir / LOG_FILE).open("a") as log:
                log.write(json.dumps(self.history[-1]) + "\n")
        barrier()

    def _rewrite_log(self) -> None:
        text = "".join(json.dumps(entry) + "\n" for entry in self.history)
        temporary = self.run_dir / f".{LOG_FILE}.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.run_dir / LOG_FILE)

    def save_state(self) -> None:
        if self.rank == 0:
            save_training_state(
                self.run_dir,
                self.model,
                self.ema,
                self.optimizer,
                self.generator,
                {
                    "step": self.step,
                    "elapsed_s": self.elapsed(),
                    "history": self.history,
                    "best_validation_dice": self.best,
                    "best_step": self.best_step,
                    "batches": self.batches.state(),
                    "train_config": self.config.to_dict(),
                },
                best=self.best_weights,
            )
        barrier()

    def progress(self, loss_value: float) -> TrainProgress:
        spent = self.elapsed()
        return TrainProgress(
            self.step,
            self.config.steps,
            loss_value,
            self.last_validation,
            spent,
            self.remaining_s(),
            self.step * self.config.batch_size * self.world / max(spent, 1e-9),
            self.history[-1]["step"] if self.history else None,
            self.best,
            self.best_step,
        )

    def final_weights(self) -> tuple[torch.nn.Module, float | None]:
        """The network final/ holds and its validation Dice: the best validation's EMA
        weights with ``keep_best`` (when there was one), else the last EMA weights."""
        if self.config.keep_best and self.best_weights is not None:
            best = copy.deepcopy(self.ema)
            best.load_state_dict(self.best_weights)
            return best, self.best
        return self.ema, self.last_validation

    def finish(
        self, metadata: dict[str, Any] | None, preprocess: PreprocessConfig, diffusion: DiffusionConfig
    ) -> Path | None:
        """Write ``final/`` (EMA weights and everything said about them) from rank 0."""
        digests = gather_objects(_weights_digest(self.model, self.ema)) if self.world > 1 else None
        if self.rank != 0:
            barrier()
            return None
        document = dict(metadata or {})
        training = dict(document.get("training") or {})
        training.update(
            {
                "steps": self.step,
                "wall_time_s": round(self.elapsed(), 1),
                "world_size": self.world,
                "device": str(self.device),
                "precision": precision_label(self.precision),
                "threads": thread_record(torch.get_num_threads()),
                "data_digest": self.train_data.digest(),
                "images": len(self.train_data),
                "config": self.config.to_dict(),
            }
        )
        if digests is not None:
            training["rank_weight_digests"] = digests
        document["training"] = training
        weights, score = self.final_weights()
        if self.last_validation is not None:
            metrics = dict(document.get("metrics") or {})
            metrics["validation_dice"] = score  # of the weights saved
            metrics["best_validation_dice"] = self.best
            metrics["best_step"] = self.best_step
            metrics["last_validation_dice"] = self.last_validation
            document["metrics"] = metrics
            training["kept"] = "best" if weights is not self.ema else "last"
            training["stopped_early"] = self.stop_early
        final = save_checkpoint(
            self.run_dir / FINAL_DIR, weights, diffusion, preprocess, overwrite=True, **document
        )
        barrier()
        return final


def train(
    model_or_config: MedSegDiffUNet | ModelConfig,
    train_data: SegmentationDataset,
    run_dir: str | Path,
    *,
    config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen dataclasses, never mutated
    validation_data: SegmentationDataset | None = None,
    diffusion: DiffusionConfig = DiffusionConfig(),  # noqa: B008
    preprocess: PreprocessConfig = PreprocessConfig(),  # noqa: B008
    metadata: dict[str, Any] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: CancelToken = None,
    resume: bool = True,
) -> TrainResult:
    """Train (or continue training) a MedSegDiff model; see :class:`TrainConfig`.

    The run folder gets ``state/`` (resumable: every ``checkpoint_every`` steps, on
    cancel and at the end), ``log.jsonl`` (one line per validation) and, when the budget
    is spent, ``final/`` (a checkpoint of the EMA weights, validated once more at the end
    when there is validation data). With validation data, ``config.keep_best`` makes
    ``final/`` the EMA weights of the best validation rather than the last, and
    ``config.patience`` ends the run once that many steps have passed without a better
    one. With ``resume`` a run folder that has a state continues where it stopped, with
    nothing lost (the best weights so far too). ``progress`` gets a
    :class:`TrainProgress` after every step; ``cancel`` (a callable or an Event) stops
    the run before the next step, its state saved. Under ``torchrun`` every rank trains
    on its share of the data, ranks stop together and only rank 0 writes.

    Examples
    --------
    >>> import tempfile
    >>> from medsegdiff_training.config import named_config
    >>> tiny = named_config("tiny")
    >>> data = SegmentationDataset.from_arrays([np.random.rand(32, 32)] * 2, [np.eye(32)] * 2, tiny)
    >>> result = train(tiny, data, tempfile.mkdtemp(), config=TrainConfig(steps=2, batch_size=2))
    >>> result.step, result.final_checkpoint.name
    (2, 'final')
    """
    run_dir = Path(run_dir)
    if len(train_data) == 0:
        raise DatasetError("There is no training data.")
    run = _Run(model_or_config, train_data, run_dir, config, validation_data, diffusion, resume)
    cancelled, loss_value = False, None
    while True:
        # every rank must agree to stop at the same step, or DDP waits forever
        spent = run.budget_spent() or run.stop_early
        reason = max_over_ranks(2 if is_cancelled(cancel) else 1 if spent else 0, run.device)
        if reason:
            cancelled = reason == 2
            break
        loss_value = run.train_step()
        if run.validation_data is not None and run.step % config.validate_every == 0:
            run.validate(loss_value)
        if run.step % config.checkpoint_every == 0:
            run.save_state()
        if progress is not None and run.rank == 0:
            progress(run.progress(loss_value))
    if not cancelled and run.step == 0:
        run.batches.close()
        # an untrained copy must not pass for a trained (or fine-tuned) model
        raise ConfigError(
            "The time budget ended before the first training step; give more minutes (or steps). "
            "No model was saved."
        )
    validated_last = bool(run.history) and run.history[-1]["step"] == run.step
    if not cancelled and run.validation_data is not None and run.step and not validated_last:
        run.validate(loss_value)
        if progress is not None and run.rank == 0 and loss_value is not None:
            progress(run.progress(loss_value))
    run.batches.close()
    run.save_state()
    final = None if cancelled else run.finish(metadata, preprocess, diffusion)
    return TrainResult(
        run_dir, run.step, cancelled, final, run.history, run.best, run.best_step,
        run.stop_early, run.final_weights()[1],
    )  # fmt: skip


def raise_if_cancelled(result: TrainResult) -> TrainResult:
    """Turn a cancelled result into :class:`Cancelled` for callers that prefer exceptions."""
    if result.cancelled:
        raise Cancelled(f"Training was cancelled at step {result.step}; its state is in {result.run_dir}.")
    return result
