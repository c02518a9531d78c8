"""Render benchmarks/results/*.json as Markdown and put it into docs/benchmarks.md.

    .venv/bin/python benchmarks/make_table.py           # rewrites the block between the markers
    .venv/bin/python benchmarks/make_table.py --check   # exit 1 when the block is out of date

The block sits between ``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->`` in
docs/benchmarks.md (``--page`` names another file). A page may hold the three-task block
instead or as well (``<!-- three-tasks:start -->`` ... ``<!-- three-tasks:end -->``: the
paper's Table I beside our models, ``_three_tasks.py``), as docs/three-tasks.md does:

    .venv/bin/python benchmarks/make_table.py --page docs/three-tasks.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from _full_frames import full_frames_tables
from _three_tasks import three_tasks_table

from medsegdiff_training.config import named_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
THREE_TASKS_START, THREE_TASKS_END = "<!-- three-tasks:start -->", "<!-- three-tasks:end -->"
# quality results beyond DDTI's: the script that wrote them, and what the object is called
QUALITY_SOURCES = {"quality_lgg": ("bench_quality_lgg.py", "tumour")}


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _env(result: dict) -> str:
    e = result["environment"]
    where = e.get("gpu", e["machine"])
    return f"*{e['date']}, {where}, torch {e['torch']}, {e['threads']} threads, device {e['device']}*"


def sampling_table(result: dict) -> list[str]:
    lines = [
        f"**Sampling** (`bench_sampling.py`, model `{result['model']}`, 256x256 image) — {_env(result)}",
        "",
        "| sampler | steps | ensemble | precision | s / mask | ms / step | peak extra memory (MiB) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['ensemble']} | {r.get('precision', 'float32')} | "
            f"{r['seconds_per_mask']:.2f} | "
            f"{r['seconds_per_step'] * 1000:.{1 if r['seconds_per_step'] < 0.01 else 0}f} | {r['peak_memory_mib']:.0f} |"
        )
    if any("first_run_s" in r for r in result["runs"]):
        lines += [
            "",
            "First press (a fresh Segmenter; CUDA graph capture included), s / mask: "
            + ", ".join(
                f"{r['sampler']} {r['steps']} x {r['ensemble']} {r['precision']}: {r['first_run_s']:.2f}"
                for r in result["runs"]
                if "first_run_s" in r
            ),
        ]
    return lines


def fast_paths_table(result: dict) -> list[str]:
    runs = result["runs"]
    batches = sorted({r["batch"] for r in runs})
    lines = [
        f"**Per denoising step under each precision and fast path** (`bench_fast_paths.py`, "
        f"{runs[0]['config'] if runs else ''} at {'x'.join(map(str, runs[0]['input_size'])) if runs else ''}, "
        f"DDIM 10 steps through `Segmenter.denoise`, median) — {_env(result)}",
        "",
        "| variant | "
        + " | ".join(f"batch {b}: ms / step" for b in batches)
        + " | first run (s), batch "
        + " / ".join(map(str, batches))
        + " |",
        "|---|" + "---:|" * (len(batches) + 1),
    ]
    for variant in dict.fromkeys(r["variant"] for r in runs):
        by_batch = {r["batch"]: r for r in runs if r["variant"] == variant}
        cells = [f"{by_batch[b]['ms_per_step']:.2f}" if b in by_batch else "–" for b in batches]
        firsts = " / ".join(f"{by_batch[b]['first_run_s']:.1f}" if b in by_batch else "–" for b in batches)
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {firsts} |")
    return lines


def _shape(changes: dict) -> str:
    """Our channel widths per level (and encoder blocks) from the changes to a named configuration."""
    changes = dict(changes)
    base_name = changes.pop("base", "cpu")
    config = named_config(
        base_name, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    )
    base, mults, blocks = config.base_channels, config.channel_mults, config.encoder_blocks
    return f"{'/'.join(str(base * m) for m in mults)} ({'/'.join(map(str, blocks))})"


def _seconds(value: float) -> str:
    return f"{value:.4f}" if value < 0.01 else f"{value:.3f}"


def peer_table(result: dict) -> list[str]:
    lines = [
        f"**Against lucidrains' {result['peer']}** (`bench_vs_lucidrains.py`, alternating, medians) — {_env(result)}",
        "",
        "| pair | input | our widths (blocks) | params ours / theirs | float32: s per step ours / theirs "
        f"(batch {next(iter(result['pairs'].values())).get('step_batch', 1)}) | "
        "step speed-up | train img/s ours / theirs | train speed-up | each at its fastest: step speed-up | train speed-up |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["pairs"].items():
        best = ""
        if "best_step" in r:
            step, train = r["best_step"], r["best_train"]
            best = (
                f"**{step['speedup']:.1f}×** ({_seconds(step['ours'])} s {step['ours_precision']} / "
                f"{_seconds(step['theirs'])} s {step['theirs_precision']}) | "
                f"**{train['speedup']:.1f}×** ({train['ours']:.2f} {train['ours_precision']} / "
                f"{train['theirs']:.2f} {train['theirs_precision']}) |"
            )
        else:
            best = "– | – |"
        lines.append(
            f"| {name} | {r['input_size']}² | {_shape(r.get('our_configuration', {}))} | "
            f"{r['parameters_ours'] / 1e6:.1f}M / {r['parameters_theirs'] / 1e6:.1f}M | "
            f"{_seconds(r['seconds_per_step_ours'])} / {_seconds(r['seconds_per_step_theirs'])} | **{r['step_speedup']:.1f}×** | "
            f"{r['train_images_per_s_ours']:.2f} / {r['train_images_per_s_theirs']:.2f} | **{r['train_speedup']:.1f}×** | "
            f"{best}"
        )
    return lines


def plan_label(settings: dict) -> str:
    """'MedSegDiff ddim, 3 steps, ensemble 5' for a result's sampling settings."""
    steps, ensemble = settings["steps"], settings["ensemble"]
    plural = "s" * (steps != 1)
    return f"MedSegDiff {settings['sampler']}, {steps} step{plural}" + (
        f", ensemble {ensemble}" if ensemble > 1 else ""
    )


def _hd95(value: float) -> str:
    """HD95 in pixels; undefined (an empty prediction on every image) as a dash."""
    return "–" if math.isnan(value) else f"{value:.1f}"


def quality_table(result: dict, script: str = "bench_quality.py", thing: str = "nodule") -> list[str]:
    lines = [
        f"**Quality on the {result['data']}** (`{script}`, model `{result['model']}`) — {_env(result)}",
        "",
        "| method | Dice | Dice (5 thresholds) | IoU | HD95 (px) | time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "fixed_blob": "fixed blob, no model (trivial)",
        "all_foreground": f"everything is {thing} (trivial)",
        "unet_same_budget": "plain U-Net, 2.1M params",
    }
    for key, s in result["baselines"].items():
        name = names.get(key, names["unet_same_budget"] if key.startswith("unet_same_budget") else key)
        if "training" in s:
            precision = "bf16" if s["training"].get("bf16_autocast") else "float32"
            name += (
                f", {s['training']['minutes']:g} CPU-minutes, {s['training']['steps']:,} steps, {precision}"
            )
        if "measured" in s:
            name += f" (scored {s['measured']})"
        five = f"{s['dice_5threshold']:.3f}" if "dice_5threshold" in s else "–"
        lines.append(f"| {name} | {s['dice']:.3f} | {five} | {s['iou']:.3f} | {_hd95(s['hd95'])} | – |")
    for r in result["results"]:
        s, label = r["summary"], plan_label(r["settings"])
        lines.append(
            f"| {label} | {s['dice']:.3f} | {s['dice_5threshold']:.3f} | {s['iou']:.3f} | {s['hd95']:.1f} | {r['seconds']:.0f} |"
        )
    return lines


def drishti_table(result: dict) -> list[str]:
    lines = [
        f"**Optic disc and cup on the {result['data']}** (`bench_quality_drishti.py`, model `{result['model']}`) — {_env(result)}",
        "",
        "| method | disc Dice | cup Dice | disc HD95 (px) | cup HD95 (px) | cup/disc area error | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [
        ("majority label map of the Training masks, no model (trivial)", s, None)
        for s in result["baselines"].values()
    ]
    for r in result["results"]:
        rows.append((plan_label(r["settings"]), r["summary"], r["seconds"]))
    for label, s, seconds in rows:
        lines.append(
            f"| {label} | {s['disc_dice']:.3f} | {s['cup_dice']:.3f} | {s['disc_hd95']:.1f} | {s['cup_hd95']:.1f} | "
            f"{s['cdr_area_error']:.3f} | {'–' if seconds is None else f'{seconds:.0f}'} |"
        )
    return lines


def training_table(result: dict) -> list[str]:
    lines = [
        f"**Training throughput** (`bench_training.py`) — {_env(result)}",
        "",
        "| config | params | input | batch | precision | images / s | peak memory (MiB) |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in result["runs"]:
        precision = r.get("precision", "float32") + (", channels_last" if r.get("channels_last") else "")
        memory = f"{r['peak_memory_mib']:.0f}" if r.get("peak_memory_mib") else "–"
        lines.append(
            f"| {r['config']} | {r['parameters'] / 1e6:.1f}M | {r['input_size'][0]}x{r['input_size'][1]} | "
            f"{r['batch']} | {precision} | {r['images_per_s']:.2f} | {memory} |"
        )
    for loop in result.get("trainer", []):
        lines.append(
            f"| {loop['config']}, the training loop (`train()`: data loader, EMA, loss read-back) | | | "
            f"{loop['batch']} | {loop['precision']} | {loop['images_per_s']:.2f} | – |"
        )
    return lines


def _rule(rule: dict) -> str:
    grow = [
        f"{rule['margin_fraction']:.0%} of its size" if rule["margin_fraction"] else "",
        f"{rule['margin_px']:g} px" if rule["margin_px"] else "",
    ]
    return f"{rule['shape']} + " + " + ".join(g for g in grow if g) + " per side"


def prompts_table(results: list[dict]) -> list[str]:
    lines = [
        "**Box prompts on full-size frames** (`bench_prompts.py`: 3x3 mosaics of DDTI *test* crops, "
        "box = each tile's expert-mask box; Dice per tile with a nodule, mean)",
        "",
        "| mosaic tiles | crop rule | box prompts | the same crops | whole frame | ellipse in box (no model) "
        "| sampler | CPU s / object (1 thread) | Dice on |",
        "|---|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        s, e = r["summary"]["tiles_with_nodule"], r["environment"]
        tiles = "original frame size" if r.get("native") else "300x300 (crop scale)"
        tiles += f", {r['tiles_with_nodule']} tiles" + (
            " (first mosaics only)" if r.get("first_mosaics_only") else ""
        )
        sampling = f"{r['settings']['sampler']} {r['settings']['steps']} x {r['settings']['ensemble']}"
        lines.append(
            f"| {tiles} | {_rule(r['crop_rule'])} | **{s['box']:.3f}** | {s['crop']:.3f} | {s['whole_frame']:.3f} | "
            f"{s['ellipse']:.3f} | {sampling} | {r['cpu_seconds_per_object']:.2f} | {e.get('gpu', e['device'])}, {e['date']} |"
        )
    return lines


ABLATION_ROWS = [
    ("vanilla", "", ""),
    ("dycond", "✓", ""),
    ("dycond+ffparser", "✓", "✓"),
]


def _mean_spread(entry: dict | None) -> str:
    if entry is None:
        return "–"
    return f"{entry['mean']:.3f} ± {entry['spread']:.3f}"


def ablation_table(result: dict) -> list[str]:
    """Table II's layout: one row per variant, Dice (mean ± half the seed range) per dataset."""
    steps, n = result["steps"], result["ddpm_images"]
    ddti, drishti = result["datasets"]["ddti"], result["datasets"]["drishti"]
    lines = [
        f"**Ablation, Table II's layout** (`bench_ablation.py`: trained from scratch, {result['seeds']} seeds, "
        f"equal budgets of {steps['ddti']} steps on DDTI and {steps['drishti']} on Drishti-GS1, batch 8; "
        f"mean ± half the range over seeds; DDIM 3 x 5 on the whole test split, DDPM-100 on its first {n} "
        f"images) — {_env(result)}",
        "",
        "| Dy-Cond | FF-Parser | DDTI Dice, DDIM 3x5 | DDTI Dice, DDPM-100 | Drishti disc, DDIM 3x5 "
        "| Drishti cup, DDIM 3x5 | Drishti disc, DDPM-100 | Drishti cup, DDPM-100 |",
        "|:-:|:-:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, dycond, ffparser in ABLATION_ROWS:
        a = ddti["variants"].get(variant, {}).get("summary", {})
        b = drishti["variants"].get(variant, {}).get("summary", {})
        cells = [
            a.get("default_dice"),
            a.get("paper_dice"),
            b.get("default_disc_dice"),
            b.get("default_cup_dice"),
            b.get("paper_disc_dice"),
            b.get("paper_cup_dice"),
        ]
        lines.append(f"| {dycond} | {ffparser} | " + " | ".join(_mean_spread(c) for c in cells) + " |")
    blob, subset_blob = (
        ddti["baselines"]["test"]["fixed_blob"],
        ddti["baselines"]["ddpm_subset"]["fixed_blob"],
    )
    major = drishti["baselines"]["test"]["majority_map"]
    subset_major = drishti["baselines"]["ddpm_subset"]["majority_map"]
    lines.append(
        f"| no model | (trivial) | {blob['dice']:.3f} (fixed blob) | {subset_blob['dice']:.3f} (fixed blob) "
        f"| {major['disc_dice']:.3f} (majority map) | {major['cup_dice']:.3f} | {subset_major['disc_dice']:.3f} "
        f"| {subset_major['cup_dice']:.3f} |"
    )
    return lines


def fewshot_table(result: dict) -> list[str]:
    """Adapting fine-tunes on Drishti-GS1: Test Dice per number of corrections, beside the majority maps."""
    runs = [r for r in result["runs"].values() if "test" in r]
    chosen = result["chosen_recipe"]
    lines = [
        f"**Few-shot adapting fine-tunes** (`scripts/drishti_adapt_experiment.py`: the grey binary "
        f"ultrasound default fine-tuned on the first N Drishti-GS1 *Training* images as corrections, "
        f"each recipe's Test figures measured once, except the rows run again; the chosen recipe "
        f"`{chosen}` was chosen on 16 other Training images, "
        f"{runs[0]['cpu_minutes_budget'] if runs else '?'} CPU-minutes each, 1 thread; Test split, "
        f"{result['test_images']} images, DDIM 3 x 5; in brackets the majority label map of the same N "
        f"corrections, no model) — {_env(result)}",
        "",
        "| recipe | corrections (trained + held out) | steps | (a) disc, binary RGB | steps "
        "| (b) disc, 3-class RGB | (b) cup, 3-class RGB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def key(r: dict) -> tuple[bool, str, int, float, int]:  # the chosen recipe's rows first
        return (r["recipe"] != chosen, r["recipe"], len(r["corrections"]), r["holdout"], r.get("repeat", 0))

    for other, recipe, count, holdout, repeat in sorted({key(r) for r in runs}):
        cells = {r["task"]: r for r in runs if key(r) == (other, recipe, count, holdout, repeat)}
        held = round(count * holdout) if holdout else 0
        label = (f"{count - held} + {held}" if held else f"{count}") + (
            f", run again ({repeat})" if repeat else ""
        )
        row = [f"`{recipe}`" + ("" if other else " (chosen)"), label]
        disc = cells.get("disc")
        if disc:
            m = disc["test_majority_map_of_these_corrections"]
            row += [str(disc["steps"]), f"{disc['test']['disc_dice']:.3f} ({m['disc_dice']:.3f})"]
        else:
            row += ["–", "–"]
        both = cells.get("disc-cup")
        if both:
            m = both["test_majority_map_of_these_corrections"]
            row += [
                str(both["steps"]),
                f"{both['test']['disc_dice']:.3f} ({m['disc_dice']:.3f})",
                f"{both['test']['cup_dice']:.3f} ({m['cup_dice']:.3f})",
            ]
        else:
            row += ["–", "–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    everything = result["test_majority_map_of_all_50_training"]
    lines.append(
        f"| no model | majority map of all 50 Training images | | {everything['disc']['disc_dice']:.3f} | "
        f"| {everything['disc-cup']['disc_dice']:.3f} | {everything['disc-cup']['cup_dice']:.3f} |"
    )
    choices = [r for r in result["runs"].values() if "selection" in r]
    if choices:
        lines += [
            "",
            "Choosing the recipe (8 corrections, 3 classes; Dice on Training images 16-31, never Test):",
            "",
            "| recipe | steps | disc | cup | disc + cup |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in sorted(choices, key=lambda r: (r["recipe"], r.get("repeat", 0))):
            mark = " (chosen)" if r["recipe"] == chosen else ""
            if r.get("repeat"):
                mark += f", run again ({r['repeat']}; not a candidate)"
            disc, cup = r["selection"]["disc_dice"], r["selection"]["cup_dice"]
            lines.append(
                f"| `{r['recipe']}`{mark} | {r['steps']} | {disc:.4f} | {cup:.4f} | {disc + cup:.4f} |"
            )
    return lines


GENERAL_NAMES = {
    "busi": "BUSI breast ultrasound",
    "ph2": "PH2 dermoscopy",
    "lgg_mri": "LGG brain MRI (FLAIR)",
    "ddti": "DDTI thyroid ultrasound",
    "dsb2018": "DSB2018 nuclei",
    "drishti_roi": "Drishti-GS1 optic disc",
}


def _delta(model: float, baseline: float) -> str:
    return f"{model:.3f} / {baseline:.3f} (**{(model - baseline) * 100:+.1f}**)"


def _box_cells(summary: dict) -> str:
    """A box-prompt row's three cells: exact, 10 % and 20 % loose boxes, each beside the ellipse."""
    return " | ".join(_delta(summary[v], summary[f"{v}_ellipse"]) for v in ("exact", "loose10", "loose20"))


def general_table(result: dict, lodo: list[dict]) -> list[str]:
    """Box prompts on every test split beside the ellipse in the same box; scale; left-out domains."""
    settings = result["settings"]
    lines = [
        f"**Box prompts on every shared test split** (`bench_general.py`, model `{result['model']}`, "
        f"{settings['sampler']} {settings['steps']} x {settings['ensemble']}; Dice per image, mean; each cell "
        "model / ellipse inscribed in the same box (difference in points); loose = every edge moved outward "
        "by up to 10 % / 20 % of the box's side, fixed seed; one box per connected component of at least "
        f"{result['objects']['min_pixels']} pixels, at most {result['objects']['max_per_image']} per image (the "
        "largest; the others are then not scored); whole image: the whole-image model "
        f"`{result.get('whole_model')}` / the fixed blob) — {_env(result)}",
        "",
        "| test split | images (objects) | exact box | 10 % loose | 20 % loose | whole image / fixed blob "
        "| CPU s / object |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, found in result["datasets"].items():
        summary = found["summary"]
        whole = summary.get("whole_image")
        whole_cell = f"{whole:.3f} / {summary['fixed_blob']:.3f}" if whole is not None else "–"
        lines.append(
            f"| {GENERAL_NAMES.get(name, name)} | {found['images']} ({found['objects']}) | "
            + _box_cells(summary)
            + f" | {whole_cell} | {found['cpu_seconds_per_object']:.2f} |"
        )
    scale = result.get("ddti_scale")
    if scale:
        lines += [
            "",
            "DDTI test crops at 0.5x, 1x and 2x their native frame size (boxes from their masks): "
            + "; ".join(
                f"{factor}: {entry['box']:.3f} (ellipse {entry['ellipse']:.3f})"
                for factor, entry in scale.items()
            )
            + f"; the box Dice moves by {max(e['box'] for e in scale.values()) - min(e['box'] for e in scale.values()):.3f}.",
        ]
    if lodo:
        lines += [
            "",
            "**Leave one domain out** (the same recipe trained without one dataset, scored on that dataset's "
            "test split: a new user's first answer on a domain the model never saw; model / ellipse)",
            "",
            "| left out | budget | exact box | 10 % loose | 20 % loose |",
            "|---|---|---:|---:|---:|",
        ]
        for entry in lodo:
            ((name, found),) = entry["datasets"].items()
            summary = found["summary"]
            lines.append(
                f"| {GENERAL_NAMES.get(name, name)} | {entry.get('budget', '–')} | "
                + _box_cells(summary)
                + " |"
            )
    return lines


def pilot_table(results: list[dict]) -> list[str]:
    """Box channel or not: the two pilots on held-out training images (never the test splits)."""
    lines = [
        "**Telling the network where the box is** (two pilots of the same recipe and budget, with and "
        "without the box channel, 20 CPU-minutes of one thread each; scored on the training images each "
        "run held out, never the test splits, DDIM 3 x 5, answers not clipped to the box; model / ellipse "
        "in the same box; the scoring run stopped part-way through DSB2018, before Drishti)",
        "",
        "| pilot | test split's training images held out | exact box | 10 % loose | 20 % loose |",
        "|---|---|---:|---:|---:|",
    ]
    for result in results:
        for name, found in result["datasets"].items():
            summary = found["summary"]
            lines.append(
                f"| {result['prompt_encoding']} | {GENERAL_NAMES.get(name, name)} ({found['images']}) | "
                + _box_cells(summary)
                + " |"
            )
    return lines


CONTENTION_ROWS = [  # (case, measure, label)
    ("a_finetune", "finetune_steps_per_min", "(a) fine-tune alone (no other work of ours): steps/min"),
    ("a_presegment", "presegment_images_per_min", "(a) pre-segmentation alone: images/min"),
    ("b_together", "finetune_steps_per_min", "(b) together, as the queue runs them: fine-tune steps/min"),
    ("b_together", "presegment_images_per_min", "(b) together: pre-segmentation images/min"),
    ("c_finetune_busy", "finetune_steps_per_min", "(c) fine-tune beside a busy process: steps/min"),
    (
        "c_presegment_busy",
        "presegment_images_per_min",
        "(c) pre-segmentation beside a busy process: images/min",
    ),
]
_NOT_HAND_PICKED = ("today", "policy", "plugin share")


def _rate(row: dict, measure: str) -> str:
    """``52.0 (1)``: the rate and the threads it ran with (``f1+s1``: fine-tune + pre-segmentation)."""

    def counts(key: str) -> str:
        return "/".join(str(t) for t in row[key]) or "?"

    both = row["finetune_threads"] and row["presegment_threads"]
    key = "finetune_threads" if measure.startswith("finetune") else "presegment_threads"
    threads = f"f{counts('finetune_threads')}+s{counts('presegment_threads')}" if both else counts(key)
    return "–" if row[measure] is None else f"{row[measure]:.1f} ({threads})"


def contention_table(result: dict) -> list[str]:
    """Today's threads against the thread policy, alone, together and beside a busy process."""
    start, end = result["machine_at_start"]["loadavg"][0], result["machine_at_end"]["loadavg"][0]
    lines = [
        f"**Sharing the CPU** (`bench_contention.py`: medians of {result['repeats']} runs of "
        f"{result['seconds_per_run']:g} s, variants alternating; rates (threads); load average "
        f"{start:.2f} at the start, {end:.2f} at the end) — {_env(result)}",
        "",
        "| case | today | policy | best hand-picked | policy / today | policy / best |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case, measure, label in CONTENTION_ROWS:
        if case not in result["summary"]:
            continue
        variants = result["summary"][case]["variants"]
        hand = {k: v for k, v in variants.items() if k not in _NOT_HAND_PICKED and v[measure] is not None}
        best = max(hand, key=lambda name: hand[name][measure])
        today, policy = variants["today"][measure], variants["policy"][measure]
        # nothing done in the window: today's rate is below one unit per window
        over_today = f"{policy / today:.1f}" if today else f"> {policy * result['seconds_per_run'] / 60:.0f}"
        lines.append(
            f"| {label} | {_rate(variants['today'], measure)} | {_rate(variants['policy'], measure)} | "
            f"{_rate(hand[best], measure)} | {over_today} | {policy / hand[best][measure]:.2f} |"
        )
    plugin = result["summary"].get("a_finetune", {}).get("variants", {}).get("plugin share")
    if plugin and plugin["finetune_steps_per_min"] is not None:
        lines += [
            "",
            f"A fine-tune the plugin starts alone (its share beside the sampling workers): "
            f"{_rate(plugin, 'finetune_steps_per_min')} steps/min.",
        ]
    return lines


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def whole_image_warning_table(result: dict) -> list[str]:
    """The whole-image warning's rates: chosen on the train splits, reported on the test splits."""
    rule = ", ".join(f"{k} {v}" for k, v in result["rule"].items())
    lines = [
        f"**The whole-image warning** (`bench_whole_image_warning.py`, model `{result['model']}`, "
        f"DDIM {result['settings']['steps']} x {result['settings']['ensemble']}; thresholds chosen on the "
        f"{result['chosen_on']}) — {_env(result)}",
        "",
        f"Rule: {rule}.",
        "",
        "| split | rule | warned where Dice < 0.5 | warned where Dice >= 0.8 | images with Dice < 0.5 / >= 0.8 |",
        "|---|---|---:|---:|---:|",
    ]
    names = {
        "rule": "the chosen rule",
        "always": "warn always (trivial)",
        "size_only": "size alone (trivial)",
    }
    for split in ("train", "test"):
        for key, label in names.items():
            r = result["results"][split]["all"][key]
            lines.append(
                f"| {split} | {label} | {_percent(r['warned_on_poor'])} | {_percent(r['warned_on_good'])} "
                f"| {r['poor_images']} / {r['good_images']} |"
            )
    lines += [
        "",
        "| test split | images | whole-image Dice | Dice < 0.5: warned | Dice >= 0.8: warned |",
        "|---|---:|---:|---:|---:|",
    ]
    for dataset, r in result["results"]["test"]["datasets"].items():
        rule_rates = r["rule"]
        poor = f"{_percent(rule_rates['warned_on_poor'])} of {rule_rates['poor_images']}"
        good = f"{_percent(rule_rates['warned_on_good'])} of {rule_rates['good_images']}"
        lines.append(f"| {dataset} | {r['images']} | {r['mean_dice']:.3f} | {poor} | {good} |")
    return lines


def gui_stall_table(results: list[dict]) -> list[str]:
    """Longest GUI-thread stall while Segment runs, before and after (same machine, same day)."""
    lines = [
        "**The viewer while segmenting** (`bench_gui_stall.py`: longest gap of a 5 ms heartbeat "
        "timer on the GUI thread; the ultrasound sample, `default`, DDIM 3 x 5, CPU, 1 thread, "
        "Xvfb with software OpenGL)",
        "",
        "| code | date, machine | load average | idle (baseline) | napari adding one Labels layer "
        "(floor) | first Segment (imports PyTorch) | later Segments: longest | later: during / at the end |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        later = r["runs"][1:]
        during = max(x["longest_stall_during_s"] for x in later) if later else None
        end = max(x["longest_stall_at_end_s"] for x in later) if later else None
        floor = r.get("floor_add_labels_layer_s") or []
        lines.append(
            f"| {r['label']} | {r['environment']['date']}, {r['environment']['machine']} "
            f"| {r['loadavg'][0]:.1f} | {1000 * r['idle_longest_gap_s']:.0f} ms "
            f"| {', '.join(f'{1000 * f:.0f}' for f in floor) + ' ms' if floor else '–'} "
            f"| {1000 * r['first_run_longest_stall_s']:.0f} ms "
            f"| **{1000 * r['later_runs_longest_stall_s']:.0f} ms** "
            f"| {1000 * during:.0f} / {1000 * end:.0f} ms |"
        )
    return lines


def render() -> str:
    blocks = []
    for name, renderer in [
        ("quality_ddti", quality_table),
        ("quality_drishti", drishti_table),
        ("sampling_cpu", sampling_table),
        ("sampling_cuda", sampling_table),
        ("vs_lucidrains", peer_table),
        ("training_cpu", training_table),
        ("fast_paths_cuda", fast_paths_table),
        ("compile_cuda", fast_paths_table),
        ("training_cuda", training_table),
        ("vs_lucidrains_cuda", peer_table),
        ("ablation", ablation_table),
        ("finetune_drishti_adapt", fewshot_table),
        ("contention_cpu", contention_table),
        ("finetune_full_frames", full_frames_tables),
    ]:
        result = _load(name)
        if result is not None:
            blocks.append("\n".join(renderer(result)))
    prompts = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("prompts_ddti*.json"))]
    prompts.sort(key=lambda r: not r.get("native"))  # full-size frames first, crop-scale mosaics second
    if prompts:
        blocks.append("\n".join(prompts_table(prompts)))
    general = _load("general_box_prompts")
    if general is not None:
        lodo = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("general_lodo_*.json"))]
        blocks.append("\n".join(general_table(general, lodo)))
    pilots = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("general_pilot_*.json"))]
    if pilots:
        blocks.append("\n".join(pilot_table(pilots)))
    warning = _load("whole_image_warning")
    if warning is not None and "results" in warning:
        blocks.append("\n".join(whole_image_warning_table(warning)))
    stalls = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("gui_stall*.json"))]
    if stalls:
        blocks.append("\n".join(gui_stall_table(sorted(stalls, key=lambda r: r["environment"]["date"]))))
    for path in sorted(RESULTS.glob("quality_*.json")):
        if path.stem not in ("quality_ddti", "quality_drishti"):
            source = QUALITY_SOURCES.get(path.stem, ("bench_quality.py", "nodule"))
            blocks.append("\n".join(quality_table(json.loads(path.read_text()), *source)))
    return "\n\n".join(blocks) if blocks else "_No benchmark results yet._"


def render_three_tasks() -> str:
    return "\n".join(three_tasks_table(_load))


BLOCKS = ((START, END, render), (THREE_TASKS_START, THREE_TASKS_END, render_three_tasks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make_table.py",
        description="Render the latest benchmarks/results/*.json into docs/benchmarks.md's benchmark block "
        f"(between {START} and {END}), and into every three-task block ({THREE_TASKS_START}) of the page.",
    )
    parser.add_argument(
        "--page", type=Path, default=ROOT / "docs" / "benchmarks.md", help="the file to update"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the block differs from the results"
    )
    parser.add_argument("--print", action="store_true", help="print the block instead of writing it")
    args = parser.parse_args(argv)
    if args.print:
        print(render())
        return 0
    try:
        text = args.page.read_text()
    except OSError as error:
        print(f"make_table.py: cannot read {args.page}: {error.strerror or error}", file=sys.stderr)
        return 1
    present = [(start, end, renderer) for start, end, renderer in BLOCKS if start in text and end in text]
    if not present:
        print(f"make_table.py: {args.page} has no {START} ... {END} block", file=sys.stderr)
        return 1
    updated = text
    for start, end, renderer in present:
        head, rest = updated.split(start, 1)
        _, tail = rest.split(end, 1)
        updated = f"{head}{start}\n{renderer()}\n{end}{tail}"
    if args.check:
        if updated != text:
            print(
                f"{args.page}: the benchmark block is out of date; run benchmarks/make_table.py",
                file=sys.stderr,
            )
            return 1
        print(f"{args.page}: the benchmark block matches benchmarks/results/")
        return 0
    args.page.write_text(updated)
    print(f"{args.page}: benchmark block updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
