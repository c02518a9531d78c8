"""Table II's ablation: what dynamic conditional encoding and the FF-Parser are worth here.

    python benchmarks/bench_ablation.py all --runs runs/ablation          # train + score + report
    python benchmarks/bench_ablation.py report --runs runs/ablation       # JSON from finished runs

Three variants, as in the paper's Table II: ``vanilla`` (both components off: the mask's
features are added to the image's only at the bottleneck), ``dycond`` (dynamic conditional
encoding on, FF-Parser off) and ``dycond+ffparser`` (both on: the paper's design and our
default). Each is trained from scratch with the shipped recipe (v-prediction, MSE + soft Dice,
AdamW lr 1e-3, batch 8, EMA 0.999, the same augmentation, float32 on this CPU) for an equal
budget in **steps** (so a slower variant is not starved), with two seeds or more, on

- DDTI (thyroid nodules, binary, 1 channel, 96x96): the train split less the 30 images of
  whole cases that the default held out; scored on the 132 test images;
- Drishti-GS1 (optic disc rim and cup, 3 classes, RGB, 96x96): the 50 Training images;
  scored on the 51 Test images as disc (rim + cup) and cup.

Scoring: the default sampling (DDIM 3 steps x an ensemble of 5) on the whole test split, and
the paper's DDPM with 100 steps (one sample) on the first ``--ddpm-images`` test images (it
costs 100 network calls per image). Beside them the trivial baselines on the same images:
the fixed blob for DDTI, the majority label map for Drishti. ``all`` runs two jobs at a time
at one thread each, resumes finished work, and writes
``benchmarks/results/ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _common import environment, fixed_blob_baseline, write_result
from bench_quality_drishti import majority_map
from unet_baseline import train_split

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.data import SegmentationDataset, find_pairs, read_mask
from medsegdiff_training.evaluation import evaluate_pairs
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.metrics import structure_scores, summarise_scores
from medsegdiff_training.preprocess import resize
from medsegdiff_training.train_config import TrainConfig
from medsegdiff_training.trainer import train

VARIANTS: dict[str, dict[str, bool]] = {
    "vanilla": {"dynamic_conditioning": False, "ff_parser": False},
    "dycond": {"dynamic_conditioning": True, "ff_parser": False},
    "dycond+ffparser": {"dynamic_conditioning": True, "ff_parser": True},
}
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS: dict[str, dict[str, Any]] = {
    "ddti": {"folder": "ddti", "train": "train", "test": "test", "structures": None},
    "drishti": {
        "folder": "drishti_roi",
        "train": "Training",
        "test": "Test",
        "structures": {"disc": (1, 2), "cup": (2,)},
    },
}
DEFAULT_SAMPLING = SamplingSettings(sampler="ddim", steps=3, ensemble=5, seed=0)
PAPER_SAMPLING = SamplingSettings(sampler="ddpm", steps=100, ensemble=1, seed=0)


def pairs_of(dataset: str, split: str, data: Path) -> list:
    folder = data / DATASETS[dataset]["folder"]
    return find_pairs(folder / "images", folder / "masks", folder / "split.csv", split)


def training_pairs(dataset: str, data: Path) -> list:
    """The training images: for DDTI the default's, less its 30 held-out images of whole cases."""
    pairs = pairs_of(dataset, DATASETS[dataset]["train"], data)
    if dataset != "ddti":
        return pairs
    return train_split(data / DATASETS[dataset]["folder"])  # the default's hold-out rule, one home


def run_dir(runs: Path, dataset: str, variant: str, seed: int) -> Path:
    return runs / f"{dataset}-{variant}-seed{seed}"


def train_one(args: argparse.Namespace) -> None:
    """Train one variant with one seed for ``--steps`` steps (resumes an interrupted run)."""
    torch.set_num_threads(args.threads)
    pairs = training_pairs(args.dataset, args.data)
    channels = 3 if args.dataset == "drishti" else 1
    classes = 3 if args.dataset == "drishti" else 2
    model_config = named_config("cpu", image_channels=channels, num_classes=classes, **VARIANTS[args.variant])
    preprocess = PreprocessConfig()
    data = SegmentationDataset.from_pairs(pairs, model_config, preprocess)
    config = TrainConfig(
        steps=args.steps,
        batch_size=8,
        learning_rate=1e-3,
        mask_loss_weight=1.0,
        ema_decay=0.999,
        seed=args.seed,
        validate_every=10**9,
        checkpoint_every=args.steps,
        device=args.device,
    )
    started = time.process_time()
    result = train(
        model_config,
        data,
        run_dir(args.runs, args.dataset, args.variant, args.seed),
        config=config,
        diffusion=DiffusionConfig(prediction="v"),
        preprocess=preprocess,
        metadata={"ablation": {"dataset": args.dataset, "variant": args.variant, "images": len(data)}},
    )
    print(
        json.dumps(
            {
                "run": str(result.run_dir),
                "steps": result.step,
                "cpu_minutes": (time.process_time() - started) / 60,
            }
        ),
        flush=True,
    )


def score_one(args: argparse.Namespace) -> None:
    """Score one finished run with both samplings; writes ``scores.json`` into its folder."""
    torch.set_num_threads(args.threads)
    folder = run_dir(args.runs, args.dataset, args.variant, args.seed)
    segmenter = Segmenter(load_checkpoint(folder / "final"), device=args.device)
    test = pairs_of(args.dataset, DATASETS[args.dataset]["test"], args.data)
    structures = DATASETS[args.dataset]["structures"]
    scores = {}
    for label, settings, pairs in (
        ("default", DEFAULT_SAMPLING, test),
        ("paper", PAPER_SAMPLING, test[: args.ddpm_images]),
    ):
        started = time.process_time()
        report = evaluate_pairs(segmenter, pairs, settings, batch_size=8, structures=structures)
        scores[label] = {
            "settings": settings.to_dict(),
            "images": len(pairs),
            "summary": report.summary,
            "cpu_seconds": time.process_time() - started,
        }
        print(f"{folder.name} {label}: {headline(args.dataset, report.summary)}", flush=True)
    (folder / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")


def headline(dataset: str, summary: dict[str, float]) -> str:
    if dataset == "ddti":
        return f"Dice {summary['dice']:.4f}"
    return f"disc {summary['disc_dice']:.4f} cup {summary['cup_dice']:.4f}"


def baselines(dataset: str, data: Path, ddpm_images: int) -> dict[str, Any]:
    """The no-model figures on the whole test split and on the DDPM subset."""
    train_masks = [read_mask(p.mask) for p in pairs_of(dataset, DATASETS[dataset]["train"], data)]
    test_masks = [read_mask(p.mask) for p in pairs_of(dataset, DATASETS[dataset]["test"], data)]
    result = {}
    for label, truths in (("test", test_masks), ("ddpm_subset", test_masks[:ddpm_images])):
        if dataset == "ddti":
            result[label] = {"fixed_blob": fixed_blob_baseline(train_masks, truths)}
        else:
            frequencies = majority_map(train_masks)
            maps = [resize(frequencies[None], t.shape)[0].argmax(0).numpy() for t in truths]
            result[label] = {
                "majority_map": summarise_scores(
                    [
                        structure_scores(m, t, DATASETS[dataset]["structures"])
                        for m, t in zip(maps, truths, strict=True)
                    ]
                )
            }
    return result


def metric_names(dataset: str) -> list[str]:
    return ["dice"] if dataset == "ddti" else ["disc_dice", "cup_dice"]


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Collect every scored run into benchmarks/results/ablation.json (mean, spread per variant)."""
    document: dict[str, Any] = {
        "benchmark": "Table II ablation: vanilla / Dy-Cond / Dy-Cond + FF-Parser, trained from scratch",
        "recipe": "cpu config 96x96, v-prediction, MSE + soft Dice (weight 1), AdamW lr 1e-3 constant, "
        "batch 8, EMA 0.999, default augmentation, the device's default precision (float32 on this CPU), "
        "1 thread per run",
        "steps": {"ddti": args.steps_ddti, "drishti": args.steps_drishti},
        "seeds": args.seeds,
        "sampling": {"default": DEFAULT_SAMPLING.to_dict(), "paper": PAPER_SAMPLING.to_dict()},
        "ddpm_images": args.ddpm_images,
        "environment": environment(args.device),
        "datasets": {},
    }
    for dataset in DATASETS:
        entry: dict[str, Any] = {"baselines": baselines(dataset, args.data, args.ddpm_images), "variants": {}}
        for variant in VARIANTS:
            runs = []
            for seed in range(args.seeds):
                path = run_dir(args.runs, dataset, variant, seed) / "scores.json"
                if path.exists():
                    runs.append({"seed": seed, **json.loads(path.read_text())})
            if not runs:
                continue
            summary: dict[str, Any] = {}
            for label in ("default", "paper"):
                for metric in metric_names(dataset):
                    values = [run[label]["summary"][metric] for run in runs]
                    summary[f"{label}_{metric}"] = {
                        "mean": statistics.fmean(values),
                        "spread": (max(values) - min(values)) / 2,
                        "values": values,
                    }
            entry["variants"][variant] = {"runs": runs, "summary": summary}
        document["datasets"][dataset] = entry
    write_result("ablation", document)
    return document


def jobs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(name, shell command) of every train + score not done yet, DDTI first, seeds interleaved."""
    pending = []
    for dataset, steps in (("ddti", args.steps_ddti), ("drishti", args.steps_drishti)):
        for seed in range(args.seeds):
            for variant in VARIANTS:
                folder = run_dir(args.runs, dataset, variant, seed)
                if (folder / "scores.json").exists():
                    continue
                common = [
                    f"--dataset={dataset}",
                    f"--variant={variant}",
                    f"--seed={seed}",
                    f"--runs={args.runs}",
                    f"--data={args.data}",
                    f"--device={args.device}",
                ]
                command = [sys.executable, __file__]
                train_part = shlex.join([*command, "train", *common, f"--steps={steps}"])
                score_part = shlex.join([*command, "score", *common, f"--ddpm-images={args.ddpm_images}"])
                pending.append((folder.name, f"{train_part} && {score_part}"))
    return pending


def run_all(args: argparse.Namespace) -> None:
    """Train and score every variant x seed x dataset, ``--jobs`` at a time, then report."""
    queue = jobs(args)
    running: list[tuple[str, subprocess.Popen]] = []
    args.runs.mkdir(parents=True, exist_ok=True)
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while queue or running:
        while queue and len(running) < args.jobs:
            name, script = queue.pop(0)
            with (args.runs / f"{name}.log").open("a") as log:
                process = subprocess.Popen(
                    ["bash", "-c", script], stdout=log, stderr=subprocess.STDOUT, env=one_thread
                )
            running.append((name, process))
            print(f"started {name}", flush=True)
        for name, process in list(running):
            if process.poll() is not None:
                running.remove((name, process))
                print(f"finished {name} (exit {process.returncode})", flush=True)
        time.sleep(5)
    report(args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["all", "train", "score", "report"])
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--dataset", choices=list(DATASETS), default="ddti")
    parser.add_argument("--variant", choices=list(VARIANTS), default="dycond+ffparser")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200, help="train: the step budget of this run")
    parser.add_argument("--steps-ddti", type=int, default=200)
    parser.add_argument("--steps-drishti", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--ddpm-images", type=int, default=12, help="test images scored with DDPM-100")
    parser.add_argument("--jobs", type=int, default=2, help="all: runs at a time (one thread each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda: a GPU affords budgets near the shipped default's"
    )
    args = parser.parse_args()
    if not (args.data / "ddti").is_dir():
        parser.error(
            f"no shared data at {args.data}: this benchmark needs ../shared/data (ddti, drishti_roi)"
        )
    {"all": run_all, "train": train_one, "score": score_one, "report": report}[args.mode](args)


if __name__ == "__main__":
    main()
