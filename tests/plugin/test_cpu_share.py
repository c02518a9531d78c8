"""The viewer's CPU share: a fine-tune process gets its threads and a passive OpenMP wait,
and the sampling workers leave those cores alone while it runs.

A real fine-tune process of a tiny model (two steps); its environment is read from
``/proc/PID/environ`` while it runs, its thread count from the checkpoint it writes.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {name.decode(): value.decode(errors="replace") for name, value in pairs}


def _sampling_threads_in_a_worker() -> tuple[int, int]:
    """What a worker thread's use_sampling_threads() chose, and torch's count there after it."""
    import torch

    from napari_medsegdiff._cpu_share import use_sampling_threads

    seen: list[int] = []

    def work() -> None:
        seen.append(use_sampling_threads())
        seen.append(torch.get_num_threads())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    return seen[0], seen[1]


@pytest.fixture
def torch_threads():
    """Whatever the workers set, the session's torch threads come back afterwards."""
    import torch

    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/PID/environ (Linux)")
def test_a_finetune_process_gets_its_share_and_a_passive_openmp_wait(
    qtbot, tiny_model, medsegdiff_home, monkeypatch
):

    from dataclasses import replace

    from medsegdiff_training.corrections import CorrectionsStore
    from medsegdiff_training.finetune_options import FinetuneOptions
    from medsegdiff_training.threads import ENV_THREADS, usable_cores
    from medsegdiff_training.train_config import DEFAULT_FINETUNE_CONFIG
    from napari_medsegdiff._cpu_share import finetune_threads
    from napari_medsegdiff._finetune_process import FinetuneProcess

    monkeypatch.delenv(ENV_THREADS, raising=False)  # the viewer measures its share, as a user's does
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    store = CorrectionsStore(medsegdiff_home / "corrections")
    rng = np.random.default_rng(0)
    for index in range(2):
        mask = np.zeros((32, 32), np.uint8)
        mask[8 + index : 20 + index, 10:22] = 1
        store.add((rng.normal(70, 15, mask.shape) + mask * 110).astype(np.float32), mask)

    config = replace(DEFAULT_FINETUNE_CONFIG, steps=2, device="cpu")
    process = FinetuneProcess(FinetuneOptions(parent="tiny", store=store.root, config=config))
    outcome: list[object] = []
    process.done.connect(outcome.append)
    process.failed.connect(outcome.append)
    process.start()
    assert process.process.waitForStarted(30_000)
    share = finetune_threads()
    environment = _environment_of(int(process.process.processId()))
    assert environment["OMP_WAIT_POLICY"] == "PASSIVE"
    assert environment[ENV_THREADS] == environment["OMP_NUM_THREADS"] == str(share)
    assert 1 <= share <= max(1, math.floor(usable_cores()))

    # meanwhile a sampling worker takes what the fine-tune leaves
    sampling, in_worker = _sampling_threads_in_a_worker()
    assert sampling == in_worker and sampling >= 1
    assert sampling + share <= max(share + 1, math.floor(usable_cores() + 0.3))

    qtbot.waitUntil(lambda: bool(outcome), timeout=180_000)
    assert hasattr(outcome[0], "path"), outcome  # FinetuneDone, not a failure message
    assert finetune_threads() == 0  # ended: its cores are free again
    record = json.loads((Path(outcome[0].path) / "config.json").read_text())["training"]["threads"]
    assert record == {"threads": share, "source": ENV_THREADS}  # the child computed with its share
