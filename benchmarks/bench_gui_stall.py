"""How long the GUI thread stalls while the widget segments: a heartbeat timer in a real viewer.

    xvfb-run -a -s "-screen 0 1920x1080x24" python benchmarks/bench_gui_stall.py --runs 5 --threads 1

A napari viewer with the MedSegDiff widget docked opens the ultrasound sample and presses
**Segment** ``--runs`` times with the recommended settings (the shipped ``default`` model,
DDIM 3 steps x ensemble 5, on the CPU). A ``QTimer`` on the GUI thread ticks every 5 ms; a
*stall* is the gap between two ticks, so the longest gap is the longest time the viewer could
not answer a click. Each run is measured from the press until one second after the result
layers are in; the first run includes importing PyTorch and loading the model. The trivial
baseline is the longest gap in one second of the same viewer doing nothing (what the machine's
scheduler alone costs); the floor is the longest gap while napari itself adds one empty
300x300 Labels layer and draws it (what any plugin that leaves a Labels layer pays once, at
the end of a run). ``--trace`` also samples the GUI thread's stack whenever a tick is
more than 50 ms late, to say where a stall comes from.

The numbers depend on the machine's load (``loadavg`` is recorded), on the software OpenGL of
Xvfb (llvmpipe) and on the threads: PyTorch runs with ``--threads`` (1 by default). Results go
to ``benchmarks/results/gui_stall.json`` (``--out``); ``make_table.py`` renders them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

TICK_MS = 5
SETTLE_S = 1.0


class Heartbeat:
    """Tick timestamps of a GUI-thread timer, and stack samples of late ticks (``trace``)."""

    def __init__(self, trace: bool = False) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.samples: list[tuple[float, str]] = []
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self._main = threading.main_thread().ident
        self._watching = trace
        if trace:
            threading.Thread(target=self._watch, daemon=True).start()
        self.timer.start()

    def _watch(self) -> None:
        while self._watching:
            time.sleep(0.01)
            if self.ticks and time.perf_counter() - self.ticks[-1] > 0.05:
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    stack = "".join(traceback.format_stack(frame, limit=14)[-14:])
                    self.samples.append((time.perf_counter(), stack))

    def longest_gap(self, start: float, end: float) -> float:
        """The longest gap between ticks within [start, end] (the edges count as ticks)."""
        inside = [start, *(t for t in self.ticks if start <= t <= end), end]
        return max(b - a for a, b in zip(inside, inside[1:], strict=False))

    def stop(self) -> None:
        self._watching = False
        self.timer.stop()


def wait(app, seconds: float, until=None) -> None:
    """Run the event loop for ``seconds`` (or until ``until()`` is true)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.001)


def measure_runs(app, dock, beat: Heartbeat, count: int) -> list[dict]:
    """Press Segment ``count`` times; the longest gaps during each run and in the second after it."""
    runs = []
    for run in range(count):
        wait(app, 0.5)  # the layers of earlier runs stay, as they would for an annotator
        started = time.perf_counter()
        dock.run_button.click()
        wait(app, 600, until=lambda: dock.worker is None)
        finished = time.perf_counter()
        wait(app, SETTLE_S)
        end = time.perf_counter()
        runs.append(
            {
                "run": run + 1,
                "longest_stall_s": round(beat.longest_gap(started, end), 4),
                "longest_stall_during_s": round(beat.longest_gap(started, finished), 4),
                "longest_stall_at_end_s": round(beat.longest_gap(finished - 0.05, end), 4),
                "run_s": round(finished - started, 3),
                "status": dock.status.text(),
            }
        )
        print(runs[-1], flush=True)
    return runs


def measure_floor(app, viewer, beat: Heartbeat, count: int = 3) -> list[float]:
    """The longest gap while napari adds one empty 300x300 Labels layer and draws it."""
    import numpy as np

    floors = []
    for _ in range(count):
        started = time.perf_counter()
        viewer.add_labels(np.zeros((300, 300), np.uint8), name="floor")
        wait(app, SETTLE_S)
        floors.append(beat.longest_gap(started, time.perf_counter()))
    return floors


def late_tick_stacks(beat: Heartbeat) -> dict[str, int]:
    """The innermost lines of the GUI thread's stack in late ticks, counted."""
    traces: dict[str, int] = {}
    for _, stack in beat.samples:
        lines = [line.strip() for line in stack.strip().splitlines() if line.strip().startswith("File")]
        key = " <- ".join(reversed(lines[-4:]))
        traces[key] = traces.get(key, 0) + 1
    return traces


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--label", default="", help="what code was measured (e.g. a commit)")
    parser.add_argument("--out", default="gui_stall")
    args = parser.parse_args()
    os.environ.setdefault("MEDSEGDIFF_HOME", tempfile.mkdtemp(prefix="medsegdiff-bench-"))  # default selected
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1920, 1080)
    app = QApplication.instance()
    _, dock = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    viewer.open_sample("napari-medsegdiff", "ultrasound")
    wait(app, 1.0)
    beat = Heartbeat(trace=args.trace)
    wait(app, 0.5)
    idle_start = time.perf_counter()
    wait(app, 1.0)
    idle = beat.longest_gap(idle_start, time.perf_counter())
    import_torch_in_worker = "torch" not in sys.modules
    runs = measure_runs(app, dock, beat, args.runs)
    floors = measure_floor(app, viewer, beat)  # after the runs, with their layers in the scene
    beat.stop()
    traces = late_tick_stacks(beat)
    viewer.close()

    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    from _common import environment, write_result

    torch.set_num_threads(args.threads)
    write_result(
        args.out,
        {
            "benchmark": "longest GUI-thread stall (5 ms heartbeat) while Segment runs on the ultrasound sample",
            "label": args.label,
            "settings": "default model, DDIM 3 steps x ensemble 5, CPU",
            "torch_imported_by_first_run": import_torch_in_worker,
            "idle_longest_gap_s": round(idle, 4),
            "floor_add_labels_layer_s": [round(f, 4) for f in floors],
            "runs": runs,
            "first_run_longest_stall_s": runs[0]["longest_stall_s"],
            "later_runs_longest_stall_s": max((r["longest_stall_s"] for r in runs[1:]), default=None),
            "loadavg": os.getloadavg(),
            "traces": dict(sorted(traces.items(), key=lambda kv: -kv[1])[:15]) if args.trace else None,
            "environment": environment("cpu"),
        },
    )


if __name__ == "__main__":
    main()
