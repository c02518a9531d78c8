"""The tables of ``results/finetune_full_frames.json`` (``scripts/full_frame_finetune_experiment.py``),
for ``make_table.py``: the recipe choice on selection images, the chosen recipe's test
figures beside the trivial baselines, and how the held-out score ranked parent and child."""

from __future__ import annotations

TASK_LABELS = {
    "busi": "busi (breast ultrasound, full frames, grey)",
    "lgg_mri": "lgg_mri (brain MRI FLAIR, full frames, grey)",
    "ph2": "ph2 (dermoscopy, colour)",
    "ph2_grey": "ph2 in grey",
    "drishti": "drishti (optic disc, disc-centred crops, colour)",
}


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


DERIVED = "‡"
DERIVED_NOTE = (
    f"{DERIVED} no training of its own: the margin rule, applied to the logged held-out curve of the "
    "same recipe without a margin (same seed, constant rate: the same trajectory step for step), keeps "
    "the step another run registered, so its weights and scores are that run's."
)


def _runs(result: dict, **match: object) -> list[dict]:
    """The runs with every ``match`` (fine-tunes of the shipped default unless ``parent`` is given)."""
    match = {"parent": "default", **match}
    return [r for r in result["runs"] if all(r.get(key) == value for key, value in match.items())]


def _never_worse(result: dict, recipe: str) -> str:
    """A recipe's change from 10 to 30 minutes on the selection images, and whether it holds."""
    check = result.get("never_worse", {}).get(recipe)
    if check is None:
        return "–"
    changes = " / ".join(f"{value:+.3f}" for value in check["change_30_minus_10"].values())
    return f"{changes} ({'never worse' if check['holds'] else 'worse'})"


def _mark(run: dict | None) -> str:
    return DERIVED if run is not None and run.get("derived_from") else ""


def choice_table(result: dict) -> list[str]:
    """Every candidate's selection-image Dice (whole / box) per task, and the choice score."""
    tasks = ("busi", "lgg_mri", "ph2", "drishti")
    lines = [
        "Choosing the recipe (20 corrections, 10 CPU-minutes, 1 thread; Dice on 20 *training* images "
        "of each task that no run corrects, never the test splits; whole image / box prompt):",
        "",
        "| recipe | " + " | ".join(tasks) + " | choice score | 30 min − 10 min: busi / lgg_mri / ph2 |",
        "|---|" + "---:|" * (len(tasks) + 1) + "---|",
    ]
    for recipe in result["recipes"]:
        cells = []
        for task in tasks:
            runs = _runs(result, recipe=recipe, task=task, minutes=10, repeat=0)
            found = [r for r in runs if "selection" in r]
            mean = found[0]["selection"]["mean"] if found else None
            cells.append("–" if mean is None else f"{mean['whole']:.3f} / {mean['box']:.3f}{_mark(found[0])}")
        if all(cell == "–" for cell in cells):
            continue
        score = result["candidates"].get(recipe)
        mark = " (chosen)" if recipe == result["chosen_recipe"] else ""
        lines.append(
            f"| `{recipe}`{mark} | "
            + " | ".join(cells)
            + f" | {_f(score)} | {_never_worse(result, recipe)} |"
        )
    baseline = []
    for task in tasks:
        found = [r for r in result["runs"] if r["task"] == task and "selection" in r]
        mean = found[0]["selection"]["mean"] if found else None
        baseline.append(
            "–" if mean is None else f"{max(mean['blob'], mean['everything']):.3f} / {mean['ellipse']:.3f}"
        )
    lines.append(
        "| no model: fixed blob or everything (the better) / ellipse in the box | "
        + " | ".join(baseline)
        + " | | |"
    )
    if result["chosen_recipe"] is None:
        lines += ["", "No recipe is chosen yet: a candidate needs a 10-minute run on every task above."]
    if any(DERIVED in line for line in lines):
        lines += ["", DERIVED_NOTE]
    return lines


def test_table(result: dict) -> list[str]:
    """The chosen recipe on the test splits, at 10 and 30 CPU-minutes, beside main's recipe,
    the parent and the trivial baselines."""
    chosen = result["chosen_recipe"]
    if chosen is None:  # not every choice task has a run of every candidate yet
        return []
    lines = [
        f"**Fine-tuning on 20 corrections of full frames** (`scripts/full_frame_finetune_experiment.py`: "
        f"the shipped `default` (DDTI, grey) fine-tuned on the first 20 training images of each task, "
        f"written through the corrections store; `--clock cpu`, 1 thread; test splits, DDIM 3 x 5; "
        f"recipe `{chosen}`, chosen on training images only) — {_env(result)}",
        "",
        "| task | parent (no fine-tune) | main's recipe, 10 min | 10 min | 30 min | steps (10 / 30 min) "
        "| fixed blob | everything | box: parent | box: 10 min | box: 30 min | ellipse in the box |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task, label in TASK_LABELS.items():
        ten = [r for r in _runs(result, recipe=chosen, task=task, minutes=10, repeat=0) if "test" in r]
        if not ten:
            continue
        thirty = [r for r in _runs(result, recipe=chosen, task=task, minutes=30) if "test" in r]
        main = [r for r in _runs(result, recipe="main", task=task, minutes=10) if "test" in r]
        parent = result["zero_shot"].get(task)
        t10 = ten[0]["test"]["mean"]
        t30 = thirty[0]["test"]["mean"] if thirty else None
        steps = f"{ten[0]['steps']}" + (
            f" / {thirty[0]['steps']}{' (stopped early)' if thirty[0]['metrics'].get('stopped_early') else ''}"
            if thirty
            else ""
        )
        m10, m30 = _mark(ten[0]), _mark(thirty[0] if thirty else None)
        lines.append(
            f"| {label} | {_f(parent['test']['mean']['whole'] if parent else None)} "
            f"| {_f(main[0]['test']['mean']['whole'] if main else None)} | **{t10['whole']:.3f}**{m10} "
            f"| {_f(t30['whole'] if t30 else None)}{m30} | {steps} | {t10['blob']:.3f} | {t10['everything']:.3f} "
            f"| {_f(parent['test']['mean']['box'] if parent else None)} | **{t10['box']:.3f}**{m10} "
            f"| {_f(t30['box'] if t30 else None)}{m30} | {t10['ellipse']:.3f} |"
        )
    if len(lines) > 4 and any(DERIVED in line for line in lines[4:]):
        lines += ["", DERIVED_NOTE]
    return lines if len(lines) > 4 else []


def held_out_table(result: dict) -> list[str]:
    """Whether the held-out corrections ranked parent and child as the test split did."""
    rows = result["held_out_vs_test"]
    if not rows:
        return []
    agree = sum(r["same_order_whole+crops"] for r in rows)
    lines = [
        f"Held-out corrections against the test split (parent and child on the child's held-out "
        f"corrections, DDIM 3 x 5, whole frames and a crop per object; the same order as the test "
        f"split's whole-image Dice in {agree} of {len(rows)} runs):",
        "",
        "| task | recipe | minutes | held-out gain (whole + crops) | held-out gain (whole only) | test gain | same order |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | `{r['recipe']}` | {r['minutes']:g} | {r['held_out_gain_whole+crops']:+.3f} "
            f"| {r['held_out_gain_whole']:+.3f} | {r['test_gain']:+.3f} "
            f"| {'yes' if r['same_order_whole+crops'] else 'no'} |"
        )
    return lines


def full_frames_tables(result: dict) -> list[str]:
    """Every table of the results that has rows (make_table skips the whole when the JSON is absent)."""
    parts = [part for part in (test_table(result), choice_table(result), held_out_table(result)) if part]
    return [line for index, part in enumerate(parts) for line in ([""] if index else []) + part]


def _env(result: dict) -> str:
    e = result["environment"]
    return f"*{e['date']}, {e['machine']}, torch {e['torch']}, {e['threads']} threads, device {e['device']}*"
