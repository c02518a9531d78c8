"""Fine-tuning and pre-segmentation sharing a CPU: today's threads against the thread policy.

    python benchmarks/bench_contention.py [--seconds 45] [--repeats 2] [--data ../shared/data/ddti]

What the annotation queue runs, measured as it runs: the fine-tune is a real
``medsegdiff finetune`` process of the shipped default model on 8 DDTI corrections (steps/min
from its ``--progress-json`` lines), the pre-segmentation is the queue's own ``segment_item``
on DDTI test images in a worker thread of this process (images/min, whole images only).

Cases:
  (a) each alone on an otherwise idle machine;
  (b) together, as the queue runs them: fine-tune process + pre-segmentation in this process;
  (c) each beside one unrelated busy process (a 2-thread torch matmul loop).
Variants, alternating within each repeat (the order reversed on every other repeat):
  today   torch's default threads everywhere, OpenMP's default wait (the code before the policy);
  policy  the thread policy: the CLI's ``--threads auto`` alone, the plugin's share
          (``_cpu_share.start_finetune``: its count and OMP_WAIT_POLICY=PASSIVE) and the
          pre-segmentation worker's ``use_sampling_threads`` as the queue runs them;
  N / fN+sM  hand-picked thread counts (``--threads N`` and ``torch.set_num_threads``).

The thread count is what this benchmark varies, so it clears OMP_NUM_THREADS,
MEDSEGDIFF_THREADS and OMP_WAIT_POLICY for itself and its processes. Writes
benchmarks/results/contention_cpu.json with the load average seen at the start and the end;
run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MEDSEGDIFF_THREADS", "OMP_WAIT_POLICY")
BUSY_LOOP = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


@dataclass(frozen=True)
class Variant:
    name: str
    finetune: str | int | None = None  # "today", "auto" (the CLI), "plugin" (the queue's share), a count
    presegment: str | int | None = None  # "today", "policy", a count


@dataclass
class Case:
    name: str
    busy: bool
    variants: list[Variant]


@dataclass
class Run:
    case: str
    variant: str
    repeat: int
    finetune_steps_per_min: float | None = None
    presegment_images_per_min: float | None = None
    finetune_threads: int | str | None = None
    presegment_threads: list[int] = field(default_factory=list)
    images: float = 0.0
    loadavg_at_start: float = 0.0


def cases(hand: list[int]) -> list[Case]:
    finetunes = [Variant(str(n), finetune=n) for n in hand]
    presegments = [Variant(str(n), presegment=n) for n in hand]
    together = [Variant(f"f{f}+s{s}", finetune=f, presegment=s) for f in hand for s in hand]
    return [
        Case(
            "a_finetune",
            False,
            [
                Variant("today", "today"),
                Variant("policy", "auto"),
                Variant("plugin share", "plugin"),
                *finetunes,
            ],
        ),
        Case(
            "a_presegment",
            False,
            [Variant("today", None, "today"), Variant("policy", None, "policy"), *presegments],
        ),
        Case(
            "b_together",
            False,
            [Variant("today", "today", "today"), Variant("policy", "plugin", "policy"), *together],
        ),
        Case("c_finetune_busy", True, [Variant("today", "today"), Variant("policy", "auto"), *finetunes]),
        Case(
            "c_presegment_busy",
            True,
            [Variant("today", None, "today"), Variant("policy", None, "policy"), *presegments],
        ),
    ]


# --- the pieces: corrections, the fine-tune process, the pre-segmentation worker, a busy process ---


def prepare(data: Path, home: Path, corrections: int, images: int) -> tuple[Path, list[Any]]:
    """A corrections store of ``corrections`` DDTI train pairs and ``images`` DDTI test images."""
    import numpy as np

    from medsegdiff_training.corrections import CorrectionsStore
    from medsegdiff_training.data import read_array

    split = dict(line.split(",", 1) for line in (data / "split.csv").read_text().split()[1:])
    train = [name for name, part in split.items() if part == "train"][:corrections]
    test = [name for name, part in split.items() if part == "test"][:images]
    store = CorrectionsStore(home / "corrections")
    for name in train:
        image = read_array(data / "images" / f"{name}.png")
        mask = (read_array(data / "masks" / f"{name}.gif") > 127).astype(np.uint8)
        store.add(image, mask, source_path=name)
    return store.root, [read_array(data / "images" / f"{name}.png") for name in test]


class FinetuneProcess:
    """``medsegdiff finetune`` of the default model, its progress lines timed as they arrive."""

    def __init__(self, store: Path, run_dir: Path, threads: list[str], environment: dict[str, str]) -> None:
        argv = [sys.executable, "-m", "medsegdiff_training", *threads, "finetune", "--store", str(store)]
        argv += ["--parent", "default", "--steps", "1000000", "--device", "cpu", "--progress-json"]
        argv += ["--run-dir", str(run_dir)]
        self.process = subprocess.Popen(
            argv, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.events: list[tuple[float, int, float]] = []  # (arrival, step, the child's elapsed_s)
        self.stderr: list[str] = []
        self.started = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "progress":
                self.events.append((time.perf_counter(), int(event["step"]), float(event["elapsed_s"])))
                self.started.set()

    def steps_per_min(self, start: float, end: float) -> float:
        """Steps between the window's edges, as the progress lines said (one every 0.5 s at most)."""

        def step_at(moment: float) -> int:
            return max((step for arrival, step, _ in self.events if arrival <= moment), default=0)

        return 60 * (step_at(end) - step_at(start)) / (end - start)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the CLI stops cleanly, state saved
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Presegmenter(threading.Thread):
    """The queue's pre-segmentation, one image after another, until told to stop.

    Each image is ``_queue_presegment.segment_item``'s work: the thread count (the policy's
    ``use_sampling_threads``, today's default or a hand-picked one), the cached default model,
    the recommended settings, the uncertainty score. Every sampler step is timed, so that a
    window counts thirds of images (DDIM 3 steps), not only whole ones.
    """

    def __init__(self, images: list[Any], mode: str | int, default_threads: int) -> None:
        super().__init__(daemon=True)
        self.images, self.mode, self.default_threads = images, mode, default_threads
        self.step_times: list[float] = []
        self.steps_per_image = 0
        self.threads: list[int] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def _set_threads(self) -> int:
        import torch

        from napari_medsegdiff._cpu_share import use_sampling_threads

        if self.mode == "policy":
            return use_sampling_threads()  # what segment_item calls first
        torch.set_num_threads(self.default_threads if self.mode == "today" else int(self.mode))
        return torch.get_num_threads()

    def run(self) -> None:
        from medsegdiff_training.annotation_queue import uncertainty_score
        from medsegdiff_training.inference import SamplingSettings
        from medsegdiff_training.samplers import RECOMMENDED_ENSEMBLE
        from napari_medsegdiff._models import get_segmenter

        settings = SamplingSettings(ensemble=RECOMMENDED_ENSEMBLE)
        self.steps_per_image = settings.resolved_steps()
        try:
            index = 0
            while not self.stopping.is_set():
                self.threads.append(self._set_threads())
                segmenter = get_segmenter("default", "cpu")
                image = self.images[index % len(self.images)]
                result = segmenter.segment(image, settings, on_step=self._stepped)
                uncertainty_score(result.probabilities, result.uncertainty)
                index += 1
        except BaseException as error:  # reported by the main thread
            self.error = error

    def _stepped(self, _step: Any) -> None:
        self.step_times.append(time.perf_counter())

    def images_per_min(self, start: float, end: float) -> tuple[float, float]:
        steps = sum(1 for moment in self.step_times if start <= moment <= end)
        if not steps:
            raise RuntimeError("no sampler step finished inside the window; give more --seconds")
        images = steps / self.steps_per_image
        return 60 * images / (end - start), images


# --- one run ---------------------------------------------------------------------------------------


def finetune_setup(mode: str | int, default_threads: int, key: object) -> tuple[list[str], dict[str, str]]:
    """The fine-tune's command-line thread option and environment for a variant."""
    environment = dict(os.environ)
    if mode == "today":
        return ["--threads", str(default_threads)], environment  # the CLI's old default: torch's own
    if mode == "auto":
        return [], environment  # the CLI's new default measures
    if mode == "plugin":
        from napari_medsegdiff._cpu_share import start_finetune

        return [], {**environment, **start_finetune(key)}  # what FinetuneProcess.start() passes
    return ["--threads", str(mode)], environment


def run_once(case: Case, variant: Variant, repeat: int, setup: dict[str, Any]) -> Run:
    from napari_medsegdiff._cpu_share import end_finetune

    run = Run(case.name, variant.name, repeat, loadavg_at_start=round(os.getloadavg()[0], 2))
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=dict(os.environ)) if case.busy else None
    key, finetune, worker = object(), None, None
    try:
        if busy is not None:
            time.sleep(5)  # torch loaded and spinning before anything is measured or decided
        if variant.finetune is not None:
            threads, environment = finetune_setup(variant.finetune, setup["default_threads"], key)
            run_dir = setup["home"] / "runs" / f"{case.name}-{variant.name.replace(' ', '-')}-{repeat}"
            finetune = FinetuneProcess(setup["store"], run_dir, threads, environment)
            if not finetune.started.wait(600):
                raise RuntimeError(f"the fine-tune did not start: {''.join(finetune.stderr[-5:])}")
            run.finetune_threads = environment.get("MEDSEGDIFF_THREADS") or (
                threads[1] if threads else "auto"
            )
        if variant.presegment is not None:
            worker = Presegmenter(setup["images"], variant.presegment, setup["default_threads"])
            worker.start()
        start = time.perf_counter()
        time.sleep(setup["seconds"])
        end = time.perf_counter()
        if worker is not None:
            worker.stopping.set()
            worker.join()
            if worker.error is not None:
                raise worker.error
            run.presegment_images_per_min, run.images = worker.images_per_min(start, end)
            run.presegment_threads = sorted(set(worker.threads))
        if finetune is not None:
            run.finetune_steps_per_min = finetune.steps_per_min(start, end)
            chosen = [line for line in finetune.stderr if "busy with other work" in line]
            if chosen:  # the CLI's own choice: "medsegdiff: 1 thread (auto: ...)"
                run.finetune_threads = int(chosen[0].split()[1])
    finally:
        if worker is not None:
            worker.stopping.set()
        if finetune is not None:
            finetune.stop()
        end_finetune(key)
        if busy is not None:
            busy.kill()
            busy.wait()
    return run


# --- the summary -----------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def summarise(runs: list[Run], all_cases: list[Case]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for case in all_cases:
        rows = {}
        for variant in case.variants:
            mine = [r for r in runs if r.case == case.name and r.variant == variant.name]
            rows[variant.name] = {
                "finetune_steps_per_min": _median([r.finetune_steps_per_min for r in mine]),
                "presegment_images_per_min": _median([r.presegment_images_per_min for r in mine]),
                "finetune_steps_per_min_runs": [
                    r.finetune_steps_per_min and round(r.finetune_steps_per_min, 1) for r in mine
                ],
                "presegment_images_per_min_runs": [
                    r.presegment_images_per_min and round(r.presegment_images_per_min, 2) for r in mine
                ],
                "finetune_threads": sorted(
                    {str(r.finetune_threads) for r in mine if r.finetune_threads is not None}
                ),
                "presegment_threads": sorted({t for r in mine for t in r.presegment_threads}),
            }
        measure = (
            "finetune_steps_per_min"
            if rows["today"]["finetune_steps_per_min"] is not None
            else "presegment_images_per_min"
        )
        hand = {
            name: row[measure]
            for name, row in rows.items()
            if name not in ("today", "policy", "plugin share")
        }
        best = max(hand, key=lambda name: hand[name] or 0.0)
        policy, today = rows["policy"][measure], rows["today"][measure]
        summary[case.name] = {
            "measure": measure,
            "variants": rows,
            "best_hand_picked": best,
            "policy_over_today": round(policy / today, 2) if policy and today else None,
            "policy_over_best_hand_picked": round(policy / hand[best], 2) if policy and hand[best] else None,
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_contention.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ddti")
    parser.add_argument("--seconds", type=float, default=45.0, help="measured window per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--hand", default=None, help="hand-picked counts, e.g. 1,2 (default: 1 .. usable cores)"
    )
    parser.add_argument("--cases", default=None, help="only these cases, e.g. b_together,c_finetune_busy")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "contention_cpu.json")
    args = parser.parse_args(argv)
    if not (args.data / "split.csv").is_file():
        print(
            f"bench_contention.py: no DDTI data at {args.data} (see ../shared/data/README.md)",
            file=sys.stderr,
        )
        return 1

    for name in THREAD_VARIABLES:
        os.environ.pop(name, None)  # before torch loads: today's default is torch's own
    import torch
    from _common import environment

    from medsegdiff_training.threads import CpuMonitor, measure_load, usable_cores

    default_threads = torch.get_num_threads()  # today's: nothing set it yet
    hand = [int(n) for n in args.hand.split(",")] if args.hand else list(range(1, int(usable_cores()) + 1))
    chosen = [c for c in cases(hand) if args.cases is None or c.name in args.cases.split(",")]
    home = Path(tempfile.mkdtemp(prefix="bench-contention-"))
    os.environ["MEDSEGDIFF_HOME"] = str(home)
    store, images = prepare(args.data, home, corrections=8, images=10)
    setup = {
        "store": store,
        "images": images,
        "home": home,
        "seconds": args.seconds,
        "default_threads": default_threads,
    }
    warm = Presegmenter(images[:1], "today", default_threads)  # load the model once, outside every window
    warm.stopping.set()
    warm.run()
    started = {
        "loadavg": list(os.getloadavg()),
        "busy_cores": round(measure_load(monitor=CpuMonitor(look_s=1.0)).busy, 2),
    }
    runs: list[Run] = []
    for repeat in range(args.repeats):
        for case in chosen:
            order = case.variants if repeat % 2 == 0 else case.variants[::-1]
            for variant in order:
                run = run_once(case, variant, repeat, setup)
                runs.append(run)
                print(json.dumps(run.__dict__), flush=True)
    ended = {
        "loadavg": list(os.getloadavg()),
        "busy_cores": round(measure_load(monitor=CpuMonitor(look_s=1.0)).busy, 2),
    }
    result = {
        "environment": {**environment("cpu"), "threads": f"torch default {default_threads}, varied"},
        "usable_cores": usable_cores(),
        "seconds_per_run": args.seconds,
        "repeats": args.repeats,
        "workloads": {
            "finetune": "medsegdiff finetune of the shipped default model on 8 DDTI train corrections "
            "(the fine-tune recipe's defaults), steps/min from its progress lines",
            "presegment": "the queue's segment_item (default model, recommended settings) on 10 DDTI "
            "test images in a worker thread, whole images per minute",
            "busy": "python -c: torch.set_num_threads(2); a 1024x1024 matmul loop",
        },
        "machine_at_start": started,
        "machine_at_end": ended,
        "summary": summarise(runs, chosen),
        "runs": [run.__dict__ for run in runs],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
