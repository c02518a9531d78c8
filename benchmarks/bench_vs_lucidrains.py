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

Run in the peer environment: ``bash benchmarks/setup_peer_env.sh`` then
``.venv-bench/bin/python benchmarks/bench_vs_lucidrains.py``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from _common import environment, timed, write_result  # noqa: E402
from med_seg_diff_pytorch import MedSegDiff, Unet  # noqa: E402

from medsegdiff_training.checkpoint import Checkpoint  # noqa: E402
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config  # noqa: E402
from medsegdiff_training.inference import SamplingSettings, Segmenter  # noqa: E402
from medsegdiff_training.model import MedSegDiffUNet, count_parameters  # noqa: E402
from medsegdiff_training.samplers import run_to_end  # noqa: E402
from medsegdiff_training.schedule import NoiseSchedule, diffusion_loss  # noqa: E402

PEER_SHAPE = {"channel_mults": (1, 2, 4, 8), "encoder_blocks": (1, 2, 4, 6)}
PAIRS: dict[str, tuple[int, dict, int]] = {
    # name: (image size, our changes to the "cpu" configuration, their dim)
    "3M": (96, {"base_channels": 32}, 16),
    "13M": (128, {"base_channels": 64}, 32),
    "3M-w": (96, {"base_channels": 16, **PEER_SHAPE}, 16),
    "13M-w": (128, {"base_channels": 32, **PEER_SHAPE}, 32),
}


def ours(size: int, changes: dict):
    config = named_config("cpu", image_size=(size, size), **changes)
    model = MedSegDiffUNet(config)
    checkpoint = Checkpoint(model, config, DiffusionConfig(), PreprocessConfig())
    return model, {amp: Segmenter(checkpoint, device="cpu", amp=amp) for amp in (False, True)}


def theirs(size: int, dim: int):
    unet = Unet(dim=dim, image_size=size, mask_channels=1, input_img_channels=1, dim_mults=(1, 2, 4, 8))
    return unet, MedSegDiff(unet, timesteps=1000, sampling_timesteps=10).eval()


def bf16(amp: bool):
    """Autocast as each library would get it: bfloat16 on this CPU, or plain float32."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)


def measure_pair(name: str, repeats: int, steps: int = 10) -> dict:
    size, changes, dim = PAIRS[name]
    our_model, segmenters = ours(size, changes)
    their_unet, their_diffusion = theirs(size, dim)
    image = torch.randn(1, 1, size, size)
    settings = SamplingSettings(sampler="ddim", steps=steps, seed=0)
    schedule = NoiseSchedule(DiffusionConfig())
    our_optimizer = torch.optim.AdamW(our_model.parameters(), lr=1e-4)
    their_optimizer = torch.optim.AdamW(their_diffusion.parameters(), lr=1e-4)
    images, masks = torch.randn(4, 1, size, size), (torch.rand(4, 1, size, size) > 0.5).float()

    def sample_ours(amp: bool):
        run_to_end(segmenters[amp].denoise(image, settings))

    def sample_theirs(amp: bool):
        with bf16(amp):
            their_diffusion.sample(image)

    def train_ours(amp: bool):
        our_model.train()
        with bf16(amp):
            loss = diffusion_loss(our_model, schedule, images, masks * 2 - 1)
        our_optimizer.zero_grad()
        loss.backward()
        our_optimizer.step()

    def train_theirs(amp: bool):
        their_diffusion.train()
        with bf16(amp):
            loss = their_diffusion(masks, images)
        their_optimizer.zero_grad()
        loss.backward()
        their_optimizer.step()

    tasks = {"step": (sample_ours, sample_theirs), "train": (train_ours, train_theirs)}
    rounds: dict[str, list[float]] = {
        f"{task}_{who}_{precision}": []
        for task in tasks
        for who in ("ours", "theirs")
        for precision in ("fp32", "bf16")
    }
    for _ in range(repeats):  # alternate so that machine noise hits both alike
        for task, (mine, peer) in tasks.items():
            for amp in (False, True):
                precision = "bf16" if amp else "fp32"
                for who, function in (("ours", mine), ("theirs", peer)):
                    seconds = timed(lambda f=function, a=amp: f(a), 1, warmup=0)["median_s"]
                    rounds[f"{task}_{who}_{precision}"].append(seconds / (steps if task == "step" else 1))
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
        "train_images_per_s_ours": 4 / median["train_ours_fp32"],
        "train_images_per_s_theirs": 4 / median["train_theirs_fp32"],
        "train_speedup": median["train_theirs_fp32"] / median["train_ours_fp32"],
        "medians": median,
        "all_rounds": rounds,
    }
    # each library at its fastest precision on this machine (bf16 autocast or float32)
    for task in tasks:
        (mine, my_precision), (peer, peer_precision) = best(task, "ours"), best(task, "theirs")
        result[f"best_{task}"] = {
            "ours": mine if task == "step" else 4 / mine,
            "ours_precision": my_precision,
            "theirs": peer if task == "step" else 4 / peer,
            "theirs_precision": peer_precision,
            "speedup": peer / mine,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # warm both code paths once before timing anything
    for name in args.pairs:
        measure_pair(name, repeats=1, steps=2)
    results = {name: measure_pair(name, args.repeats) for name in args.pairs}
    for name, r in results.items():
        print(
            f"{name}: {r['parameters_ours'] / 1e6:.2f}M vs {r['parameters_theirs'] / 1e6:.2f}M params at {r['input_size']}^2 | "
            f"step {r['seconds_per_step_ours']:.3f}s vs {r['seconds_per_step_theirs']:.3f}s ({r['step_speedup']:.1f}x) | "
            f"train {r['train_images_per_s_ours']:.2f} vs {r['train_images_per_s_theirs']:.2f} img/s ({r['train_speedup']:.1f}x) | "
            f"best step {r['best_step']['speedup']:.1f}x, best train {r['best_train']['speedup']:.1f}x"
        )
    write_result(
        "vs_lucidrains",
        {"environment": environment("cpu"), "peer": "med-seg-diff-pytorch 0.3.3", "pairs": results},
    )


if __name__ == "__main__":
    main()
