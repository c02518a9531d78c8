"""A plain U-Net of about the default model's size, trained under the same CPU budget.

It answers "is the diffusion model worth it?": same DDTI train images (the same held-out
validation cases are left out), same input size, same augmentation, same minutes and
threads; only the method differs (direct per-pixel prediction with BCE + soft Dice, the
usual U-Net recipe, with its usual learning rate 1e-3).

    python benchmarks/unet_baseline.py train --minutes 95 --out runs/unet_baseline
    python benchmarks/unet_baseline.py evaluate --weights runs/unet_baseline/unet.safetensors

``evaluate`` writes ``benchmarks/results/unet_baseline_ddti.json`` (scores, how it was
trained, machine), which ``bench_quality.py`` shows beside the diffusion model; the weights
themselves stay in ``runs/`` and are not shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from _common import environment, write_result  # noqa: E402

from medsegdiff_training.config import named_config  # noqa: E402
from medsegdiff_training.data import SegmentationDataset, augment_batch, find_pairs  # noqa: E402
from medsegdiff_training.data.io import read_array  # noqa: E402
from medsegdiff_training.device import has_fast_bfloat16, mixed_precision  # noqa: E402
from medsegdiff_training.metrics import score, summarise_scores  # noqa: E402
from medsegdiff_training.preprocess import prepare_image, resize  # noqa: E402
from medsegdiff_training.training_data import CASE_RULES, hold_out_cases  # noqa: E402


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.GroupNorm(8, cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.GroupNorm(8, cout),
            nn.SiLU(),
        )


class UNet(nn.Module):
    """Ronneberger's U-Net, with GroupNorm; widths chosen to match the default's parameter count."""

    def __init__(self, widths=(32, 64, 128, 288)) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        cin = 1
        for w in widths:
            self.down.append(DoubleConv(cin, w))
            cin = w
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:]), strict=True):
            self.up.append(nn.ConvTranspose2d(w_in, w_skip, 2, stride=2))
            self.fuse.append(DoubleConv(2 * w_skip, w_skip))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, fuse in zip(self.up, self.fuse, strict=True):
            x = fuse(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


def train_split(data: Path):
    """The train split less the cases the shipped model held out (the same function picks them)."""
    pairs = find_pairs(data / "images", data / "masks", data / "split.csv", "train")
    return hold_out_cases(pairs, CASE_RULES["before-first-underscore"])[0]


def command_train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = named_config("cpu")
    dataset = SegmentationDataset.from_pairs(train_split(args.data), config)
    model = UNet()
    print(
        f"U-Net parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M, {len(dataset)} images"
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # the same precision rule as the diffusion trainer: bf16 autocast where the CPU has it natively
    autocast = mixed_precision(torch.device("cpu"), not args.no_amp)
    amp = has_fast_bfloat16(torch.device("cpu")) and not args.no_amp
    started, step = time.monotonic(), 0
    generator = torch.Generator().manual_seed(0)
    while time.monotonic() - started < args.minutes * 60:
        index = torch.randint(0, len(dataset), (args.batch_size,), generator=generator)
        images = torch.stack([dataset[int(i)][0] for i in index])
        x0 = torch.stack([dataset[int(i)][1] for i in index]).float()[:, None] * 2 - 1
        images, x0 = augment_batch(images, x0)
        target = (x0 > 0).float()
        with autocast:
            logits = model(images).float()
        probability = torch.sigmoid(logits)
        soft_dice = 1 - (2 * (probability * target).sum((1, 2, 3)) + 1) / (
            probability.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1
        )
        loss = F.binary_cross_entropy_with_logits(logits, target) + soft_dice.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 100 == 0:
            print(
                json.dumps(
                    {
                        "step": step,
                        "loss": round(float(loss.detach()), 4),
                        "minutes": round((time.monotonic() - started) / 60, 1),
                    }
                ),
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(args.out / "unet.safetensors"))
    (args.out / "unet.json").write_text(
        json.dumps(
            {
                "steps": step,
                "minutes": args.minutes,
                "threads": args.threads,
                "batch_size": args.batch_size,
                "images": len(dataset),
                "bf16_autocast": amp,
            }
        )
    )


def evaluate_unet(weights: Path, data: Path, threads: int = 2) -> dict[str, float]:
    """Dice/IoU/HD95 of the baseline on the DDTI test split, at full image size."""
    torch.set_num_threads(threads)
    model = UNet()
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    config = named_config("cpu")
    scores = []
    for pair in find_pairs(data / "images", data / "masks", data / "split.csv", "test"):
        image, truth = read_array(pair.image), read_array(pair.mask) > 127
        with torch.inference_mode():
            probability = torch.sigmoid(model(prepare_image(image, config)))
            probability = resize(probability, truth.shape)[0, 0].numpy()
        scores.append(score((probability > 0.5).astype(np.uint8), truth, 2, probability))
    return summarise_scores(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--out", type=Path, default=Path("runs/unet_baseline"))
    parser.add_argument("--weights", type=Path, default=Path("runs/unet_baseline/unet.safetensors"))
    parser.add_argument("--minutes", type=float, default=95)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-amp", action="store_true", help="train in float32 (default: bf16 where native)")
    args = parser.parse_args()
    if args.command == "train":
        command_train(args)
    else:
        scores = evaluate_unet(args.weights, args.data)
        info_path = args.weights.with_name("unet.json")
        training = json.loads(info_path.read_text()) if info_path.is_file() else {}
        write_result(
            "unet_baseline_ddti",
            {
                "environment": environment("cpu"),
                "data": "DDTI test split (132 images)",
                "parameters": sum(p.numel() for p in UNet().parameters()),
                "training": training,
                "summary": scores,
            },
        )
        print(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
