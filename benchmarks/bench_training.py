"""Training throughput (images per second) of our configurations on this machine.

    python benchmarks/bench_training.py [--device auto] [--threads 2] [--configs cpu S B]
    python benchmarks/bench_training.py --device cuda --configs B --batch 32 --channels-last both --trainer
    python benchmarks/bench_training.py --dry          # tiny sizes on the CPU (checks the script)

One step = ε-prediction loss, backward, gradient clipping, an AdamW step (fused on CUDA,
as the trainer runs it) and the EMA update, on random images and masks at each
configuration's own input size (the paper's S/B/L at 256x256). Median over ``--repeats``
steps after warm-up steps; in float32 (TF32 on CUDA) and, where the device computes
bfloat16 natively (CUDA; CPUs with AMX or AVX512-BF16), under bf16 autocast; with
``--channels-last both`` also in NHWC memory format. ``--trainer`` also times the real
:func:`~medsegdiff_training.trainer.train` loop (data loader, workers and pinned memory
on CUDA, per-step loss read-back) on an in-memory data set, at the default precision.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import numpy as np
import torch
from _common import environment, timed, write_result

from medsegdiff_training.config import DiffusionConfig, named_config
from medsegdiff_training.data import SegmentationDataset
from medsegdiff_training.device import resolve_device
from medsegdiff_training.model import MedSegDiffUNet, count_parameters
from medsegdiff_training.precision import autocast, enable_tf32, precision_label, resolve_precision
from medsegdiff_training.schedule import NoiseSchedule, diffusion_loss
from medsegdiff_training.trainer import TrainConfig, _update_ema, make_optimizer, train


def throughput(
    name: str, batch: int, device: torch.device, repeats: int, precision: str, channels_last: bool
) -> dict:
    config = named_config(name)
    model = MedSegDiffUNet(config).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = make_optimizer(model, TrainConfig(), device)
    schedule = NoiseSchedule(DiffusionConfig())
    images = torch.randn(batch, config.image_channels, *config.image_size, device=device)
    x0 = (torch.rand(batch, config.mask_channels, *config.image_size, device=device) > 0.5).float() * 2 - 1
    images, x0 = images.contiguous(memory_format=memory_format), x0.contiguous(memory_format=memory_format)

    def step() -> None:
        with autocast(device, precision):
            loss = diffusion_loss(model, schedule, images, x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        _update_ema(ema, model, 0.999)
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timing = timed(step, repeats, warmup=2 if device.type == "cuda" else 1)
    return {
        "config": name,
        "parameters": count_parameters(model),
        "input_size": list(config.image_size),
        "batch": batch,
        "precision": precision_label(precision),
        "channels_last": channels_last,
        "images_per_s": batch / timing["median_s"],
        "peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        **timing,
    }


def trainer_throughput(name: str, batch: int, device: torch.device, steps: int) -> dict:
    """Images/s of the real training loop, from its progress reports after a warm-up."""
    config = named_config(name)
    rng = np.random.default_rng(0)
    size = config.image_size
    images = [rng.random(size).astype(np.float32) for _ in range(2 * batch)]
    masks = [(rng.random(size) > 0.5).astype(np.uint8) for _ in range(2 * batch)]
    data = SegmentationDataset.from_arrays(images, masks, config)
    marks: list[tuple[int, float]] = []
    train_config = TrainConfig(
        steps=steps, batch_size=batch, validate_every=10**9, checkpoint_every=10**9, device=str(device)
    )
    with tempfile.TemporaryDirectory() as folder:
        train(
            config,
            data,
            folder,
            config=train_config,
            progress=lambda p: marks.append((p.step, time.perf_counter())),
            resume=False,
        )
    warm = min(5, steps // 2)
    (first_step, first_time), (last_step, last_time) = marks[warm - 1], marks[-1]
    precision = resolve_precision(device, "auto", "training")
    return {
        "config": name,
        "batch": batch,
        "precision": precision_label(precision),
        "loop": "trainer.train (data loader, augmentation, EMA, loss read-back)",
        "steps_timed": last_step - first_step,
        "images_per_s": (last_step - first_step) * batch / (last_time - first_time),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--configs", nargs="*", default=["cpu", "S", "B"])
    parser.add_argument("--batch", type=int, nargs="*", default=[8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels-last", choices=("no", "yes", "both"), default="no")
    parser.add_argument("--trainer", action="store_true", help="also time the real training loop")
    parser.add_argument("--trainer-steps", type=int, default=30)
    parser.add_argument("--time-cap", type=float, default=None, help="seconds; skip what is left after")
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU: checks the script")
    args = parser.parse_args()
    if args.dry:
        args.device, args.configs, args.batch, args.repeats, args.trainer_steps = "cpu", ["tiny"], [2], 1, 4
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    enable_tf32(device)
    started = time.monotonic()
    results: list[dict] = []
    payload: dict = {"environment": environment(device), "dry": args.dry, "runs": results}
    name = f"training_{device.type}{'_dry' if args.dry else ''}"
    precisions = ["fp32", "bf16"] if resolve_precision(device, "bf16") == "bf16" else ["fp32"]
    layouts = {"no": [False], "yes": [True], "both": [False, True]}[args.channels_last]

    def over_time() -> bool:
        return args.time_cap is not None and time.monotonic() - started > args.time_cap

    for config_name in args.configs:
        small = config_name in ("cpu", "tiny") or device.type == "cuda"
        for batch in args.batch if small else [2]:
            for channels_last in layouts:
                for precision in precisions:
                    if over_time():
                        print(f"time cap reached: skipping {config_name} {batch} {precision}", flush=True)
                        continue
                    repeats = args.repeats if small else 2
                    result = throughput(config_name, batch, device, repeats, precision, channels_last)
                    results.append(result)
                    print(
                        f"{config_name} ({result['precision']}{', channels_last' if channels_last else ''}): "
                        f"{result['parameters'] / 1e6:.1f}M params, batch {batch}: "
                        f"{result['images_per_s']:.2f} images/s",
                        flush=True,
                    )
                    write_result(name, payload)
        if args.trainer and not over_time():
            loop = trainer_throughput(config_name, max(args.batch), device, args.trainer_steps)
            payload.setdefault("trainer", []).append(loop)
            print(f"{config_name} trainer loop, batch {loop['batch']}: {loop['images_per_s']:.2f} images/s")
            write_result(name, payload)
    write_result(name, payload)


if __name__ == "__main__":
    main()
