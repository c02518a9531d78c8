"""Copy a finished training run into the package as a shipped, read-only model.

    python scripts/package_model.py ddti runs/default/final benchmarks/results/quality_ddti.json \
        --recipe "how the run was trained, in words"
    python scripts/package_model.py drishti runs/drishti/final benchmarks/results/quality_drishti.json
    python scripts/package_model.py lgg runs/lgg-flair/final benchmarks/results/quality_lgg.json
    python scripts/package_model.py general runs/general/final benchmarks/results/general_box_prompts.json

``ddti`` becomes the ``default`` model (``training/medsegdiff_training/default_model/``);
``drishti`` becomes ``drishti-disc-cup``, ``lgg`` becomes ``lgg-flair`` and ``general`` (the
box-prompt model, scored by ``bench_general.py``) becomes ``general`` (under
``.../shipped_models/``). Each gets model.safetensors (copied byte for byte), config.json (with its
version name) and model_card.json with the test-split figures taken from the benchmark's JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from medsegdiff_training.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, read_checkpoint_config
from medsegdiff_training.registry import DEFAULT_MODEL_DIR, SHIPPED_MODELS_DIR

TASKS = {
    "ddti": {
        "name": "default",
        "destination": DEFAULT_MODEL_DIR,
        "description": "Shipped default: DDTI thyroid nodules, CPU-trained",
        "task": "thyroid nodule segmentation in ultrasound (binary)",
        "dataset": "DDTI (Pedraza et al., SPIE 9287, 2015), nodule-centred 300x300 crops",
        "evaluated_on": "test split of split.csv (132 images), metrics at the original 300x300",
        "metrics": ("dice", "dice_5threshold", "iou", "hd95"),
        "metrics_key": "ddti_test",
        "baseline_metrics": ("dice",),
    },
    "drishti": {
        "name": "drishti-disc-cup",
        "destination": SHIPPED_MODELS_DIR / "drishti-disc-cup",
        "description": "Optic disc and cup in fundus photographs (Drishti-GS1), CPU-trained",
        "task": "optic disc rim and cup in fundus photographs (3 classes: background, rim, cup)",
        "dataset": "Drishti-GS1 (Sivaswamy et al., ISBI 2014), disc-centred 512x512 crops",
        "evaluated_on": "Test split of split.csv (51 images), optic disc = rim + cup, at 512x512",
        "metrics": (
            "disc_dice",
            "cup_dice",
            "disc_iou",
            "cup_iou",
            "disc_hd95",
            "cup_hd95",
            "cdr_area_error",
        ),
        "metrics_key": "drishti_test",
        "baseline_metrics": ("disc_dice", "cup_dice"),
    },
    "lgg": {
        "name": "lgg-flair",
        "destination": SHIPPED_MODELS_DIR / "lgg-flair",
        "description": "Brain MRI FLAIR abnormality of lower-grade gliomas (TCGA-LGG), CPU-trained",
        "task": "FLAIR abnormality (lower-grade glioma) in whole axial brain MRI FLAIR slices (binary)",
        "dataset": (
            "LGG MRI: TCGA-LGG FLAIR slices with abnormality masks (Buda et al., Computers in Biology "
            "and Medicine 109:218-225, 2019), 256x256, split by patient (243 train / 57 test slices)"
        ),
        "evaluated_on": "test split of split.csv (57 slices of 22 patients), whole slices at 256x256",
        "metrics": ("dice", "dice_5threshold", "iou", "hd95"),
        "metrics_key": "lgg_test",
        "baseline_metrics": ("dice", "iou"),
        "terms": (
            "Non-commercial research use only: the upstream dataset is listed as CC BY-NC-SA 4.0 and "
            "the TCGA-LGG images follow the TCIA data usage policy. Cite Buda et al. 2019."
        ),
        "hardware": "Intel(R) Xeon(R) Processor (2 cores, AMX), 1 PyTorch thread, shared with other work",
        "case_of": lambda name: name.rsplit("_", 1)[0],  # a slice's patient
    },
    "general": {
        "name": "general",
        "destination": SHIPPED_MODELS_DIR / "general",
        "description": (
            "Box prompts on six domains (breast and thyroid ultrasound, dermoscopy, brain MRI, nuclei, "
            "fundus), CPU-trained"
        ),
        "task": (
            "the object inside a drawn box (binary), in any image; trained on six domains. For whole "
            "images without a prompt use a domain's own model (default, drishti-disc-cup, lgg-flair)"
        ),
        "dataset": (
            "the training splits of busi (Al-Dhabyani et al. 2020), ph2 (Mendonca et al. 2013), lgg_mri "
            "(Buda et al. 2019), ddti (Pedraza et al. 2015), dsb2018 (Caicedo et al. 2019) and "
            "drishti_roi (Sivaswamy et al. 2014, optic disc) as listed in scripts/general_datasets.csv, "
            "mixed by weight; crops around each object's box, jittered, at many scales"
        ),
        "evaluated_on": (
            "the test splits of the six datasets, one box per connected component of the expert mask "
            "(bench_general.py): exact boxes and boxes loosened by up to 10 % / 20 % per side"
        ),
        "metrics_key": "general_box_prompts",
        "terms": (
            "Research use only: each training dataset keeps its own terms (see ../shared/data/*/SOURCE.md); "
            "lgg_mri is non-commercial (CC BY-NC-SA 4.0 upstream), ph2 is for research and benchmarking."
        ),
        "hardware": "Intel(R) Xeon(R) Processor (2 cores, AMX), 1 PyTorch thread, shared with other work",
        "clip_to_box": True,  # a drawn box bounds its answer (measured: +0.5 to +0.9 Dice, exact boxes)
    },
}


def box_prompt_metrics(quality: dict) -> tuple[dict, dict]:
    """bench_general.py's JSON as a card's test figures and baselines, per dataset."""
    figures, baselines = {}, {}
    for name, found in quality["datasets"].items():
        summary = found["summary"]
        figures[name] = {
            "images": found["images"],
            "objects": found["objects"],
            **{v: round(summary[v], 4) for v in ("exact", "loose10", "loose20")},
        }
        baselines[name] = {
            f"{v}_ellipse": round(summary[f"{v}_ellipse"], 4) for v in ("exact", "loose10", "loose20")
        }
        if summary.get("fixed_blob") is not None:
            baselines[name]["whole_image_fixed_blob"] = round(summary["fixed_blob"], 4)
    if quality.get("ddti_scale"):
        figures["ddti_scale"] = {
            factor: {k: round(v, 4) for k, v in entry.items() if isinstance(v, float)}
            for factor, entry in quality["ddti_scale"].items()
        }
    return figures, baselines


def sampler_metrics(task: dict, quality: dict) -> tuple[dict, dict]:
    """A quality benchmark's JSON (one result per sampler setting) as a card's test figures and baselines."""
    pick = {}
    for result in quality["results"]:
        s = result["settings"]
        key = f"{s['sampler']}_{s['steps']}" + (f"_ensemble{s['ensemble']}" if s["ensemble"] > 1 else "")
        pick[key] = {m: round(result["summary"][m], 4) for m in task["metrics"]}
    baselines = {
        name: {m: round(values[m], 4) for m in task["baseline_metrics"]}
        for name, values in quality["baselines"].items()
    }
    return pick, baselines


def earlier_stage(task: dict, config: dict, run: Path) -> dict | None:
    """The card's training record of the model this run trained on from, where that is the
    model this task ships (a shipped model trained further: its card keeps every stage)."""
    init_from = config.get("training", {}).get("init_from") or {}
    card_file = task["destination"] / "model_card.json"
    if init_from.get("version") != task["name"] or not card_file.is_file():
        return None
    if (task["destination"] / WEIGHTS_FILE).read_bytes() == (run / WEIGHTS_FILE).read_bytes():
        raise SystemExit(
            f"{run} is shipped already and its card names it as the last stage: restore the earlier "
            f"{card_file.name} (git checkout) to package it again."
        )
    return json.loads(card_file.read_text())["training"]


def keep_training_data(config: dict, shipped: dict) -> None:
    """What the shipped model records about its training images (``training_data``, e.g. the
    whole-image warning's image look), kept when the new stage trained on the same images."""
    same = config.get("training", {}).get("datasets") == shipped.get("training", {}).get("datasets")
    if same and "training_data" in shipped and "training_data" not in config:
        config["training_data"] = shipped["training_data"]


def stages(before: dict | None, steps: int | None, clock_key: str, seconds: float) -> dict:
    """Steps and minutes (the trainer's elapsed time on the budget's clock: wall, or this
    process's CPU time) of this run, added to the earlier stage's where there is one."""
    minutes = round(seconds / 60, 1)
    if before is None:
        return {"steps": steps, clock_key: minutes}
    earlier = {k: v for k, v in before.items() if k != "stages"}
    return {
        "steps": (before.get("steps") or 0) + (steps or 0),
        clock_key: round((before.get(clock_key) or 0) + minutes, 1),
        "stages": [*before.get("stages", [earlier]), {"steps": steps, clock_key: minutes}],
    }


def card(
    task: dict, config: dict, quality: dict, recipe: str | None, precision: str | None, before: dict | None
) -> dict:
    training = config.get("training", {})
    train_config = training.get("config", {})
    pick, baselines = box_prompt_metrics(quality) if "datasets" in quality else sampler_metrics(task, quality)
    held_out = (
        config.get("training_data", {}).get("held_out_validation")
        or training.get("validation_images")
        or [name for source in training.get("datasets", []) for name in source.get("validation_images", [])]
    )
    clock = train_config.get("clock", "wall")
    return {
        "name": task["name"],
        "task": task["task"],
        **({"terms": task["terms"]} if "terms" in task else {}),
        "data": {
            "dataset": task["dataset"],
            "train": f"the training split less {len(held_out)} images held out for validation"
            + (
                f" (all slices of {len({task['case_of'](n) for n in held_out})} patients)"
                if "case_of" in task
                else ""
            ),
            "evaluated_on": task["evaluated_on"],
            **(
                {
                    "datasets": {
                        d["name"]: {"training_images": d["training_images"], "weight": d["weight"]}
                        for d in training["datasets"]
                    }
                }
                if training.get("datasets")
                else {}
            ),
        },
        "configuration": config["model"],
        "diffusion": config["diffusion"],
        "training": {
            **stages(before, training.get("steps"), f"{clock}_time_minutes", training.get("wall_time_s", 0)),
            "recipe": recipe,
            "mask_loss_weight": train_config.get("mask_loss_weight", 0.0),
            "precision": precision or training.get("precision", "float32"),
            "hardware": task.get("hardware", "2-core x86-64 CPU, 1 PyTorch thread, shared with other work"),
            "batch_size": train_config.get("batch_size"),
            "learning_rate": train_config.get("learning_rate"),
            "data_digest": training.get("data_digest"),
        },
        "test_metrics": pick,
        "baselines": baselines,
        **({"sampling": quality["settings"]} if "settings" in quality else {}),
        "benchmark_environment": quality["environment"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("run", type=Path, help="the run's final checkpoint folder")
    parser.add_argument("quality", type=Path, help="the quality benchmark's JSON for that checkpoint")
    parser.add_argument("--recipe", default=None, help="how it was trained, in words (for the card)")
    parser.add_argument(
        "--precision", default=None, help="training precision, for runs from before the trainer recorded it"
    )
    args = parser.parse_args()
    task = TASKS[args.task]
    destination: Path = task["destination"]
    load_checkpoint(args.run)  # refuse to ship anything that does not load
    config = read_checkpoint_config(args.run)
    before = earlier_stage(task, config, args.run)
    quality = json.loads(args.quality.read_text())
    staging = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(args.run / WEIGHTS_FILE, staging / WEIGHTS_FILE)
    config.update({"version": task["name"], "parent_version": None, "description": task["description"]})
    if before is not None:
        keep_training_data(config, json.loads((destination / CONFIG_FILE).read_text()))
    if task.get("clip_to_box"):
        config["preprocess"]["crop_rule"]["clip_to_box"] = True
    model_card = card(task, config, quality, args.recipe, args.precision, before)
    config.setdefault("metrics", {})[task["metrics_key"]] = model_card["test_metrics"]
    (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    (staging / "model_card.json").write_text(json.dumps(model_card, indent=2))
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)
    load_checkpoint(destination)
    print(f"shipped {destination} ({(destination / WEIGHTS_FILE).stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
