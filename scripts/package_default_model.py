"""Copy a finished training run into the package as the shipped ``default`` model.

    python scripts/package_default_model.py runs/default/final benchmarks/results/quality_ddti.json \
        --recipe "how the run was trained, in words" --wall-minutes 93

Writes ``training/medsegdiff_training/default_model/`` (model.safetensors, config.json with
version "default", and model_card.json with the DDTI test-split figures taken from the
quality benchmark's JSON). The weights are copied byte for byte.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from medsegdiff_training.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, read_checkpoint_config

DESTINATION = Path(__file__).resolve().parents[1] / "training" / "medsegdiff_training" / "default_model"


def card(config: dict, quality: dict, recipe: str | None, wall_minutes: float | None) -> dict:
    training = config.get("training", {})
    pick = {}
    for result in quality["results"]:
        s = result["settings"]
        key = f"{s['sampler']}_{s['steps']}" + (f"_ensemble{s['ensemble']}" if s["ensemble"] > 1 else "")
        pick[key] = {m: round(result["summary"][m], 4) for m in ("dice", "dice_5threshold", "iou", "hd95")}
    return {
        "name": "default",
        "task": "thyroid nodule segmentation in ultrasound (binary)",
        "data": {
            "dataset": "DDTI (Pedraza et al., SPIE 9287, 2015), nodule-centred 300x300 crops",
            "train": f"train split of split.csv less {len(config.get('training_data', {}).get('held_out_validation', []))} "
            "images of whole cases held out for validation",
            "evaluated_on": "test split of split.csv (132 images), metrics at the original 300x300",
        },
        "configuration": config["model"],
        "diffusion": config["diffusion"],
        "training": {
            "steps": training.get("steps"),
            "wall_time_minutes": wall_minutes or round(training.get("wall_time_s", 0) / 60, 1),
            "recipe": recipe,
            "mask_loss_weight": training.get("config", {}).get("mask_loss_weight", 0.0),
            "hardware": "2-core x86-64 CPU, 1 PyTorch thread, shared with other work",
            "batch_size": training.get("config", {}).get("batch_size"),
            "learning_rate": training.get("config", {}).get("learning_rate"),
            "data_digest": training.get("data_digest"),
        },
        "test_metrics": pick,
        "baselines": {k: round(v["dice"], 4) for k, v in quality["baselines"].items()},
        "benchmark_environment": quality["environment"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path, help="the run's final checkpoint folder")
    parser.add_argument("quality", type=Path, help="bench_quality.py's JSON for that checkpoint")
    parser.add_argument("--recipe", default=None, help="how it was trained, in words (for the card)")
    parser.add_argument(
        "--wall-minutes",
        type=float,
        default=None,
        help="training minutes to report when the run's own clock is not it",
    )
    args = parser.parse_args()
    run, quality_path = args.run, args.quality
    load_checkpoint(run)  # refuse to ship anything that does not load
    config = read_checkpoint_config(run)
    quality = json.loads(quality_path.read_text())
    staging = DESTINATION.with_name(".default_model.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(run / WEIGHTS_FILE, staging / WEIGHTS_FILE)
    config.update(
        {
            "version": "default",
            "parent_version": None,
            "description": "Shipped default: DDTI thyroid nodules, CPU-trained",
        }
    )
    model_card = card(config, quality, args.recipe, args.wall_minutes)
    config.setdefault("metrics", {})["ddti_test"] = model_card["test_metrics"]
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    (staging / "model_card.json").write_text(json.dumps(model_card, indent=2))
    shutil.rmtree(DESTINATION, ignore_errors=True)
    staging.rename(DESTINATION)
    load_checkpoint(DESTINATION)
    print(f"shipped {DESTINATION} ({(DESTINATION / WEIGHTS_FILE).stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
