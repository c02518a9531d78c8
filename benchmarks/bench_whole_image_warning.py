"""How often the "probably poor" warning of a whole-image run fires where it should.

    nice -n 5 python benchmarks/bench_whole_image_warning.py --threads 1      # segment, record, choose
    python benchmarks/bench_whole_image_warning.py --refit                    # choose again, no model

Every image of the six shared datasets (``../shared/data``; binary: any non-zero label is the
object, so Drishti-GS1 gives the optic disc) is segmented whole by the shipped ``default``
model with its recommended sampling (DDIM 3 steps x ensemble 5, seed 0), and its whole-image
Dice and the rule's signals (:func:`medsegdiff_training.whole_image_warning.answer_signals`:
the ensemble's disagreement, the share called object, the size, colour and intensity
histogram against ``default``'s training images) are recorded, for the **train** and the
**test** splits.

The thresholds of the rule (:class:`~medsegdiff_training.whole_image_warning.WarningRule`)
are chosen on the **train** records alone, over the grid below: of the rules that warn on at
least 95 % of the train images with Dice < 0.5 (a margin over the goal of 90 %), the one
that warns on the fewest with Dice >= 0.8 (ties: the most warnings on the poor ones). They
are then reported on the **test** records: the share of the images with Dice < 0.5 that get
the warning (goal >= 90 %) and of those with Dice >= 0.8 (goal <= 10 %), beside two trivial
rules: warn on every image, and warn on every image whose size is not the training images'.
The rates are computed with the core's own :func:`judge_signals` on every record.

Results: ``benchmarks/results/whole_image_warning.json`` (rendered by ``make_table.py``), and
every image's Dice and signals in ``whole_image_warning_records.json``, so that ``--refit``
chooses again without running the model.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, environment, write_result
from bench_general import TEST_SPLIT, TRAIN_SPLIT, read_split

from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.metrics import dice
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.whole_image_warning import (
    DEFAULT_RULE,
    AnswerSignals,
    TrainingLook,
    WarningRule,
    answer_signals,
    judge_signals,
)

DATASETS = ("ddti", "drishti_roi", "busi", "ph2", "dsb2018", "lgg_mri")
POOR, GOOD = 0.5, 0.8  # whole-image Dice below POOR should warn; at or above GOOD should not
NAME = "whole_image_warning"
RECORDS = "whole_image_warning_records"  # every image's Dice and signals, as columns

# The grid the thresholds are chosen from (on the train records only).
GRID = {
    "disagreement": [round(float(x), 2) for x in np.arange(0.12, 0.41, 0.02)],
    "min_object_share": [0.0, 0.01, 0.02, 0.05],
    "max_object_share": [0.6, 0.7, 0.8, 1.01],
    "histogram_distance": [round(float(x), 2) for x in np.arange(0.3, 0.81, 0.05)],
    "size_factor": [1.05, 1.1, 1.12, 1.15, 1.2, 1.25, 1.5, 2.0],
    "size_disagreement": [None, *(round(float(x), 2) for x in np.arange(0.0, 0.2, 0.02))],
    "colour_disagreement": [None, 0.0, 0.1, 0.15, 0.2],
}
MIN_HIT = 0.95  # the share of poor train images the chosen rule must warn on


def write_records(records: list[dict], env: dict) -> None:
    """The per-image records as columns, one line each (the file stays small and diffable)."""
    columns = {
        "dataset": [r["dataset"] for r in records],
        "split": [r["split"] for r in records],
        "name": [r["name"] for r in records],
        "dice": [r["dice"] for r in records],
        "cpu_s": [r["cpu_s"] for r in records],
        **{key: [_rounded(r["signals"][key]) for r in records] for key in records[0]["signals"]},
    }
    lines = [f"  {json.dumps(key)}: {json.dumps(values)}" for key, values in columns.items()]
    text = "{\n" + f'  "environment": {json.dumps(env)},\n' + ",\n".join(lines) + "\n}\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{RECORDS}.json").write_text(text)
    print(f"wrote {RESULTS / f'{RECORDS}.json'}")


def _rounded(value):
    return round(value, 5) if isinstance(value, float) else value


def read_records() -> tuple[list[dict], dict]:
    """The records :func:`write_records` wrote, and the environment they were measured in."""
    columns = json.loads((RESULTS / f"{RECORDS}.json").read_text())
    env = columns.pop("environment")
    plain = ("dataset", "split", "name", "dice", "cpu_s")
    signals = [key for key in columns if key not in plain]
    records = [
        {
            **{key: columns[key][i] for key in plain},
            "signals": {key: columns[key][i] for key in signals},
        }
        for i in range(len(columns["dice"]))
    ]
    return records, env


def collect(segmenter: Segmenter, data: Path, look: TrainingLook, settings: SamplingSettings) -> list[dict]:
    """One record per image of every split: dataset, split, name, Dice, signals, seconds."""
    records = []
    for dataset in DATASETS:
        for split_name, split in (
            ("train", TRAIN_SPLIT.get(dataset, "train")),
            ("test", TEST_SPLIT.get(dataset, "test")),
        ):
            for name, image, mask in read_split(data / dataset, split):
                started = time.process_time()
                result = segmenter.segment(image, settings)
                seconds = time.process_time() - started
                signals = answer_signals(image, result.probabilities, result.uncertainty, look)
                records.append(
                    {
                        "dataset": dataset,
                        "split": split_name,
                        "name": name,
                        "dice": round(dice(result.labels > 0, mask), 4),
                        "signals": signals.to_dict(),
                        "cpu_s": round(seconds, 3),
                    }
                )
            done = [r for r in records if r["dataset"] == dataset]
            print(
                f"{dataset}: {len(done)} images, mean Dice {np.mean([r['dice'] for r in done]):.3f}",
                flush=True,
            )
    return records


def rates(records: list[dict], rule: WarningRule | None) -> dict:
    """Warning rates on the poor (Dice < 0.5) and the good (Dice >= 0.8) images; None warns always."""

    def warns(record: dict) -> bool:
        return True if rule is None else judge_signals(AnswerSignals(**record["signals"]), rule).poor

    warned = [warns(r) for r in records]
    poor = [w for w, r in zip(warned, records, strict=True) if r["dice"] < POOR]
    good = [w for w, r in zip(warned, records, strict=True) if r["dice"] >= GOOD]
    return {
        "poor_images": len(poor),
        "good_images": len(good),
        "warned_on_poor": float(np.mean(poor)) if poor else None,
        "warned_on_good": float(np.mean(good)) if good else None,
        "warned_overall": float(np.mean(warned)) if records else None,
    }


def _warnings(columns: dict[str, np.ndarray], rule: WarningRule) -> np.ndarray:
    """:func:`judge_signals` on every record at once (the search's fast path; the reported
    rates are recomputed with ``judge_signals`` itself)."""
    dis, ensemble = columns["disagreement"], columns["ensemble"]
    warned = (ensemble & (dis > rule.disagreement)) | (columns["object_share"] < rule.min_object_share)
    warned |= columns["object_share"] > rule.max_object_share
    warned |= columns["histogram_distance"] > rule.histogram_distance
    agree = lambda threshold: ~ensemble | (dis >= threshold)  # noqa: E731
    if rule.size_disagreement is not None:
        ratio = columns["size_ratio"]
        wrong = (ratio > rule.size_factor) | (ratio < 1 / rule.size_factor)
        warned |= wrong & agree(rule.size_disagreement)
    if rule.colour_disagreement is not None:
        warned |= columns["colour"] & agree(rule.colour_disagreement)
    return warned


def choose(records: list[dict]) -> WarningRule:
    """Of the grid's rules warning on >= MIN_HIT of the poor records, the fewest warnings on good ones."""
    columns = {
        key: np.array(
            [r["signals"][key] for r in records], dtype=bool if key in ("colour", "ensemble") else float
        )
        for key in ("disagreement", "object_share", "size_ratio", "colour", "histogram_distance", "ensemble")
    }
    dice = np.array([r["dice"] for r in records])
    poor, good = dice < POOR, dice >= GOOD
    best, best_key = None, None
    for values in itertools.product(*GRID.values()):
        rule = WarningRule(**dict(zip(GRID, values, strict=True)))
        warned = _warnings(columns, rule)
        hit, false_alarms = warned[poor].mean(), warned[good].mean()
        if hit < MIN_HIT:
            continue
        key = (-round(float(false_alarms), 6), round(float(hit), 6))
        if best_key is None or key > best_key:
            best, best_key = rule, key
    assert best is not None, f"no rule of the grid warns on {MIN_HIT:.0%} of the poor train images"
    return best


def report(records: list[dict], rule: WarningRule) -> dict:
    """Rates of the rule and the trivial ones, per split, overall and per dataset."""
    size_only = WarningRule(
        disagreement=float("inf"),
        min_object_share=0.0,
        max_object_share=1.01,
        histogram_distance=float("inf"),
        size_factor=1.0,
        size_disagreement=0.0,
        colour_disagreement=None,
    )
    found: dict = {}
    for split in ("train", "test"):
        chosen = [r for r in records if r["split"] == split]
        found[split] = {
            "all": {
                "rule": rates(chosen, rule),
                "always": rates(chosen, None),
                "size_only": rates(chosen, size_only),
            },
            "datasets": {
                dataset: {
                    "images": len([r for r in chosen if r["dataset"] == dataset]),
                    "mean_dice": float(np.mean([r["dice"] for r in chosen if r["dataset"] == dataset])),
                    "rule": rates([r for r in chosen if r["dataset"] == dataset], rule),
                }
                for dataset in DATASETS
            },
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--refit", action="store_true", help="choose the thresholds again from the saved records"
    )
    parser.add_argument("--collect-only", action="store_true", help="record the signals, choose nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = ModelRegistry().load(args.model)
    look = TrainingLook.of_checkpoint(checkpoint.metadata)
    assert look is not None, f"{args.model} records no training_data.image_look"
    settings = SamplingSettings()  # the recommended sampling: DDIM 3 x ensemble 5, seed 0
    if args.refit:
        records, env = read_records()
    else:
        records = collect(Segmenter(checkpoint, device="cpu"), args.data, look, settings)
        env = environment("cpu")
        write_records(records, env)  # kept before choosing
        if args.collect_only:
            return
    rule = choose([r for r in records if r["split"] == "train"])
    found = report(records, rule)
    for split, numbers in found.items():
        print(split, json.dumps(numbers["all"]["rule"]))
    write_result(
        NAME,
        {
            "benchmark": "the whole-image 'probably poor' warning: warned on Dice < 0.5, on Dice >= 0.8",
            "model": args.model,
            "training_look": look.to_dict(),
            "settings": settings.to_dict(),
            "chosen_on": f"train splits: >= {MIN_HIT:.0%} warned on Dice < {POOR}, then fewest on Dice >= {GOOD}",
            "rule": rule.to_dict(),
            "core_rule_is_the_chosen_one": rule == DEFAULT_RULE,
            "grid": GRID,
            "results": found,
            "environment": env,
            "records": f"{RECORDS}.json",
        },
    )


if __name__ == "__main__":
    main()
