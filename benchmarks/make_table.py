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
    ]:
        result = _load(name)
        if result is not None:
            blocks.append("\n".join(renderer(result)))
    prompts = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("prompts_ddti*.json"))]
    prompts.sort(key=lambda r: not r.get("native"))  # full-size frames first, crop-scale mosaics second
    if prompts:
        blocks.append("\n".join(prompts_table(prompts)))
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
