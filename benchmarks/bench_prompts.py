"""Box prompts on full-size frames built from DDTI test crops, beside crops, whole frames and ellipses.

    nice -n 5 python benchmarks/bench_prompts.py --model default

Each mosaic is 3x3 tiles of 300x300 (900x900), each tile a different image of DDTI's
*test* split (fixed shuffle; the last mosaic's empty tiles are black). The box of a tile is
the bounding box of its expert mask. Every figure is a mean over tiles, scored on the
tile's 300x300 region of the mosaic's label map (an object spilling into a neighbouring
tile counts against that tile):

- ``box``: box prompts, all of a mosaic's boxes in one sampler batch, the model's crop rule;
- ``crop``: the same images segmented as the 300x300 crops they are (the usual benchmark);
- ``whole_frame``: the whole 900x900 mosaic segmented at once, no prompts;
- ``ellipse``: the ellipse inscribed in each box, no model.

Tiles whose mask is empty get no box (nothing is predicted there under ``box`` and
``ellipse``); the headline compares the tiles with a nodule, the ``all tiles`` figures are
beside it. CPU time per object is the process time of box-prompted runs on the CPU with
one thread (``--cpu-timing-mosaics`` mosaics, all their boxes in one batch) over the number
of boxes; with ``--device cpu`` (the default) that is every mosaic.

``--margin`` replaces the model's recorded crop margin (to measure a candidate before it is
recorded); ``--device cuda`` scores on a GPU (the comparisons stay on one device).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment, write_result

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.data import read_array
from medsegdiff_training.data.io import read_mask
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.metrics import dice
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import Box, CropRule, inscribed_ellipse, mask_box, resize_bilinear

TILE, GRID = 300, 3


def test_names(data: Path) -> list[str]:
    with open(data / "split.csv", newline="") as stream:
        rows = [row for row in csv.reader(stream) if len(row) == 2 and row[1].strip() == "test"]
    return sorted(row[0] for row in rows)


def native_size(mask: np.ndarray) -> tuple[int, int]:
    """The crop's size in the original frame, from DDTI's rule (mask box + 30 px per side, resized to 300).

    A margin of ``m`` tile pixels is 30 original pixels, so the crop was ``300 * 30 / m``
    original pixels across (margins under 10 px, from crops clipped at the frame's edge,
    count as 10). Empty masks keep 300.
    """
    box = mask_box(mask)
    if box is None:
        return TILE, TILE
    margin_y = max((box.y0 + TILE - box.y1) / 2, 10.0)
    margin_x = max((box.x0 + TILE - box.x1) / 2, 10.0)
    return round(TILE * 30 / margin_y), round(TILE * 30 / margin_x)


def build_mosaics(data: Path, names: list[str], seed: int, native: bool = False) -> list[dict]:
    """3x3 mosaics of the crops (each at 300x300, or with ``native`` at its original size)."""
    order = np.random.default_rng(seed).permutation(len(names))
    per_mosaic = GRID * GRID
    mosaics = []
    for start in range(0, len(order), per_mosaic):
        tiles = []
        for index in order[start : start + per_mosaic]:
            name = names[index]
            tile_image = read_array(data / "images" / f"{name}.png").astype(np.float32)
            if tile_image.ndim == 3:
                tile_image = tile_image[..., 0]
            mask = read_mask(data / "masks" / f"{name}.gif") > 127
            assert tile_image.shape == mask.shape == (TILE, TILE), name
            placed_image, placed_mask = tile_image, mask
            if native:
                size = native_size(mask)
                placed_image = resize_bilinear(tile_image, size)
                placed_mask = resize_bilinear(mask.astype(np.float32), size) > 0.5
            tiles.append(
                {
                    "name": name,
                    "image": tile_image,
                    "crop_mask": mask,
                    "mask": placed_mask,
                    "placed": placed_image,
                }
            )
        cell = (max(t["mask"].shape[0] for t in tiles), max(t["mask"].shape[1] for t in tiles))
        image = np.zeros((GRID * cell[0], GRID * cell[1]), np.float32)
        for slot, tile in enumerate(tiles):
            top, left = (slot // GRID) * cell[0], (slot % GRID) * cell[1]
            height, width = tile["mask"].shape
            image[top : top + height, left : left + width] = tile.pop("placed")
            box = mask_box(tile["mask"])
            if box is not None:
                box = Box(box.x0 + left, box.y0 + top, box.x1 + left, box.y1 + top)
            tile.update(top=top, left=left, box=box)
        mosaics.append({"image": image, "tiles": tiles})
    return mosaics


def load_model(spec: str):
    """A checkpoint folder, or a registry version by name."""
    path = Path(spec)
    if path.is_dir():
        return load_checkpoint(path)
    from medsegdiff_training.registry import ModelRegistry

    return ModelRegistry().load(spec)


def tile_dice(labels: np.ndarray, tile: dict) -> float:
    height, width = tile["mask"].shape
    region = labels[tile["top"] : tile["top"] + height, tile["left"] : tile["left"] + width] > 0
    return dice(region, tile["mask"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ddti"))
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ensemble", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="prompts_ddti")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--margin", type=float, default=None, help="crop margin fraction instead of the model's"
    )
    parser.add_argument("--cpu-timing-mosaics", type=int, default=3)
    parser.add_argument("--mosaics", type=int, default=None, help="only the first N mosaics (a quick look)")
    parser.add_argument(
        "--margin-px", type=float, default=None, help="crop margin in pixels instead of the model's"
    )
    parser.add_argument(
        "--native", action="store_true", help="tiles at their original frame size (DDTI's crop rule undone)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoint = load_model(args.model)
    segmenter = Segmenter(checkpoint, device=args.device)
    settings = SamplingSettings(
        sampler=args.sampler, steps=args.steps, ensemble=args.ensemble, seed=args.seed
    )
    rule = checkpoint.preprocess.prompt_crop_rule()
    if args.margin is not None or args.margin_px is not None:
        rule = CropRule(margin_fraction=args.margin or 0.0, margin_px=args.margin_px or 0.0)

    mosaics = build_mosaics(args.data, test_names(args.data), args.seed, native=args.native)[: args.mosaics]
    rows: list[dict] = []
    box_cpu = box_wall = 0.0
    objects = 0
    for number, mosaic in enumerate(mosaics, start=1):
        tiles = mosaic["tiles"]
        boxes = [t["box"] for t in tiles if t["box"] is not None]
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        prompted = segment_prompts(segmenter, mosaic["image"], boxes, settings, crop_rule=rule).labels
        box_cpu += time.process_time() - started_cpu
        box_wall += time.perf_counter() - started_wall
        objects += len(boxes)
        whole = segmenter.segment(mosaic["image"], settings).labels
        ellipses = inscribed_ellipse(boxes, mosaic["image"].shape)
        crops = [segmenter.segment(t["image"], settings).labels for t in tiles]
        for tile, crop in zip(tiles, crops, strict=True):
            rows.append(
                {
                    "name": tile["name"],
                    "nodule": tile["box"] is not None,
                    "box": tile_dice(prompted, tile),
                    "crop": dice(crop > 0, tile["crop_mask"]),
                    "whole_frame": tile_dice(whole, tile),
                    "ellipse": tile_dice(ellipses, tile),
                }
            )
        print(f"mosaic {number}/{len(mosaics)}: {len(boxes)} boxes", flush=True)

    if args.device != "cpu":  # CPU time per object on the CPU, one thread, a few mosaics
        cpu = Segmenter(checkpoint, device="cpu")
        box_cpu = box_wall = 0.0
        objects = 0
        for mosaic in mosaics[: args.cpu_timing_mosaics]:
            boxes = [t["box"] for t in mosaic["tiles"] if t["box"] is not None]
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            segment_prompts(cpu, mosaic["image"], boxes, settings, crop_rule=rule)
            box_cpu += time.process_time() - started_cpu
            box_wall += time.perf_counter() - started_wall
            objects += len(boxes)

    methods = ("box", "crop", "whole_frame", "ellipse")
    with_nodule = [r for r in rows if r["nodule"]]
    summary = {
        "tiles_with_nodule": {m: float(np.mean([r[m] for r in with_nodule])) for m in methods},
        "all_tiles": {m: float(np.mean([r[m] for r in rows])) for m in methods},
    }
    result = {
        "benchmark": "box prompts on 3x3 mosaics of DDTI test crops"
        + (" at their original frame size" if args.native else " (900x900)"),
        "native": args.native,
        "model": args.model,
        "crop_rule": rule.to_dict(),
        "settings": settings.to_dict(),
        "mosaics": len(mosaics),
        "first_mosaics_only": args.mosaics is not None,
        "tiles": len(rows),
        "tiles_with_nodule": len(with_nodule),
        "summary": summary,
        "box_minus_crop": summary["tiles_with_nodule"]["box"] - summary["tiles_with_nodule"]["crop"],
        "cpu_seconds_per_object": box_cpu / objects,
        "wall_seconds_per_object": box_wall / objects,
        "cpu_timing": {"objects": objects, "threads": torch.get_num_threads(), "device": "cpu"},
        "environment": environment(args.device),
        "per_tile": rows,
    }
    for scope, values in summary.items():
        print(scope, {k: round(v, 4) for k, v in values.items()})
    print(f"CPU s per object: {box_cpu / objects:.3f}; wall s per object: {box_wall / objects:.3f}")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
