"""The training loop: AdamW, EMA, clipping, mixed precision, validation, resume, DDP.

One entry point, :func:`train`, serves the CLI, the napari menu action (through
fine-tuning) and ``torchrun``. Progress goes to a callback and a cancel token stops the
run cleanly; nothing here prints or knows about a GUI.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import save_checkpoint
from .config import DiffusionConfig, ModelConfig, PreprocessConfig
from .data.augment import AugmentConfig, augment_batch
from .data.dataset import SegmentationDataset
from .device import resolve_device
from .errors import Cancelled, ConfigError, DatasetError
from .inference import SamplingSettings, model_space_to_probabilities
from .metrics import dice
from .model import MedSegDiffUNet
from .samplers import run_to_end, sample
from .schedule import NoiseSchedule, diffusion_loss, mask_to_model_space
from .training_state import has_training_state, load_training_state, save_training_state

CancelToken = Callable[[], bool] | threading.Event | None


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Give a budget in ``steps``, in ``minutes``, or both (first reached wins)."""

    steps: int | None = 1000
    minutes: float | None = None
    batch_size: int = 8
    learning_rate: float = 1e-4  # the paper's
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    amp: bool = True  # bf16 autocast on CUDA only
    seed: int = 0
    validate_every: int = 500
    validation_images: int = 32
    validation_sampling: SamplingSettings = SamplingSettings(sampler="ddim", steps=10, seed=0)
    checkpoint_every: int = 500
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ConfigError("Give a training budget: steps, minutes or both.")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1.")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["validation_sampling"] = self.validation_sampling.to_dict()
        return values


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


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    run_dir: Path
    step: int
    cancelled: bool
    final_checkpoint: Path | None
    history: list[dict[str, Any]]
    best_validation_dice: float | None


def is_cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _Batches:
    """Endless shuffled batches; under DDP each rank gets its own share of every epoch."""

    def __init__(self, dataset: SegmentationDataset, batch_size: int, seed: int) -> None:
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.epoch, self.position, self.order = 0, 0, self._order(0)

    def _order(self, epoch: int) -> list[int]:
        sampler = torch.utils.data.DistributedSampler(
            self.dataset, num_replicas=_world(), rank=_rank(), shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        indices = []
        while len(indices) < self.batch_size:
            if self.position >= len(self.order):
                self.epoch, self.position = self.epoch + 1, 0
                self.order = self._order(self.epoch)
            indices.append(self.order[self.position])
            self.position += 1
        images, labels = zip(*(self.dataset[i] for i in indices))
        return torch.stack(images), torch.stack(labels)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.order = self._order(self.epoch)


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_p, p in zip(ema.parameters(), model.parameters()):
        ema_p.mul_(decay).add_(p.detach(), alpha=1 - decay)
    for ema_b, b in zip(ema.buffers(), model.buffers()):
        ema_b.copy_(b)


def validation_dice(
    model: MedSegDiffUNet,
    schedule: NoiseSchedule,
    dataset: SegmentationDataset,
    settings: SamplingSettings,
    device: torch.device,
    limit: int | None = None,
    batch_size: int = 16,
) -> float:
    """Mean foreground Dice of ``model`` on (up to ``limit``) samples, at the model's size."""
    model.eval()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    scores = []
    num_classes = model.config.num_classes
    for start in range(0, count, batch_size):
        images, labels = zip(*(dataset[i] for i in range(start, min(start + batch_size, count))))
        image_batch = torch.stack(images).to(device)
        with torch.inference_mode():
            condition = model.encode_condition(image_batch)
        generator = torch.Generator(device=device).manual_seed(settings.seed or 0)
        steps = sample(
            lambda x, t: model(x, t, condition=condition),
            schedule,
            (image_batch.shape[0], model.config.mask_channels, *model.config.image_size),
            sampler=settings.sampler,
            steps=settings.resolved_steps(),
            generator=generator,
            device=device,
        )
        with torch.inference_mode():
            probabilities = model_space_to_probabilities(run_to_end(steps)).cpu()
        for probability, truth in zip(probabilities, labels):
            if num_classes == 2:
                scores.append(dice(probability[0].numpy() > 0.5, truth.numpy() > 0))
            else:
                predicted = probability.argmax(0).numpy()
                scores.append(np.mean([dice(predicted == k, truth.numpy() == k) for k in range(1, num_classes)]))
    return float(np.mean(scores)) if scores else float("nan")


def train(
    model_or_config: MedSegDiffUNet | ModelConfig,
    train_data: SegmentationDataset,
    run_dir: str | Path,
    *,
    config: TrainConfig = TrainConfig(),
    validation_data: SegmentationDataset | None = None,
    diffusion: DiffusionConfig = DiffusionConfig(),
    preprocess: PreprocessConfig = PreprocessConfig(),
    metadata: dict[str, Any] | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    cancel: CancelToken = None,
    resume: bool = True,
) -> TrainResult:
    """Train (or continue training) a MedSegDiff model; see :class:`TrainConfig`.

    The run folder gets ``state/`` (resumable, every ``checkpoint_every`` steps and on
    cancel), ``log.jsonl`` (one line per validation) and, when the budget is reached,
    ``final/`` (a checkpoint of the EMA weights). With ``resume`` a run folder that has a
    state continues where it stopped. Under ``torchrun`` only rank 0 writes.

    Examples
    --------
    >>> import tempfile
    >>> from medsegdiff_training.config import named_config
    >>> data = SegmentationDataset.from_arrays([np.random.rand(32, 32)] * 2, [np.eye(32)] * 2, named_config("tiny"))
    >>> result = train(named_config("tiny"), data, tempfile.mkdtemp(), config=TrainConfig(steps=2, batch_size=2))
    >>> result.step, result.final_checkpoint.name
    (2, 'final')
    """
    run_dir = Path(run_dir)
    if len(train_data) == 0:
        raise DatasetError("There is no training data.")
    device = resolve_device(config.device)
    rank, world = _rank(), _world()
    torch.manual_seed(config.seed + rank)
    model = model_or_config if isinstance(model_or_config, MedSegDiffUNet) else MedSegDiffUNet(model_or_config)
    model = model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank)
    schedule = NoiseSchedule(diffusion)
    batches = _Batches(train_data, config.batch_size, config.seed)
    step, elapsed_before, history = 0, 0.0, []
    best: float | None = None
    if resume and has_training_state(run_dir):
        info = load_training_state(run_dir, model, ema, optimizer, generator)
        step, elapsed_before = int(info["step"]), float(info["elapsed_s"])
        history, best = info.get("history", []), info.get("best_validation_dice")
        batches.restore(info["batches"])
    network: torch.nn.Module = DistributedDataParallel(model) if world > 1 else model
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if config.amp and device.type == "cuda"
        else contextlib.nullcontext()
    )
    started = time.monotonic()
    last_validation: float | None = history[-1]["validation_dice"] if history else None

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    def budget_left() -> bool:
        if config.steps is not None and step >= config.steps:
            return False
        return config.minutes is None or elapsed() < config.minutes * 60

    def save_state() -> None:
        if rank == 0:
            save_training_state(
                run_dir, model, ema, optimizer, generator,
                {"step": step, "elapsed_s": elapsed(), "history": history,
                 "best_validation_dice": best, "batches": batches.state(), "train_config": config.to_dict()},
            )
        if world > 1:
            dist.barrier()

    cancelled = False
    while budget_left():
        if is_cancelled(cancel):
            cancelled = True
            break
        images, labels = batches.next()
        images, labels = images.to(device), labels.to(device)
        x0 = mask_to_model_space(labels, model.config.num_classes)
        if config.augment is not None:
            images, x0 = augment_batch(images, x0, config.augment, generator=None)
        with autocast:
            loss = diffusion_loss(network, schedule, images, x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        # EMA warm-up: short fine-tunes must not be dominated by the starting weights
        _update_ema(ema, model, min(config.ema_decay, (1 + step) / (10 + step)))
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"The training loss became {loss_value} at step {step}; lower the learning rate.")
        if validation_data is not None and len(validation_data) and step % config.validate_every == 0:
            if rank == 0:
                last_validation = validation_dice(
                    ema, schedule, validation_data, config.validation_sampling, device, config.validation_images
                )
                best = last_validation if best is None else max(best, last_validation)
            history.append({"step": step, "loss": loss_value, "validation_dice": last_validation, "elapsed_s": elapsed()})
            if rank == 0:
                run_dir.mkdir(parents=True, exist_ok=True)
                with (run_dir / "log.jsonl").open("a") as log:
                    log.write(json.dumps(history[-1]) + "\n")
        if step % config.checkpoint_every == 0:
            save_state()
        if progress is not None and rank == 0:
            spent = elapsed()
            remaining = []
            if config.steps is not None:
                remaining.append(spent / step * (config.steps - step))
            if config.minutes is not None:
                remaining.append(max(config.minutes * 60 - spent, 0.0))
            progress(
                TrainProgress(
                    step, config.steps, loss_value, last_validation, spent,
                    min(remaining) if remaining else None,
                    step * config.batch_size * world / max(spent, 1e-9),
                )
            )
    save_state()
    final = None
    if not cancelled and rank == 0:
        document = dict(metadata or {})
        document.setdefault("training", {})
        document["training"].update(
            {"steps": step, "wall_time_s": round(elapsed(), 1), "world_size": world,
             "device": str(device), "data_digest": train_data.digest(), "images": len(train_data),
             "config": config.to_dict()}
        )
        if best is not None:
            document.setdefault("metrics", {})["validation_dice"] = last_validation
        final = save_checkpoint(run_dir / "final", ema, diffusion, preprocess, overwrite=True, **document)
    if world > 1:
        dist.barrier()
    return TrainResult(run_dir, step, cancelled, final, history, best)


def raise_if_cancelled(result: TrainResult) -> TrainResult:
    """Turn a cancelled result into :class:`Cancelled` for callers that prefer exceptions."""
    if result.cancelled:
        raise Cancelled(f"Training was cancelled at step {result.step}; its state is in {result.run_dir}.")
    return result
