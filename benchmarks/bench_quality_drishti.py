"""Optic disc and cup quality on Drishti-GS1's Test split (51 fundus crops), beside a no-model blob.

    python benchmarks/bench_quality_drishti.py --model drishti-disc-cup

The model is a 3-class one (0 background, 1 disc rim, 2 cup, as the masks are labelled).
Fundus papers report the **optic disc** (rim + cup) and the **optic cup**, so those are
scored here, each at the image's own 512x512: Dice at the model's argmax, IoU, HD95 in
pixels, and the cup-to-disc area ratio error. Beside them, the no-model baseline: the
majority label map of the Training masks, which scores well because the crops are
disc-centred (as the DDTI crops are nodule-centred).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, write_result
from bench_quality import load, parse_quality_arguments, quality_parser

from medsegdiff_training.data import read_array, read_mask
from medsegdiff_training.inference import SamplingSettings
from medsegdiff_training.metrics import dice, hd95, iou, summarise_scores
from medsegdiff_training.preprocess import resize

DEFAULT_PLANS = ["ddim:1", "ddim:3", "ddim:5", "ddim:10", "dpm++:5", "ddpm:100", "ddim:3:5", "ddim:5:5"]
STRUCTURES = {"disc": lambda labels: labels >= 1, "cup": lambda labels: labels == 2}


def structure_scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, IoU and HD95 of the optic disc and cup, and the error of the cup-to-disc area ratio."""
    result: dict[str, float] = {}
    for name, select in STRUCTURES.items():
        p, t = select(labels), select(truth)
        result[f"{name}_dice"], result[f"{name}_iou"], result[f"{name}_hd95"] = (
            dice(p, t),
            iou(p, t),
            hd95(p, t),
        )

    def ratio(m: np.ndarray) -> float:
        return float((m == 2).sum() / max((m >= 1).sum(), 1))

    result["cdr_area_error"] = abs(ratio(labels) - ratio(truth))
    return result


def majority_map(train_masks: list[np.ndarray], size: tuple[int, int] = (128, 128)) -> torch.Tensor:
    """Per-pixel class frequencies of the training masks, at ``size``."""
    frequencies = torch.zeros(3, *size)
    for mask in train_masks:
        one_hot = torch.from_numpy(np.stack([mask == k for k in range(3)]).astype(np.float32))
        frequencies += resize(one_hot[None], size)[0]
    return frequencies / len(train_masks)


def main() -> None:
    data = Path("../shared/data/drishti_roi")
    parser = quality_parser(__doc__, "drishti-disc-cup", data, DEFAULT_PLANS, 17, "quality_drishti")
    args, test, train = parse_quality_arguments(parser, "Test", "Training")
    truths = [read_mask(p.mask) for p in test]
    frequencies = majority_map([read_mask(p.mask) for p in train])
    blob = [resize(frequencies[None], t.shape)[0].argmax(0).numpy() for t in truths]
    baselines = {
        "majority_map": summarise_scores([structure_scores(b, t) for b, t in zip(blob, truths, strict=True)])
    }
    print(
        f"majority map: disc {baselines['majority_map']['disc_dice']:.4f}, cup {baselines['majority_map']['cup_dice']:.4f}"
    )
    segmenter = load(args.model, args.device)
    if segmenter.config.num_classes != 3:
        parser.error(f"{args.model} has {segmenter.config.num_classes} classes; this benchmark needs 3")
    results = []
    for plan in args.plans:
        sampler, steps, *rest = plan.split(":")
        settings = SamplingSettings(
            sampler=sampler, steps=int(steps), ensemble=int(rest[0]) if rest else 1, seed=0
        )
        batch = max(1, args.batch_size // settings.ensemble)
        started, scores = time.perf_counter(), []
        for start in range(0, len(test), batch):
            images = [read_array(p.image) for p in test[start : start + batch]]
            batch_truths = truths[start : start + batch]
            results_batch = segmenter.segment_batch(images, settings, [t.shape for t in batch_truths])
            for result, truth in zip(results_batch, batch_truths, strict=True):
                scores.append(structure_scores(result.labels, truth))
        seconds = time.perf_counter() - started
        summary = summarise_scores(scores)
        results.append({"settings": settings.to_dict(), "summary": summary, "seconds": seconds})
        print(
            f"{plan}: disc Dice {summary['disc_dice']:.4f}, cup Dice {summary['cup_dice']:.4f}, "
            f"CDR error {summary['cdr_area_error']:.3f}, {seconds:.0f} s",
            flush=True,
        )
        write_result(
            args.name,
            {
                "environment": environment(segmenter.device),
                "model": args.model,
                "data": "Drishti-GS1 Test split (51 images, 512x512)",
                "baselines": baselines,
                "results": results,
            },
        )


if __name__ == "__main__":
    main()
