"""A plain U-Net of about the default model's size, trained under the same CPU budget.

It answers "is the diffusion model worth it?": same DDTI train images (the same held-out
validation cases are left out), same input size, same augmentation, same minutes and
threads; only the method differs (direct per-pixel prediction with BCE + soft Dice, the
usual U-Net recipe, with its usual learning rate 1e-3).

    python benchmarks/unet_baseline.py train --minutes 95 --out runs/unet_baseline
    python benchmarks/unet_baseline.py evaluate --weights runs/unet_baseline/unet.safetensors

``evaluate`` writes ``benchmarks/results/unet_baseline_ddti.json`` (scores, how it was
trained, machine), which ``bench_quality.py`` shows beside the diffusion model; the weights
themselves stay in ``runs/`` and are not shipped. The brain MRI baseline beside ``lgg-flair``
(same held-out patients, 128x128, a CPU-time budget):

    python benchmarks/unet_baseline.py train --data ../shared/data/lgg_mri \
        --case-of before-last-underscore --image-size 128 --clock cpu --minutes 93 --out runs/unet_lgg
    python benchmarks/unet_baseline.py evaluate --data ../shared/data/lgg_mri \
        --weights runs/unet_lgg/unet.safetensors --name unet_baseline_lgg
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
from medsegdiff_training.data.io import read_array, read_mask  # noqa: E402
from medsegdiff_training.device import has_fast_bfloat16, mixed_precision  # noqa: E402
from medsegdiff_training.metrics import score, summarise_scores  # noqa: E402
from medsegdiff_training.preprocess import check_label_map, prepare_image, resize  # noqa: E402
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


def train_split(data: Path, case_rule: str = "before-first-underscore"):
    """The train split less the diffusion model's held-out validation cases."""
    pairs = find_pairs(data / "images", data / "masks", data / "split.csv", "train")
    return hold_out_cases(pairs, CASE_RULES[case_rule])[0]


def command_train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = named_config("cpu", image_size=(args.image_size, args.image_size))
    dataset = SegmentationDataset.from_pairs(train_split(args.data, args.case_of), config)
    model = UNet()
    print(
        f"U-Net parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M, {len(dataset)} images"
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # the same precision rule as the diffusion trainer: bf16 autocast where the CPU has it natively
    autocast = mixed_precision(torch.device("cpu"), not args.no_amp)
    amp = has_fast_bfloat16(torch.device("cpu")) and not args.no_amp
    clock = time.process_time if args.clock == "cpu" else time.monotonic  # as TrainConfig.clock
    started, step = clock(), 0
    generator = torch.Generator().manual_seed(0)
    while clock() - started < args.minutes * 60:
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
                        "minutes": round((clock() - started) / 60, 1),
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
                "clock": args.clock,
                "image_size": args.image_size,
                "threads": args.threads,
                "batch_size": args.batch_size,
                "images": len(dataset),
                "bf16_autocast": amp,
            }
        )
    )


def evaluate_unet(weights: Path, data: Path, threads: int = 2) -> dict[str, float]:
    """Dice/IoU/HD95 of the baseline on ``data``'s test split, at full image size (the input
    size it was trained at is read from the ``unet.json`` beside the weights; else 96)."""
    torch.set_num_threads(threads)
    model = UNet()
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    info = weights.with_name("unet.json")
    size = json.loads(info.read_text()).get("image_size", 96) if info.is_file() else 96
    config = named_config("cpu", image_size=(size, size))
    scores = []
    for pair in find_pairs(data / "images", data / "masks", data / "split.csv", "test"):
        image = read_array(pair.image)
        truth = check_label_map(read_mask(pair.mask), 2, image.shape[:2]) > 0  # 0/255 and 0/1 masks alike
        with torch.inference_mode():
            probability = torch.sigmoid(model(prepare_image(image, config)))
            probability = resize(probability, truth.shape)[0, 0].numpy()
        scores.append(score((probability > 0.5).astype(np.uint8), truth, 2, probability))
    return summarise_scores(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["train", "evaluate"])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--case-of", choices=list(CASE_RULES), default="before-first-underscore")
    parser.add_argument("--image-size", type=int, default=96, help="network input N x N (train)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="what --minutes counts")
    parser.add_argument("--name", default="unet_baseline_ddti", help="results file name (evaluate)")
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
        scores = evaluate_unet(args.weights, args.data, args.threads)
        info_path = args.weights.with_name("unet.json")
        training = json.loads(info_path.read_text()) if info_path.is_file() else {}
        count = len(find_pairs(args.data / "images", args.data / "masks", args.data / "split.csv", "test"))
        write_result(
            args.name,
            {
                "environment": environment("cpu"),
                "data": f"{args.data.name} test split ({count} images)",
                "parameters": sum(p.numel() for p in UNet().parameters()),
                "training": training,
                "summary": scores,
            },
        )
        print(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
