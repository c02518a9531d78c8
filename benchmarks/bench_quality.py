"""Segmentation quality on the DDTI test split, beside the trivial baselines.

    python benchmarks/bench_quality.py --model default [--unet runs/unet_baseline/unet.safetensors]

Scores (Dice at 0.5, the official 5-threshold Dice, IoU, HD95 in pixels) for DDPM with
the paper's 100 steps, the fast samplers at several step counts (steps vs Dice), an
ensemble, and beside them: the fixed blob (thresholded mean training mask, no model:
Dice 0.817 per the data README), predicting everything as nodule, and the plain U-Net
trained under the same CPU budget (``benchmarks/unet_baseline.py``). A checkpoint folder
can stand in for ``--model``, e.g. an ablation variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, environment, fixed_blob_baseline, write_result

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.data import find_pairs, read_array
from medsegdiff_training.evaluation import evaluate_pairs
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.metrics import score, summarise_scores
from medsegdiff_training.registry import ModelRegistry

DEFAULT_PLANS = [
    "ddpm:100",
    "ddim:1",
    "ddim:2",
    "ddim:3",
    "ddim:5",
    "ddim:10",
    "ddim:20",
    "ddim:50",
    "dpm++:5",
    "dpm++:10",
    "dpm++:20",
    "ddim:3:5",
    "ddim:5:5",
    "ddim:10:5",
]


def load(spec: str, device: str):
    path = Path(spec)
    checkpoint = load_checkpoint(path) if path.is_dir() else ModelRegistry().load(spec)
    return Segmenter(checkpoint, device=device)


def quality_parser(
    description: str | None, model: str, data: Path, plans: list[str], batch_size: int, name: str
) -> argparse.ArgumentParser:
    """The options every quality benchmark takes, with its own defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=model)
    parser.add_argument("--data", type=Path, default=data)
    parser.add_argument("--plans", nargs="*", default=plans, help="sampler:steps[:ensemble]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--name", default=name)
    return parser


def parse_quality_arguments(
    parser: argparse.ArgumentParser, test_split: str, train_split: str
) -> tuple[argparse.Namespace, list, list]:
    """Parse, set the thread count, and find the (test, train) pairs of ``--data``'s split.csv."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data
    test = find_pairs(data / "images", data / "masks", data / "split.csv", test_split)
    train = find_pairs(data / "images", data / "masks", data / "split.csv", train_split)
    return args, test, train


def main() -> None:
    parser = quality_parser(
        __doc__, "default", Path("../shared/data/ddti"), DEFAULT_PLANS, 22, "quality_ddti"
    )
    parser.add_argument("--unet", type=Path, default=Path("runs/unet_baseline/unet.safetensors"))
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="a JSON list of results of the same model measured earlier, kept in the table",
    )
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="score the model's held-out validation cases (train split) instead of the test split: "
        "for choosing sampler settings without looking at the test split",
    )
    args, test, train = parse_quality_arguments(parser, "test", "train")
    segmenter = load(args.model, args.device)
    if args.held_out:
        test, train = held_out_split(parser, segmenter, train)
    args.data_description = (
        f"DDTI {'held-out validation cases' if args.held_out else 'test split'} ({len(test)} images)"
    )
    truths = [read_array(p.mask) > 127 for p in test]
    baselines = {
        "fixed_blob": fixed_blob_baseline([read_array(p.mask) > 127 for p in train], truths),
        "all_foreground": summarise_scores([score(np.ones_like(t, np.uint8), t, 2) for t in truths]),
    }
    if not args.held_out:
        baselines.update(unet_baselines(args.unet, args.data))
    for name, summary in baselines.items():
        print(f"{name}: Dice {summary['dice']:.4f}", flush=True)
    results = json.loads(args.keep.read_text()) if args.keep else []
    score_plans(args, segmenter, test, baselines, results)


def unet_baselines(weights: Path, data: Path, records: str = "unet_baseline_ddti") -> dict[str, dict]:
    """The plain U-Net's test scores: evaluated now when ``weights`` are here, and every run
    recorded by ``unet_baseline.py evaluate`` (``results/{records}*.json``), each
    with how it was trained and when it was scored."""
    found: dict[str, dict] = {}
    for record in sorted(RESULTS.glob(f"{records}*.json")):
        result = json.loads(record.read_text())
        key = "unet_same_budget" + record.stem.removeprefix(records)
        found[key] = {
            **result["summary"],
            "measured": result["environment"]["date"],
            "training": result["training"],
        }
    if weights.is_file():
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from unet_baseline import evaluate_unet

        info = weights.with_name("unet.json")
        training = json.loads(info.read_text()) if info.is_file() else {}
        found["unet_same_budget"] = {**evaluate_unet(weights, data), "training": training}
    return found


def held_out_split(parser: argparse.ArgumentParser, segmenter: Segmenter, train: list) -> tuple[list, list]:
    """(the training pairs the model's checkpoint held out for validation, the rest): scoring
    them chooses sampler settings without looking at the test split."""
    held_out = set(segmenter.checkpoint.metadata.get("training_data", {}).get("held_out_validation", []))
    if not held_out:
        parser.error("the model's metadata names no held-out validation images")
    return [p for p in train if p.name in held_out], [p for p in train if p.name not in held_out]


def score_plans(args, segmenter: Segmenter, test: list, baselines: dict, results: list) -> None:
    """Score every sampler plan of ``args.plans`` (``sampler:steps[:ensemble]``) on ``test``,
    appending to ``results`` and writing ``args.name``'s results file after each."""
    for plan in args.plans:
        sampler, steps, *rest = plan.split(":")
        settings = SamplingSettings(
            sampler=sampler, steps=int(steps), ensemble=int(rest[0]) if rest else 1, seed=0
        )
        started = time.perf_counter()
        report = evaluate_pairs(
            segmenter, test, settings, batch_size=max(1, args.batch_size // settings.ensemble)
        )
        seconds = time.perf_counter() - started
        results.append({"settings": settings.to_dict(), "summary": report.summary, "seconds": seconds})
        s = report.summary
        write_result(args.name, document(args, segmenter, baselines, results))
        print(
            f"{plan}: Dice {s['dice']:.4f} (5-thr {s['dice_5threshold']:.4f}) IoU {s['iou']:.4f} "
            f"HD95 {s['hd95']:.1f} px, {seconds:.0f} s",
            flush=True,
        )


def document(args, segmenter, baselines, results) -> dict:
    return {
        "environment": environment(segmenter.device),
        "model": args.model,
        "model_metadata": {
            k: v for k, v in segmenter.checkpoint.metadata.items() if k in ("version", "training", "created")
        },
        "data": args.data_description,
        "baselines": baselines,
        "results": results,
    }


if __name__ == "__main__":
    main()
