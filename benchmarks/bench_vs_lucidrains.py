"""Speed against lucidrains' med-seg-diff-pytorch, side by side in one run.

At two sizes, each pair at (nearly) equal parameter count and the same input size:

- "3M": at 96x96 (our default model's input size): our CPU configuration widened to base
  32 (3.2M parameters) and their Unet at dim 16 (3.6M; their GroupNorm needs multiples of 8);
- "13M": at 128x128: their Unet at dim 32 (13.5M, the size measured in issue 5) and ours
  at base 64 (12.7M).

The CPU configuration's shape (channels x1, x2, x3, x4) puts many channels at full
resolution, where convolutions cost most. The "-w" pairs give ours the peer's channel
widths per level (dim x1, x2, x4, x8) and reach the same parameter count with deeper
encoders at low resolution (ResNet-34-like 1, 2, 4, 6 blocks):

- "3M-w": at 96x96, ours at base 16 (3.2M) against their dim 16 (3.6M);
- "13M-w": at 128x128, ours at base 32 (12.9M) against their dim 32 (13.5M).

Measured, alternating ours and theirs, median of repeats:

- seconds per denoising step, batch 1: a 10-step DDIM run through each library's own
  sampler (ours: ``Segmenter.denoise``; theirs: ``MedSegDiff.sample`` with
  ``sampling_timesteps=10``), divided by 10;
- training images per second, batch 4: loss, backward and an AdamW step;

each in float32 and under bfloat16 autocast (``torch.autocast("cpu", torch.bfloat16)``,
which this machine's AMX units run natively; ours turns it on by itself there). The table
gives float32 against float32, and each library at its own fastest precision.

On a GPU (``--device cuda``, run by ``benchmarks/gpu_check.sh``) the pairs are the paper's
configurations at 256x256: "S-256" (ours S, 20.8M, against their dim 40, 23.5M) and
"B-256" (ours B, 33.3M, against their dim 48, 32.8M); the step is timed at batch 1 and
``--step-batch`` (an ensemble, one batch), training at ``--train-batch``. Ours runs as the
library ships: its precision policy and CUDA graphs on; float32 is float32 with TF32 on
both sides (the process-wide setting).

Run in the peer environment: ``bash benchmarks/setup_peer_env.sh`` then
``.venv-bench/bin/python benchmarks/bench_vs_lucidrains.py``; or with the peer put on
``PYTHONPATH`` (``pip install --no-deps --target benchmarks/.peer_site med-seg-diff-pytorch
beartype einops tqdm``).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from _common import environment, timed, write_result  # noqa: E402
from med_seg_diff_pytorch import MedSegDiff, Unet  # noqa: E402

from medsegdiff_training.checkpoint import Checkpoint  # noqa: E402
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config  # noqa: E402
from medsegdiff_training.device import resolve_device  # noqa: E402
from medsegdiff_training.inference import SamplingSettings, Segmenter  # noqa: E402
from medsegdiff_training.model import MedSegDiffUNet, count_parameters  # noqa: E402
from medsegdiff_training.precision import enable_tf32  # noqa: E402
from medsegdiff_training.samplers import run_to_end  # noqa: E402
from medsegdiff_training.schedule import NoiseSchedule, diffusion_loss  # noqa: E402
from medsegdiff_training.trainer import TrainConfig, make_optimizer  # noqa: E402

CPU = torch.device("cpu")
PEER_SHAPE = {"channel_mults": (1, 2, 4, 8), "encoder_blocks": (1, 2, 4, 6)}
PAIRS: dict[str, tuple[int, dict, int]] = {
    # name: (image size, our changes to the "cpu" configuration, their dim)
    "3M": (96, {"base_channels": 32}, 16),
    "13M": (128, {"base_channels": 64}, 32),
    "3M-w": (96, {"base_channels": 16, **PEER_SHAPE}, 16),
    "13M-w": (128, {"base_channels": 32, **PEER_SHAPE}, 32),
    # the paper's configurations, for a GPU
    "S-256": (256, {"base": "S"}, 40),
    "B-256": (256, {"base": "B"}, 48),
    # tiny, for the dry run of gpu_check.sh on a CPU
    "tiny": (32, {"base": "tiny"}, 8),
}


def our_config(size: int, changes: dict):
    changes = dict(changes)
    base = changes.pop("base", "cpu")
    return named_config(base, image_size=(size, size), **changes)


def ours(size: int, changes: dict, device: torch.device):
    config = our_config(size, changes)
    model = MedSegDiffUNet(config)
    checkpoint = Checkpoint(model, config, DiffusionConfig(), PreprocessConfig())
    # on the CPU both segmenters share the model; on CUDA bf16 samples with a bf16 copy
    segmenters = {
        amp: Segmenter(checkpoint, device=device, precision="bf16" if amp else "fp32")
        for amp in (False, True)
    }
    return model.to(device), segmenters


def theirs(size: int, dim: int):
    unet = Unet(dim=dim, image_size=size, mask_channels=1, input_img_channels=1, dim_mults=(1, 2, 4, 8))
    return unet, MedSegDiff(unet, timesteps=1000, sampling_timesteps=10).eval()


def bf16(amp: bool, device: torch.device = CPU):
    """Autocast as each library would get it: bfloat16 on this CPU / GPU, or plain float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_pair(
    name: str,
    repeats: int,
    steps: int = 10,
    device: torch.device = CPU,
    step_batch: int = 1,
    train_batch: int = 4,
) -> dict:
    size, changes, dim = PAIRS[name]
    our_model, segmenters = ours(size, changes, device)
    their_unet, their_diffusion = theirs(size, dim)
    their_diffusion = their_diffusion.to(device)
    image = torch.randn(step_batch, 1, size, size, device=device)
    settings = SamplingSettings(sampler="ddim", steps=steps, seed=0, ensemble=1)
    schedule = NoiseSchedule(DiffusionConfig())
    if device.type == "cuda":  # ours as its trainer runs it (fused AdamW); theirs as it ships
        our_optimizer = make_optimizer(our_model, TrainConfig(), device)
    else:
        our_optimizer = torch.optim.AdamW(our_model.parameters(), lr=1e-4)
    their_optimizer = torch.optim.AdamW(their_diffusion.parameters(), lr=1e-4)
    images = torch.randn(train_batch, 1, size, size, device=device)
    masks = (torch.rand(train_batch, 1, size, size, device=device) > 0.5).float()

    def sample_ours(amp: bool):
        run_to_end(segmenters[amp].denoise(image, settings))
        synchronize(device)

    def sample_theirs(amp: bool):
        with bf16(amp, device):
            their_diffusion.sample(image)
        synchronize(device)

    def train_ours(amp: bool):
        our_model.train()
        with bf16(amp, device):
            loss = diffusion_loss(our_model, schedule, images, masks * 2 - 1)
        our_optimizer.zero_grad()
        loss.backward()
        our_optimizer.step()
        synchronize(device)

    def train_theirs(amp: bool):
        their_diffusion.train()
        with bf16(amp, device):
            loss = their_diffusion(masks, images)
        their_optimizer.zero_grad()
        loss.backward()
        their_optimizer.step()
        synchronize(device)

    tasks = {"step": (sample_ours, sample_theirs), "train": (train_ours, train_theirs)}
    rounds: dict[str, list[float]] = {
        f"{task}_{who}_{precision}": []
        for task in tasks
        for who in ("ours", "theirs")
        for precision in ("fp32", "bf16")
    }
    failures: dict[str, str] = {}  # a precision a library cannot run (e.g. cuFFT has no bf16)

    def attempt(key: str, function, amp: bool) -> float:
        if key in failures:
            return float("inf")
        try:
            return timed(lambda: function(amp), 1, warmup=0)["median_s"]
        except RuntimeError as error:
            failures[key] = str(error).splitlines()[0][:200]
            print(f"{name}: {key} failed: {failures[key]}", flush=True)
            return float("inf")

    for task, (mine, peer) in tasks.items():  # graph capture, cuDNN autotuning: not timed
        for amp in (False, True):
            for who, function in (("ours", mine), ("theirs", peer)):
                attempt(f"{task}_{who}_{'bf16' if amp else 'fp32'}", function, amp)
    for _ in range(repeats):  # alternate so that machine noise hits both alike
        for task, (mine, peer) in tasks.items():
            for amp in (False, True):
                precision = "bf16" if amp else "fp32"
                for who, function in (("ours", mine), ("theirs", peer)):
                    key = f"{task}_{who}_{precision}"
                    seconds = attempt(key, function, amp)
                    rounds[key].append(seconds / (steps if task == "step" else 1))
    median = {k: sorted(v)[len(v) // 2] for k, v in rounds.items()}

    def best(task: str, who: str) -> tuple[float, str]:
        return min((median[f"{task}_{who}_{p}"], p) for p in ("fp32", "bf16"))

    result = {
        "input_size": size,
        "our_configuration": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
        "parameters_ours": count_parameters(our_model),
        "parameters_theirs": sum(p.numel() for p in their_unet.parameters()),
        # float32 against float32: the same arithmetic on both sides
        "seconds_per_step_ours": median["step_ours_fp32"],
        "seconds_per_step_theirs": median["step_theirs_fp32"],
        "step_speedup": median["step_theirs_fp32"] / median["step_ours_fp32"],
        "step_batch": step_batch,
        "train_batch": train_batch,
        "train_images_per_s_ours": train_batch / median["train_ours_fp32"],
        "train_images_per_s_theirs": train_batch / median["train_theirs_fp32"],
        "train_speedup": median["train_theirs_fp32"] / median["train_ours_fp32"],
        "medians": median,
        "failures": failures,
        "all_rounds": rounds,
    }
    # each library at its fastest precision on this machine (bf16 autocast or float32)
    for task in tasks:
        (mine, my_precision), (peer, peer_precision) = best(task, "ours"), best(task, "theirs")
        result[f"best_{task}"] = {
            "ours": mine if task == "step" else train_batch / mine,
            "ours_precision": my_precision,
            "theirs": peer if task == "step" else train_batch / peer,
            "theirs_precision": peer_precision,
            "speedup": peer / mine,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--pairs", nargs="*", default=None, help="default: the CPU pairs, or S-256 B-256 on CUDA"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--step-batch", type=int, nargs="*", default=[1], help="batches of the timed step")
    parser.add_argument("--train-batch", type=int, default=None, help="default 4, 32 on CUDA")
    parser.add_argument("--time-cap", type=float, default=None, help="seconds; skip what is left after")
    parser.add_argument("--dry", action="store_true", help="tiny pair on the CPU: checks the script")
    args = parser.parse_args()
    if args.dry:
        args.device, args.pairs, args.repeats, args.step_batch, args.train_batch = (
            "cpu",
            ["tiny"],
            1,
            [2],
            2,
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    enable_tf32(device)
    if args.pairs is None:
        args.pairs = ["S-256", "B-256"] if device.type == "cuda" else ["3M", "13M", "3M-w", "13M-w"]
    train_batch = args.train_batch or (32 if device.type == "cuda" else 4)
    started = time.monotonic()
    if device.type == "cpu" and not args.dry:  # warm both code paths once before timing anything
        for name in args.pairs:
            measure_pair(name, 1, 2, device, args.step_batch[0], train_batch)
    results = {}
    for name in args.pairs:
        for batch in args.step_batch:
            if args.time_cap is not None and time.monotonic() - started > args.time_cap:
                print(f"time cap reached: skipping {name} at step batch {batch}", flush=True)
                continue
            key = name if batch == args.step_batch[0] else f"{name} (step batch {batch})"
            results[key] = measure_pair(name, args.repeats, 10, device, batch, train_batch)
    for name, r in results.items():
        print(
            f"{name}: {r['parameters_ours'] / 1e6:.2f}M vs {r['parameters_theirs'] / 1e6:.2f}M params at {r['input_size']}^2 | "
            f"step {r['seconds_per_step_ours']:.3f}s vs {r['seconds_per_step_theirs']:.3f}s ({r['step_speedup']:.1f}x) | "
            f"train {r['train_images_per_s_ours']:.2f} vs {r['train_images_per_s_theirs']:.2f} img/s ({r['train_speedup']:.1f}x) | "
            f"best step {r['best_step']['speedup']:.1f}x, best train {r['best_train']['speedup']:.1f}x"
        )
    suffix = "" if device.type == "cpu" and not args.dry else f"_{device.type}"
    write_result(
        f"vs_lucidrains{suffix}{'_dry' if args.dry else ''}",
        {"environment": environment(device), "peer": "med-seg-diff-pytorch 0.3.3", "pairs": results},
    )


if __name__ == "__main__":
    main()
