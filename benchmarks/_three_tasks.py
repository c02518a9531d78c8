"""The three tasks of the paper's Table I beside this project's models (``make_table.py --page three-tasks``).

The paper's numbers are constants here; ours come from the quality benchmarks' JSON, each at
the widget's and the CLI's default sampler (DDIM 3 steps x ensemble 5).
"""

from __future__ import annotations

from collections.abc import Callable

# MedSegDiff's Table I (Wu et al., MIDL 2023), Dice in per cent: the cells quoted in this
# project's issues and docs; the empty ones are in the paper.
PAPER_TABLE_I = {
    "cup": {"MedSegDiff-B": 86.9, "nnUNet": None, "TransUNet": None},
    "brain": {"MedSegDiff-B": 88.9, "nnUNet": 88.2, "TransUNet": 86.6},
    "thyroid": {"MedSegDiff-B": 84.8, "nnUNet": None, "TransUNet": None},
}
# task, the paper's data, our result file, our data and protocol, the Dice key, the trivial baseline's
THREE_TASKS = [
    (
        "cup",
        "optic cup, fundus",
        "REFUGE-2",
        "quality_drishti",
        "Drishti-GS1 Test (51 disc-centred crops), `drishti-disc-cup` (rim + cup, 3 classes)",
        "cup_dice",
        "majority label map",
    ),
    (
        "brain",
        "brain tumour, MRI",
        "BraTS-2021: four modalities (T1, T1ce, T2, FLAIR), volumes",
        "quality_lgg",
        "LGG MRI test split (57 whole FLAIR slices of 22 patients, FLAIR only), `lgg-flair`",
        "dice",
        "everything is tumour",
    ),
    (
        "thyroid",
        "thyroid nodule, ultrasound",
        "DDTI",
        "quality_ddti",
        "DDTI test split (132 nodule-centred crops), `default`",
        "dice",
        "fixed blob",
    ),
]
TRIVIAL_KEYS = {"majority label map": "majority_map", "everything is tumour": "all_foreground"}


def _per_cent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _default_setting(result: dict) -> dict | None:
    """The result at the widget's and the CLI's default, DDIM 3 steps x ensemble 5."""
    for r in result["results"]:
        if (r["settings"]["sampler"], r["settings"]["steps"], r["settings"]["ensemble"]) == ("ddim", 3, 5):
            return r
    return None


def three_tasks_table(load: Callable[[str], dict | None]) -> list[str]:
    """The paper's Table I rows beside ours (``load(name)``: a result file's content), Dice in per cent."""
    lines = [
        "| task | the paper's data | MedSegDiff-B | nnUNet | TransUNet | our data and model | "
        "ours, DDIM 3 x 5 | plain U-Net, same CPU budget | trivial baseline |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for key, task, paper_data, name, ours, dice_key, trivial in THREE_TASKS:
        paper, result = PAPER_TABLE_I[key], load(name)
        row = _default_setting(result) if result else None
        unet = (result or {}).get("baselines", {}).get("unet_same_budget")
        baseline = (result or {}).get("baselines", {}).get(TRIVIAL_KEYS.get(trivial, "fixed_blob"))
        lines.append(
            f"| {task} | {paper_data} | "
            + " | ".join(
                "–" if paper[m] is None else f"{paper[m]:.1f}"
                for m in ("MedSegDiff-B", "nnUNet", "TransUNet")
            )
            + f" | {ours} | **{_per_cent(row['summary'][dice_key] if row else None)}** | "
            f"{_per_cent(unet[dice_key] if unet else None)} | "
            f"{trivial} {_per_cent(baseline[dice_key] if baseline else None)} |"
        )
    return lines
