"""Per-step sampling time of a paper configuration under each precision and fast path.

    python benchmarks/bench_fast_paths.py --device cuda [--configs B] [--batches 1 32]
    python benchmarks/bench_fast_paths.py --dry          # tiny sizes on the CPU (checks the script)

One denoising step = one network evaluation plus the DDIM update, timed through
``Segmenter.denoise`` (what the widget and the CLI run) over a 10-step DDIM run on a
random-weight network at the configuration's input size (the paper's B: 256x256),
divided by the steps; ``batch`` is the ensemble size (one batch). Each variant is a
precision (fp32 = float32 with TF32 on CUDA; bf16 = bfloat16 autocast with bf16 weights)
and a set of fast paths (eager, CUDA graphs, channels_last, torch.compile). The first run
of a fresh Segmenter (capture or compile included) is recorded as ``first_run_s``: it is
what the widget's first press costs; later runs replay. Median of ``--repeats``; results
are written after every variant, so a run stopped by its time cap keeps what it measured.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import environment, write_result

from medsegdiff_training.checkpoint import Checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.device import resolve_device
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet, count_parameters
from medsegdiff_training.samplers import run_to_end

# name: (precision, Segmenter fast-path options)
VARIANTS: dict[str, tuple[str, dict]] = {
    "fp32 eager": ("fp32", {"cuda_graphs": False}),
    "bf16 eager": ("bf16", {"cuda_graphs": False}),
    "fp32 graphs": ("fp32", {"cuda_graphs": True}),
    "bf16 graphs": ("bf16", {"cuda_graphs": True}),
    "fp32 channels_last eager": ("fp32", {"cuda_graphs": False, "channels_last": True}),
    "bf16 channels_last eager": ("bf16", {"cuda_graphs": False, "channels_last": True}),
    "bf16 channels_last graphs": ("bf16", {"cuda_graphs": True, "channels_last": True}),
    "fp32 channels_last graphs": ("fp32", {"cuda_graphs": True, "channels_last": True}),
    "bf16 compile+graphs": ("bf16", {"cuda_graphs": True, "compile": "default"}),
    "fp32 compile+graphs": ("fp32", {"cuda_graphs": True, "compile": "default"}),
}
DEFAULT_VARIANTS = [name for name in VARIANTS if "compile" not in name]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    checkpoint: Checkpoint, device: torch.device, variant: str, batch: int, steps: int, repeats: int
) -> dict:
    precision, options = VARIANTS[variant]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    segmenter = Segmenter(checkpoint, device=device, precision=precision, **options)
    size = checkpoint.model_config.image_size
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, checkpoint.model_config.image_channels, *size, generator=generator).to(device)
    settings = SamplingSettings(sampler="ddim", steps=steps, ensemble=batch, seed=0)

    def run() -> float:
        synchronize(device)
        started = time.perf_counter()
        final = run_to_end(segmenter.denoise(image, settings))
        synchronize(device)
        assert torch.isfinite(final).all(), f"{variant} produced non-finite masks"
        return time.perf_counter() - started

    first = run()  # capture / compile / cuDNN autotuning: the widget's first press
    seconds = [run() for _ in range(repeats)]
    median = statistics.median(seconds)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "variant": variant,
        "precision": segmenter.precision,  # as resolved: bf16 falls back to fp32 where not native
        "fast_paths": options,
        "batch": batch,
        "steps": steps,
        "ms_per_step": 1000 * median / steps,
        "min_ms_per_step": 1000 * min(seconds) / steps,
        "first_run_s": first,
        "all_seconds": seconds,
        "peak_memory_mib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--configs", nargs="*", default=["B"])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 32])
    parser.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--time-cap", type=float, default=None, help="seconds; skip what is left after")
    parser.add_argument("--name", default=None, help="result file name (default fast_paths_<device>)")
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU: checks the script")
    args = parser.parse_args()
    if args.dry:
        args.device, args.configs, args.batches, args.steps, args.repeats = "cpu", ["tiny"], [1, 2], 2, 1
    device = resolve_device(args.device)
    started = time.monotonic()
    runs: list[dict] = []
    payload = {"environment": environment(device), "dry": args.dry, "runs": runs}
    name = args.name or f"fast_paths_{device.type}{'_dry' if args.dry else ''}"
    for config_name in args.configs:
        torch.manual_seed(0)
        model = MedSegDiffUNet(named_config(config_name))
        checkpoint = Checkpoint(model, model.config, DiffusionConfig(), PreprocessConfig())
        for batch in args.batches:
            for variant in args.variants:
                if args.time_cap is not None and time.monotonic() - started > args.time_cap:
                    print(f"time cap reached: skipping {config_name} batch {batch} {variant}", flush=True)
                    continue
                result = measure(checkpoint, device, variant, batch, args.steps, args.repeats)
                result.update(config=config_name, parameters=count_parameters(model))
                result["input_size"] = list(model.config.image_size)
                runs.append(result)
                print(
                    f"{config_name} batch {batch:3d} {variant:28s}: {result['ms_per_step']:8.2f} ms/step "
                    f"(first run {result['first_run_s']:.2f} s)",
                    flush=True,
                )
                write_result(name, payload)
    write_result(name, payload)


if __name__ == "__main__":
    main()
