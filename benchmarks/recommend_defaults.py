"""Read the GPU check's results and say which defaults and goals they support.

    python benchmarks/recommend_defaults.py                 # benchmarks/results/*_cuda.json
    python benchmarks/recommend_defaults.py --device cpu --suffix _dry    # the dry run's files

Prints, from ``fast_paths``, ``training``, ``compile`` and ``vs_lucidrains`` results: the
precision ``auto`` should pick per task (``precision.CUDA_AUTO``), whether CUDA graphs and
channels_last pay (``fast_paths.CUDA_DEFAULTS``), compile's break-even in steps, and issue
16's goals for B at 256x256 (step <= 5 ms at batch 1 and <= 30 ms at batch 32, training >=
250 images/s, >= 3x the peer), each met or not, with the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _best(runs: list[dict], batch: int, keep) -> dict | None:
    candidates = [r for r in runs if r["batch"] == batch and keep(r)]
    return min(candidates, key=lambda r: r["ms_per_step"]) if candidates else None


def sampling(fast: dict) -> list[str]:
    runs, lines = fast["runs"], []
    batches = sorted({r["batch"] for r in runs})
    bf16_wins = []
    for batch in batches:
        best = _best(runs, batch, lambda r: True)
        by_precision = {p: _best(runs, batch, lambda r, p=p: r["precision"] == p) for p in ("fp32", "bf16")}
        eager = _best(runs, batch, lambda r: not r["fast_paths"].get("cuda_graphs"))
        graphed = _best(runs, batch, lambda r: r["fast_paths"].get("cuda_graphs"))
        lines.append(
            f"batch {batch}: fastest {best['variant']} {best['ms_per_step']:.2f} ms/step"
            + "".join(f"; best {p} {r['ms_per_step']:.2f}" for p, r in by_precision.items() if r)
            + (
                f"; eager {eager['ms_per_step']:.2f} vs graphs {graphed['ms_per_step']:.2f}"
                if eager and graphed
                else ""
            )
        )
        if all(by_precision.values()):
            bf16_wins.append(by_precision["bf16"]["ms_per_step"] <= by_precision["fp32"]["ms_per_step"])
    choice = "bf16" if bf16_wins and all(bf16_wins) else "fp32"
    lines.append(f"=> CUDA_AUTO['sampling'] = {choice!r} (bf16 at least as fast at every batch: {bf16_wins})")
    largest = max(batches)
    best = _best(runs, largest, lambda r: True)
    lines.append(
        f"=> channels_last {'pays' if best['fast_paths'].get('channels_last') else 'does not pay'} "
        f"at batch {largest}; CUDA graphs "
        f"{'pay' if _best(runs, min(batches), lambda r: True)['fast_paths'].get('cuda_graphs') else 'do not pay'} "
        f"at batch {min(batches)}"
    )
    return lines


def compile_break_even(fast: dict, compiled: dict) -> list[str]:
    lines = []
    for run in compiled["runs"]:
        same = [
            r
            for r in fast["runs"]
            if r["batch"] == run["batch"]
            and r["precision"] == run["precision"]
            and "compile" not in r["variant"]
        ]
        if not same:
            continue
        reference = min(same, key=lambda r: r["ms_per_step"])
        saved = reference["ms_per_step"] - run["ms_per_step"]
        extra = run["first_run_s"] - reference["first_run_s"]
        verdict = f"pays after {extra / saved * 1000:.0f} steps" if saved > 0 else "never pays (no faster)"
        lines.append(
            f"compile at batch {run['batch']}: {run['ms_per_step']:.2f} ms/step against {reference['variant']} "
            f"{reference['ms_per_step']:.2f}; start-up {extra:.0f} s more: {verdict}"
        )
    return lines


def training(result: dict) -> list[str]:
    lines = []
    runs = result["runs"]
    for batch in sorted({r["batch"] for r in runs}):
        at = [r for r in runs if r["batch"] == batch]
        best = max(at, key=lambda r: r["images_per_s"])
        per = {(r["precision"], r.get("channels_last", False)): r["images_per_s"] for r in at}
        lines.append(
            f"training batch {batch}: "
            + ", ".join(f"{p}{' NHWC' if cl else ''} {v:.1f}" for (p, cl), v in per.items())
            + f" images/s; fastest {best['precision']}{' NHWC' if best.get('channels_last') else ''}"
        )
    fp32 = max((r["images_per_s"] for r in runs if r["precision"] == "float32"), default=0)
    bf16 = max((r["images_per_s"] for r in runs if r["precision"] != "float32"), default=0)
    lines.append(f"=> CUDA_AUTO['training'] = {'bf16' if bf16 >= fp32 and bf16 else 'fp32'!r}")
    for loop in result.get("trainer", []):
        lines.append(f"training loop (train()) batch {loop['batch']}: {loop['images_per_s']:.1f} images/s")
    return lines


def goals(fast: dict | None, train: dict | None, peer: dict | None) -> list[str]:
    lines = ["goals (B at 256x256):"]

    def check(label: str, value: float | None, target: float, below: bool) -> None:
        if value is None:
            lines.append(f"  {label}: not measured")
            return
        met = value <= target if below else value >= target
        lines.append(
            f"  {label}: {value:.2f} ({'met' if met else 'NOT met'}; goal {'<=' if below else '>='} {target:g})"
        )

    if fast:
        for batch, target in ((1, 5.0), (32, 30.0)):
            best = _best(fast["runs"], batch, lambda r: True)
            check(f"ms per step, batch {batch}", best["ms_per_step"] if best else None, target, True)
    if train:
        rates = [r["images_per_s"] for r in train["runs"]] + [
            r["images_per_s"] for r in train.get("trainer", [])
        ]
        check("training images/s", max(rates) if rates else None, 250.0, False)
    if peer:
        for name, pair in peer["pairs"].items():
            check(f"vs peer {name}, step speed-up (fp32)", pair["step_speedup"], 3.0, False)
            check(f"vs peer {name}, training speed-up (fp32)", pair["train_speedup"], 3.0, False)
            check(
                f"vs peer {name}, step speed-up (each at its fastest)",
                pair["best_step"]["speedup"],
                3.0,
                False,
            )
            check(
                f"vs peer {name}, training speed-up (each at its fastest)",
                pair["best_train"]["speedup"],
                3.0,
                False,
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--suffix", default="")
    args = parser.parse_args()
    tag = f"{args.device}{args.suffix}"
    fast, train = _load(f"fast_paths_{tag}"), _load(f"training_{tag}")
    compiled, peer = _load(f"compile_{tag}"), _load(f"vs_lucidrains_{tag}")
    lines: list[str] = []
    if fast and fast["runs"]:
        lines += sampling(fast)
        if compiled and compiled["runs"]:
            lines += compile_break_even(fast, compiled)
    if train and train["runs"]:
        lines += training(train)
    lines += goals(fast, train, peer)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
