"""Choose the default model's prompt crop margin on DDTI *training* images (never the test split).

    nice -n 5 python benchmarks/select_crop_margin.py --model default

Builds 3x3 mosaics of 300x300 training crops (the 30 held-out validation cases first, then
further training crops), prompts each tile with its mask's bounding box, and scores the
box-prompted Dice for several margins (fraction of the box's size on each side, ``box``
crops). DDIM 3 steps, ``--ensemble`` members (1 by default, to keep it cheap on a CPU).
The margin with the best Dice is the one recorded in the shipped model's crop rule.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from _common import environment, write_result
from bench_prompts import TILE, build_mosaics, load_model, tile_dice

from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import CropRule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--images", type=int, default=90)
    parser.add_argument("--margins", type=float, nargs="*", default=[0.2, 0.29, 0.4, 0.5, 0.6, 0.75])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ensemble", type=int, default=1)
    parser.add_argument("--margins-px", type=float, nargs="*", default=[], help="absolute margins to try too")
    parser.add_argument("--native", action="store_true", help="tiles at their original frame size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = load_model(args.model)
    segmenter = Segmenter(checkpoint, device=args.device)
    held_out = list(checkpoint.metadata.get("training_data", {}).get("held_out_validation", []))
    with open(args.data / "split.csv", newline="") as stream:
        train = sorted(row[0] for row in csv.reader(stream) if len(row) == 2 and row[1].strip() == "train")
    names = (held_out + [n for n in train if n not in held_out])[: args.images]
    mosaics = build_mosaics(args.data, names, seed=0, native=args.native)
    settings = SamplingSettings(sampler="ddim", steps=3, ensemble=args.ensemble, seed=0)
    scores = {}
    rules = {str(m): CropRule(margin_fraction=m) for m in args.margins}
    rules.update({f"{m:g}px": CropRule(margin_fraction=0.0, margin_px=m) for m in args.margins_px})
    for margin, rule in rules.items():
        values = []
        for mosaic in mosaics:
            tiles = [t for t in mosaic["tiles"] if t["box"] is not None]
            labels = segment_prompts(
                segmenter, mosaic["image"], [t["box"] for t in tiles], settings, crop_rule=rule
            )
            values += [tile_dice(labels.labels, t) for t in tiles]
        scores[str(margin)] = float(np.mean(values))
        print(
            f"margin {margin}: Dice {scores[str(margin)]:.4f} over {len(values)} training tiles", flush=True
        )
    best = max(scores, key=scores.get)
    write_result(
        "prompt_margin_selection_ddti" + ("_native" if args.native else ""),
        {
            "what": "box-prompted Dice on 3x3 mosaics of DDTI training crops, per crop margin",
            "tile": TILE,
            "images": names,
            "settings": settings.to_dict(),
            "dice_by_margin": scores,
            "best_margin": best,
            "native": args.native,
            "environment": environment(args.device),
        },
    )
    print(json.dumps({"best_margin": best}))


if __name__ == "__main__":
    main()
