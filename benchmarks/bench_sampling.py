"""Sampling speed of a model on one 256x256 image: per step and per mask, ensembles 1 and 5.

    python benchmarks/bench_sampling.py [--model default] [--device auto] [--threads 2]
    python benchmarks/bench_sampling.py --plans ddim:3 --ensembles 1    # a shorter run
    python benchmarks/bench_sampling.py --dry      # tiny sizes on the CPU (checks the script)

Times DDPM with the paper's 100 steps and the fast samplers at their recommended step
counts, each with ensemble 1 and 5 (one batch), through ``Segmenter.steps`` as the napari
widget runs them (preprocessing and resizing back included), median of ``--repeats``; in
float32 and, where the device computes bfloat16 natively, under bf16 autocast; on CUDA each
with and without CUDA graphs. ``first_run_s`` is a fresh Segmenter's first mask (graph
capture included), what the widget's first press costs.
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

from medsegdiff_training.checkpoint import Checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.device import has_fast_bfloat16, resolve_device
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.samplers import RECOMMENDED_STEPS, run_to_end


def test_image(size: int = 256) -> np.ndarray:
    """A 256x256 ultrasound-like picture: speckle over a darker ellipse."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    ellipse = ((yy - size / 2) / (size / 3)) ** 2 + ((xx - size / 2) / (size / 4)) ** 2 < 1
    return (rng.gamma(2.0, 40.0, (size, size)) * np.where(ellipse, 0.6, 1.0)).clip(0, 255).astype(np.uint8)


def variants(device: torch.device) -> list[tuple[str, bool]]:
    """(precision, CUDA graphs) pairs worth timing on ``device``."""
    precisions = ["bf16", "fp32"] if has_fast_bfloat16(device) else ["fp32"]
    graphs = [True, False] if device.type == "cuda" else [False]
    return [(precision, graph) for graph in graphs for precision in precisions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plans", nargs="*", default=None, help="sampler:steps, e.g. ddim:3 ddpm:100")
    parser.add_argument("--ensembles", nargs="*", type=int, default=[1, 5])
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU: checks the script")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dry:
        args.device, args.plans, args.ensembles, args.repeats = "cpu", ["ddim:2"], [1, 2], 1
        tiny = MedSegDiffUNet(named_config("tiny"))
        checkpoint = Checkpoint(tiny, tiny.config, DiffusionConfig(), PreprocessConfig())
    else:
        checkpoint = ModelRegistry().load(args.model)
    device = resolve_device(args.device)
    image = test_image()
    runs = []
    plans = [("ddpm", 100), ("ddim", RECOMMENDED_STEPS["ddim"]), ("dpm++", RECOMMENDED_STEPS["dpm++"])]
    if args.plans:
        plans = [(plan.split(":")[0], int(plan.split(":")[1])) for plan in args.plans]
    for (precision, graphs), (sampler, steps), ensemble in itertools.product(
        variants(device), plans, args.ensembles
    ):
        segmenter = Segmenter(checkpoint, device=device, precision=precision, cuda_graphs=graphs)
        settings = SamplingSettings(sampler=sampler, steps=steps, ensemble=ensemble, seed=0)
        started = time.perf_counter()
        run_to_end(segmenter.steps(image, settings))
        first_run = time.perf_counter() - started
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
        label = "bf16 autocast" if precision == "bf16" else "float32"
        runs.append(
            {
                "sampler": sampler,
                "steps": steps,
                "ensemble": ensemble,
                "precision": label + (", CUDA graphs" if graphs else ""),
                "cuda_graphs": graphs,
                "seconds_per_mask": per_mask,
                "seconds_per_step": per_mask / steps,
                "first_run_s": first_run,
                "peak_memory_mib": round(peak, 1),
                "all_seconds": seconds,
            }
        )
        print(
            f"{sampler:6s} {steps:3d} steps, ensemble {ensemble}, {runs[-1]['precision']}: "
            f"{per_mask:.3f} s/mask, {per_mask / steps * 1000:.1f} ms/step (first run {first_run:.2f} s), "
            f"peak +{peak:.0f} MiB",
            flush=True,
        )
    write_result(
        f"sampling_{device.type}{'_dry' if args.dry else ''}",
        {
            "environment": environment(device),
            "model": "tiny (random weights, dry run)" if args.dry else args.model,
            "model_input_size": list(checkpoint.model_config.image_size),
            "image_size": [256, 256],
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
