"""The annotation loop on a new domain: Drishti-GS1 optic discs for the ultrasound default.

    .venv/bin/python benchmarks/bench_annotation_loop.py            # ~20 CPU-minutes
    .venv/bin/python benchmarks/bench_annotation_loop.py --data ../shared/data/busi --split train \
        --finetune-every 20 --threads 1 --out annotation_loop_busi   # full frames, ~30 CPU-minutes

An annotator works through Drishti-GS1's 50 *Training* fundus crops in file order with
the shipped ``default`` model (binary, grey, trained on thyroid ultrasound); the object
is the optic disc (rim + cup: every non-zero label). The expert masks stand in for the
annotator's corrections (``simulate_annotation``, the code behind ``medsegdiff
simulate-annotation``, which drives the ``AnnotationSession`` that the napari queue widget
drives). Three queues over the same images:

- **with the loop**: fine-tune every 10 accepted images, at most 3 CPU-minutes each (the
  process's CPU time, so a busy machine gets the same work done, only later), switching
  to the child when its held-out Dice beats its parent's;
- **without the loop**: the same queue, the default model throughout;
- **trivial, no model**: each image pre-segmented with the thresholded mean of the masks
  accepted before it (the first image gets nothing) — on disc-centred crops this alone is
  strong, so the model's worth is its distance above it.

Per block of 10 images: the mean pre-segmentation Dice and the mean fraction of pixels
the annotator had to change. Writes ``results/annotation_loop_drishti.json`` and the plot
``docs/images/annotation-loop-drishti.png``.

``--data`` / ``--split`` replay another dataset's split the same way (busi's 160 *train*
full-size ultrasound frames, a lesion of 9 % of the frame on average); blocks are
``--finetune-every`` images long unless ``--block`` says otherwise, and the plot goes to
``docs/images/<out with dashes>.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "drishti_roi"
PLOT = HERE.parent / "docs" / "images" / "annotation-loop-drishti.png"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DATA, help="the dataset folder (images/, masks/, split.csv)"
    )
    parser.add_argument("--split", default="Training", help="the split of split.csv to replay")
    parser.add_argument(
        "--block", type=int, default=None, help="images per block (default: --finetune-every)"
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--finetune-every", type=int, default=10)
    parser.add_argument("--minutes-per-finetune", type=float, default=3.0)
    parser.add_argument("--steps-per-finetune", type=int, default=None, help="a step budget too")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="annotation_loop_drishti", help="results/NAME.json")
    parser.add_argument("--plot", type=Path, default=None, help="default: docs/images/<out>.png")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="keep the versions and stores here (default: a temporary folder)",
    )
    args = parser.parse_args(argv)
    args.block = args.block or args.finetune_every or 10
    if args.plot is None:
        args.plot = (
            PLOT
            if args.out == "annotation_loop_drishti"
            else PLOT.with_name(args.out.replace("_", "-") + ".png")
        )
    return args


def fixed_mean_queue(pairs, block: int = 10) -> list[dict]:
    """The no-model queue: image k pre-segmented by the thresholded mean of masks 1..k-1."""
    import numpy as np
    import torch

    from medsegdiff_training.data import read_mask
    from medsegdiff_training.metrics import dice
    from medsegdiff_training.preprocess import resize

    records, total = [], None
    for position, pair in enumerate(pairs, start=1):
        truth = read_mask(pair.mask) > 0
        if total is None:
            guess = np.zeros_like(truth)
        else:
            mean = total / (position - 1)
            guess = resize(torch.from_numpy(mean)[None, None], truth.shape)[0, 0].numpy() > 0.5
        records.append(
            {
                "name": pair.name,
                "position": position,
                "dice": dice(guess, truth),
                "fraction_changed": float(np.mean(guess != truth)),
            }
        )
        small = resize(torch.from_numpy(truth.astype(np.float32))[None, None], (128, 128))[0, 0].numpy()
        total = small if total is None else total + small
    return records


def blocks(records: list[dict], size: int = 10) -> list[dict]:
    import numpy as np

    return [
        {
            "images": f"{start + 1}-{start + len(records[start : start + size])}",
            "mean_dice": float(np.mean([r["dice"] for r in records[start : start + size]])),
            "mean_fraction_changed": float(
                np.mean([r["fraction_changed"] for r in records[start : start + size]])
            ),
        }
        for start in range(0, len(records), size)
    ]


def draw_plot(series: dict[str, list[dict]], path: Path, block: int = 10) -> None:
    """Fraction of pixels changed per image (and its block means) for each queue, as a PNG."""
    from PIL import Image, ImageDraw

    colours = {"with the loop": (0, 150, 200), "without the loop": (220, 90, 40), "no model": (150, 150, 150)}
    width, height, left, bottom, top, right = 900, 420, 70, 50, 40, 200
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    count = max(len(records) for records in series.values())
    peak = max(r["fraction_changed"] for records in series.values() for r in records) * 1.1 or 1.0

    def point(index: float, value: float) -> tuple[float, float]:
        x = left + (index - 0.5) / count * (width - left - right)
        return x, height - bottom - value / peak * (height - bottom - top)

    draw.line([(left, top), (left, height - bottom), (width - right, height - bottom)], fill="black")
    for tick in range(0, 6):
        value = peak * tick / 5
        _, y = point(0.5, value)
        draw.text((8, y - 6), f"{100 * value:.1f}%", fill="black")
    for tick in range(block, count + 1, block):
        x, _ = point(tick, 0)
        draw.text((x - 8, height - bottom + 6), str(tick), fill="black")
    draw.text(
        (left, 10),
        f"pixels the annotator changes, per image (dots) and per block of {block} (lines)",
        fill="black",
    )
    draw.text((width // 2 - 60, height - 20), "accepted images (queue position)", fill="black")
    for row, (name, records) in enumerate(series.items()):
        colour = colours.get(name, (0, 0, 0))
        for record in records:
            x, y = point(record["position"], record["fraction_changed"])
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        for part in blocks(records, block):
            first, last = (int(v) for v in part["images"].split("-"))
            draw.line([point(first - 0.4, part["mean_fraction_changed"]),
                       point(last + 0.4, part["mean_fraction_changed"])], fill=colour, width=3)  # fmt: skip
        draw.rectangle(
            [width - right + 15, top + 20 * row, width - right + 30, top + 20 * row + 10], fill=colour
        )
        draw.text((width - right + 36, top + 20 * row - 1), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data}", file=sys.stderr)
        return 1
    # a registry and store of its own: the user's models and corrections stay untouched
    os.environ["MEDSEGDIFF_HOME"] = str(args.home or tempfile.mkdtemp(prefix="bench-annotation-loop-"))
    import torch
    from _common import environment, write_result

    from medsegdiff_training.annotation_session import SESSION_FINETUNE
    from medsegdiff_training.annotation_simulation import simulate_annotation
    from medsegdiff_training.corrections import CorrectionsStore
    from medsegdiff_training.data import find_pairs
    from medsegdiff_training.inference import SamplingSettings
    from medsegdiff_training.registry import ModelRegistry

    torch.set_num_threads(args.threads)
    pairs = find_pairs(args.data / "images", args.data / "masks", args.data / "split.csv", args.split)
    pairs = pairs[: args.limit or None]
    settings = SamplingSettings(sampler="ddim", steps=3, ensemble=5, seed=0)
    registry = ModelRegistry()
    home = Path(os.environ["MEDSEGDIFF_HOME"])
    # the budget is CPU time (the process's, every thread): the same work on a busy machine
    finetune = SESSION_FINETUNE.replace(
        steps=args.steps_per_finetune, minutes=args.minutes_per_finetune, clock="cpu"
    )
    runs = {}
    for name, every in (("with the loop", args.finetune_every), ("without the loop", 0)):
        started = time.perf_counter()
        result = simulate_annotation(
            pairs,
            store=CorrectionsStore(home / f"store-{every}"),
            registry=registry,
            model=args.model,
            settings=settings,
            finetune_every=every,
            finetune=finetune,
            on_image=lambda r: print(
                f"  {r['position']:3d} {r['name']}: Dice {r['dice']:.3f} changed {100 * r['fraction_changed']:.2f}% "
                f"({r['model_version']})",
                flush=True,
            ),
            on_finetune=lambda f: print(f"  fine-tune: {f}", flush=True),
        )
        runs[name] = {**result.to_dict(args.block), "seconds": round(time.perf_counter() - started, 1)}
        print(name, runs[name]["blocks"], flush=True)
    trivial = fixed_mean_queue(pairs)
    runs["no model"] = {"images": trivial, "blocks": blocks(trivial, args.block)}
    last_with = runs["with the loop"]["blocks"][-1]["mean_fraction_changed"]
    last_without = runs["without the loop"]["blocks"][-1]["mean_fraction_changed"]
    payload = {
        "benchmark": args.out,
        "environment": environment("cpu"),
        "data": f"{args.data.name} {args.split} split (every non-zero label is the object), file order",
        "block": args.block,
        "model": args.model,
        "settings": settings.to_dict(),
        "finetune_every": args.finetune_every,
        "minutes_per_finetune": args.minutes_per_finetune,
        "steps_per_finetune": args.steps_per_finetune,
        "last_block_changed_ratio": last_with / last_without if last_without else None,
        "runs": runs,
    }
    write_result(args.out, payload)
    draw_plot({name: run["images"] for name, run in runs.items()}, args.plot, args.block)
    print(
        f"last block: {100 * last_with:.2f}% of pixels changed with the loop, {100 * last_without:.2f}% without"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
