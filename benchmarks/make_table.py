"""Render benchmarks/results/*.json as Markdown and put it into README.md.

    python benchmarks/make_table.py          # rewrites the block between the markers

The README block sits between ``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->``.
"""

from __future__ import annotations

import json
from pathlib import Path

from medsegdiff_training.config import named_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


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
            f"{r['seconds_per_step'] * 1000:.0f} | {r['peak_memory_mib']:.0f} |"
        )
    return lines


def _shape(changes: dict) -> str:
    """Our channel widths per level (and encoder blocks) from the changes to the "cpu" configuration."""
    config = named_config("cpu", **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})
    base, mults, blocks = config.base_channels, config.channel_mults, config.encoder_blocks
    return f"{'/'.join(str(base * m) for m in mults)} ({'/'.join(map(str, blocks))})"


def peer_table(result: dict) -> list[str]:
    lines = [
        f"**Against lucidrains' {result['peer']}** (`bench_vs_lucidrains.py`, alternating, medians) — {_env(result)}",
        "",
        "| pair | input | our widths (blocks) | params ours / theirs | float32: s per step ours / theirs | "
        "step speed-up | train img/s ours / theirs | train speed-up | each at its fastest: step speed-up | train speed-up |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["pairs"].items():
        best = ""
        if "best_step" in r:
            step, train = r["best_step"], r["best_train"]
            best = (
                f"**{step['speedup']:.1f}×** ({step['ours']:.3f} s {step['ours_precision']} / "
                f"{step['theirs']:.3f} s {step['theirs_precision']}) | "
                f"**{train['speedup']:.1f}×** ({train['ours']:.2f} {train['ours_precision']} / "
                f"{train['theirs']:.2f} {train['theirs_precision']}) |"
            )
        else:
            best = "– | – |"
        lines.append(
            f"| {name} | {r['input_size']}² | {_shape(r.get('our_configuration', {}))} | "
            f"{r['parameters_ours'] / 1e6:.1f}M / {r['parameters_theirs'] / 1e6:.1f}M | "
            f"{r['seconds_per_step_ours']:.3f} / {r['seconds_per_step_theirs']:.3f} | **{r['step_speedup']:.1f}×** | "
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


def quality_table(result: dict) -> list[str]:
    lines = [
        f"**Quality on the {result['data']}** (`bench_quality.py`, model `{result['model']}`) — {_env(result)}",
        "",
        "| method | Dice | Dice (5 thresholds) | IoU | HD95 (px) | time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "fixed_blob": "fixed blob, no model (trivial)",
        "all_foreground": "everything is nodule (trivial)",
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
        lines.append(f"| {name} | {s['dice']:.3f} | {five} | {s['iou']:.3f} | {s['hd95']:.1f} | – |")
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
        "| config | params | input | batch | precision | images / s |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['config']} | {r['parameters'] / 1e6:.1f}M | {r['input_size'][0]}x{r['input_size'][1]} | "
            f"{r['batch']} | {r.get('precision', 'float32')} | {r['images_per_s']:.2f} |"
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


def render() -> str:
    blocks = []
    for name, renderer in [
        ("quality_ddti", quality_table),
        ("quality_drishti", drishti_table),
        ("sampling_cpu", sampling_table),
        ("sampling_cuda", sampling_table),
        ("vs_lucidrains", peer_table),
        ("training_cpu", training_table),
        ("training_cuda", training_table),
    ]:
        result = _load(name)
        if result is not None:
            blocks.append("\n".join(renderer(result)))
    prompts = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("prompts_ddti*.json"))]
    if prompts:
        blocks.append("\n".join(prompts_table(prompts)))
    for path in sorted(RESULTS.glob("quality_*.json")):
        if path.stem not in ("quality_ddti", "quality_drishti"):
            blocks.append("\n".join(quality_table(json.loads(path.read_text()))))
    return "\n\n".join(blocks) if blocks else "_No benchmark results yet._"


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render()}\n{END}{tail}")
    print("README.md benchmark block updated")


if __name__ == "__main__":
    main()
