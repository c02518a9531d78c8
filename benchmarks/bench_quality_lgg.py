"""Brain MRI: the FLAIR abnormality of lower-grade gliomas on lgg_mri's test split (57 slices).

    python benchmarks/bench_quality_lgg.py --model lgg-flair --threads 1 [--unet runs/unet_lgg/unet.safetensors]

Whole-slice segmentation of 256x256 FLAIR slices (TCGA-LGG, Buda et al., Computers in Biology
and Medicine 109, 2019; 22 test patients none of whose slices were trained on). Dice, the
5-threshold Dice, IoU and HD95 in pixels, each the mean over slices at 256x256, for the
samplers at several step counts and an ensemble, with seconds; beside them the trivial
baselines — the fixed blob (the thresholded mean training mask: the tumours are small and
scattered, so it is empty) and everything-is-tumour — and the plain U-Net trained under the
same CPU budget (``unet_baseline.py``, records ``results/unet_baseline_lgg*.json``).
``--held-out`` scores the model's held-out validation patients of the train split instead,
for choosing settings without looking at the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _common import fixed_blob_baseline
from bench_quality import (
    held_out_split,
    load,
    parse_quality_arguments,
    quality_parser,
    score_plans,
    unet_baselines,
)

from medsegdiff_training.data import read_mask
from medsegdiff_training.metrics import score, summarise_scores
from medsegdiff_training.preprocess import check_label_map

DEFAULT_PLANS = ["ddim:1", "ddim:3", "ddim:5", "ddim:10", "dpm++:5", "ddpm:100", "ddim:3:5"]


def main() -> None:
    parser = quality_parser(
        __doc__, "lgg-flair", Path("../shared/data/lgg_mri"), DEFAULT_PLANS, 16, "quality_lgg"
    )
    parser.add_argument("--unet", type=Path, default=Path("runs/unet_lgg/unet.safetensors"))
    parser.add_argument("--held-out", action="store_true", help="score the held-out training patients")
    args, test, train = parse_quality_arguments(parser, "test", "train")
    segmenter = load(args.model, args.device)
    if args.held_out:
        test, train = held_out_split(parser, segmenter, train)
    what = "held-out validation patients of the train split" if args.held_out else "test split"
    args.data_description = f"LGG MRI FLAIR {what} ({len(test)} slices, 256x256)"
    truths = [check_label_map(read_mask(p.mask), 2) for p in test]
    baselines = {
        "fixed_blob": fixed_blob_baseline([check_label_map(read_mask(p.mask), 2) for p in train], truths),
        "all_foreground": summarise_scores([score(np.ones_like(t, np.uint8), t, 2) for t in truths]),
    }
    if not args.held_out:
        baselines.update(unet_baselines(args.unet, args.data, records="unet_baseline_lgg"))
    for name, summary in baselines.items():
        print(f"{name}: Dice {summary['dice']:.4f}", flush=True)
    score_plans(args, segmenter, test, baselines, [])


if __name__ == "__main__":
    main()
