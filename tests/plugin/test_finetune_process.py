"""The fine-tune process's lines, read by the core's events module: a mismatch is a failure.

A real child process prints the lines; only the command differs from a fine-tune's.
"""

from __future__ import annotations

import json
import sys

import pytest

from medsegdiff_training.finetune_events import FinetuneDone, FinetuneProgress
from medsegdiff_training.finetune_options import FinetuneOptions
from napari_medsegdiff._finetune_process import FinetuneProcess

pytestmark = pytest.mark.gui

DONE = FinetuneDone(
    version="v2", parent="tiny", path="/models/v2", steps=3, validation_dice_before=0.5,
    validation_dice_after=0.75, adaptation={}, seconds=1.0, cpu_seconds=1.0,
)  # fmt: skip


def run_printing(qtbot, lines: list[str]) -> tuple[list, list, list]:
    """A FinetuneProcess whose child prints ``lines``; (progress, done, failed) as emitted."""
    process = FinetuneProcess(FinetuneOptions(parent="tiny"))
    progress, done, failed = [], [], []
    process.progress.connect(progress.append)
    process.done.connect(done.append)
    process.failed.connect(failed.append)
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line, flush=True)\n"
    process.process.start(sys.executable, ["-c", script, *lines])
    qtbot.waitUntil(lambda: bool(done or failed), timeout=30_000)
    return progress, done, failed


def test_the_processs_events_arrive_as_the_cores_objects(qtbot):
    step = FinetuneProgress(1, total_steps=3, loss=0.5, validation_dice=None, elapsed_s=0.1, remaining_s=0.2)
    progress, done, failed = run_printing(qtbot, ["a library's print", step.to_json(), DONE.to_json()])
    assert progress == [step] and done == [DONE] and failed == []


def test_a_done_line_with_a_renamed_field_is_a_failure_never_a_silent_keep(qtbot):
    document = json.loads(DONE.to_json())
    document["new_version"] = document.pop("version")  # a core that renamed the field
    progress, done, failed = run_printing(qtbot, [json.dumps(document)])
    assert done == [] and len(failed) == 1
    assert "lacks version and has unknown new_version" in failed[0] and "do not match" in failed[0]
