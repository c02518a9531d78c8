"""What every benchmark records beside its numbers: machine, threads, versions, date."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    device = torch.device(device)
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def timed(function, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median and spread of wall-clock seconds over ``repeats`` calls (after warm-up)."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "repeats": repeats,
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    print(f"wrote {path}")
    return path


def fixed_blob_baseline(
    train_masks: Sequence[np.ndarray], test_masks: Sequence[np.ndarray]
) -> dict[str, float]:
    """The no-model baseline: the thresholded mean training mask, resized to each test image."""
    from medsegdiff_training.metrics import score, summarise_scores
    from medsegdiff_training.preprocess import resize

    size = (128, 128)
    mean = torch.stack(
        [resize(torch.from_numpy((m > 0).astype(np.float32))[None, None], size)[0, 0] for m in train_masks]
    ).mean(0)
    scores = []
    for truth in test_masks:
        blob = resize(mean[None, None], truth.shape)[0, 0].numpy() > 0.5
        scores.append(score(blob.astype(np.uint8), truth > 0, 2))
    return summarise_scores(scores)
