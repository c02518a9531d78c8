"""Sampling speed of a model on one 256x256 image: per step and per mask, ensembles 1 and 5.

    python benchmarks/bench_sampling.py [--model default] [--device auto] [--threads 2]

Times DDPM with the paper's 100 steps and the fast samplers at their recommended step
counts, each with ensemble 1 and 5 (one batch), through ``Segmenter.steps`` as the napari
widget runs them (preprocessing and resizing back included), median of ``--repeats``; in
float32 and, where the device computes bfloat16 natively, under bf16 autocast (the default).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch
from _common import environment, write_result
from _memory import peak_memory_mib

from medsegdiff_training.device import has_fast_bfloat16
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.samplers import RECOMMENDED_STEPS, run_to_end


def test_image(size: int = 256) -> np.ndarray:
    """A 256x256 ultrasound-like picture: speckle over a darker ellipse."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    ellipse = ((yy - size / 2) / (size / 3)) ** 2 + ((xx - size / 2) / (size / 4)) ** 2 < 1
    return (rng.gamma(2.0, 40.0, (size, size)) * np.where(ellipse, 0.6, 1.0)).clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = ModelRegistry().load(args.model)
    segmenter = Segmenter(checkpoint, device=args.device)
    image = test_image()
    runs = []
    plans = [("ddpm", 100), ("ddim", RECOMMENDED_STEPS["ddim"]), ("dpm++", RECOMMENDED_STEPS["dpm++"])]
    precisions = [True, False] if has_fast_bfloat16(segmenter.device) else [False]
    for amp, (sampler, steps), ensemble in itertools.product(precisions, plans, (1, 5)):
        segmenter = Segmenter(checkpoint, device=args.device, amp=amp)
        settings = SamplingSettings(sampler=sampler, steps=steps, ensemble=ensemble, seed=0)
        run_to_end(segmenter.steps(image, SamplingSettings(sampler=sampler, steps=2, ensemble=ensemble)))
        seconds = []
        peak = 0.0
        for _ in range(args.repeats):
            started = time.perf_counter()
            _, memory = peak_memory_mib(
                lambda s=segmenter, settings=settings: run_to_end(s.steps(image, settings)), segmenter.device
            )
            if segmenter.device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
            peak = max(peak, memory)
        per_mask = statistics.median(seconds)
        runs.append(
            {
                "sampler": sampler,
                "steps": steps,
                "ensemble": ensemble,
                "precision": "bf16 autocast" if amp else "float32",
                "seconds_per_mask": per_mask,
                "seconds_per_step": per_mask / steps,
                "peak_memory_mib": round(peak, 1),
                "all_seconds": seconds,
            }
        )
        print(
            f"{sampler:6s} {steps:3d} steps, ensemble {ensemble}, {'bf16' if amp else 'fp32'}: {per_mask:.2f} s/mask, "
            f"{per_mask / steps * 1000:.1f} ms/step, peak +{peak:.0f} MiB",
            flush=True,
        )
    write_result(
        f"sampling_{segmenter.device.type}",
        {
            "environment": environment(segmenter.device),
            "model": args.model,
            "model_input_size": list(segmenter.config.image_size),
            "image_size": [256, 256],
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
