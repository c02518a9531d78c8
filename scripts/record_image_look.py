"""Record what a model's training images look like in its checkpoint (``training_data.image_look``).

    python scripts/record_image_look.py training/medsegdiff_training/default_model \\
        --images ../shared/data/ddti/images --masks ../shared/data/ddti/masks \\
        --split-csv ../shared/data/ddti/split.csv --split train

The whole-image warning (:mod:`medsegdiff_training.whole_image_warning`) compares an image
with this record: the range of the training images' heights and widths, whether they have
colour, and their mean intensity histogram. ``config.json`` is rewritten in place (sorted
keys, two-space indent, as checkpoints are written); the weights are not touched. A model
trained on several datasets takes one ``--images``/``--masks``/``--split-csv`` set per dataset
(and one ``--split`` each where they differ).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medsegdiff_training.data.io import read_array
from medsegdiff_training.data.pairs import find_pairs
from medsegdiff_training.whole_image_warning import LOOK_KEY, TrainingLook


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a checkpoint folder (its config.json is updated)")
    parser.add_argument("--images", type=Path, nargs="+", required=True)
    parser.add_argument("--masks", type=Path, nargs="+", required=True)
    parser.add_argument("--split-csv", type=Path, nargs="*", default=[])
    parser.add_argument(
        "--split",
        nargs="+",
        default=["train"],
        help="the split the model was trained on: one, or one per --split-csv",
    )
    args = parser.parse_args()
    csvs = args.split_csv or [None] * len(args.images)
    splits = args.split * len(csvs) if len(args.split) == 1 else args.split
    images = []
    for folder, masks, csv, split in zip(args.images, args.masks, csvs, splits, strict=True):
        images += [read_array(pair.image) for pair in find_pairs(folder, masks, csv, split if csv else None)]
    look = TrainingLook.of_images(images)
    config = args.checkpoint / "config.json"
    document = json.loads(config.read_text())
    document.setdefault("training_data", {})[LOOK_KEY] = look.to_dict()
    config.write_text(json.dumps(document, indent=2, sort_keys=True))
    print(f"{config}: {len(images)} training images, {look.to_dict() | {'histogram': '...'}}")


if __name__ == "__main__":
    main()
