"""Training throughput (images per second) of our configurations on this machine.

    python benchmarks/bench_training.py [--device auto] [--threads 2] [--configs cpu S B]

One step = ε-prediction loss, backward, gradient clipping and an AdamW step, on random
images and masks at each configuration's own input size (the paper's S/B/L at 256x256).
Median over ``--repeats`` steps after a warm-up step; in float32 and, where the device
computes bfloat16 natively (CUDA; CPUs with AMX or AVX512-BF16), under bf16 autocast as the
trainer runs by default.
"""

from __future__ import annotations

import argparse

import torch
from _common import environment, timed, write_result

from medsegdiff_training.config import DiffusionConfig, named_config
from medsegdiff_training.device import has_fast_bfloat16, mixed_precision, resolve_device
from medsegdiff_training.model import MedSegDiffUNet, count_parameters
from medsegdiff_training.schedule import NoiseSchedule, diffusion_loss


def throughput(name: str, batch: int, device: torch.device, repeats: int, amp: bool) -> dict:
    config = named_config(name)
    model = MedSegDiffUNet(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    schedule = NoiseSchedule(DiffusionConfig())
    images = torch.randn(batch, config.image_channels, *config.image_size, device=device)
    x0 = (torch.rand(batch, config.mask_channels, *config.image_size, device=device) > 0.5).float() * 2 - 1
    autocast = mixed_precision(device, amp)

    def step() -> None:
        with autocast:
            loss = diffusion_loss(model, schedule, images, x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    timing = timed(step, repeats)
    return {
        "config": name,
        "parameters": count_parameters(model),
        "input_size": list(config.image_size),
        "batch": batch,
        "precision": "bf16 autocast" if amp else "float32",
        "images_per_s": batch / timing["median_s"],
        **timing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--configs", nargs="*", default=["cpu", "S", "B"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    results = []
    precisions = [False, True] if has_fast_bfloat16(device) else [False]
    for name in args.configs:
        small = name == "cpu" or device.type == "cuda"
        batch = args.batch if small else 2
        for amp in precisions:
            result = throughput(name, batch, device, args.repeats if small else 2, amp)
            results.append(result)
            print(
                f"{name} ({result['precision']}): {result['parameters'] / 1e6:.1f}M params, batch {batch}: "
                f"{result['images_per_s']:.2f} images/s",
                flush=True,
            )
    write_result(f"training_{device.type}", {"environment": environment(device), "runs": results})


if __name__ == "__main__":
    main()
