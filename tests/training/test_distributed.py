"""``torchrun`` runs the same ``medsegdiff train`` with DistributedDataParallel (gloo on CPUs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.checkpoint import load_checkpoint, read_checkpoint_config
from medsegdiff_training.distributed import init_distributed, launched_by_torchrun, max_over_ranks


def test_a_single_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not launched_by_torchrun()
    context = init_distributed("cpu")
    assert (context.rank, context.world_size, context.device, context.backend) == (0, 1, "cpu", None)
    assert context.is_main and not context.active
    import torch

    assert max_over_ranks(2, torch.device("cpu")) == 2


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes_keeps_every_rank_in_step(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 10:24] = 255
        Image.fromarray((rng.random((32, 32)) * 120 + (mask > 0) * 100).astype(np.uint8)).save(
            images / f"i{index}.png"
        )
        Image.fromarray(mask).save(masks / f"i{index}.png")
    env = {**os.environ, "MEDSEGDIFF_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "medsegdiff_training",
        "train",
        "--images",
        str(images),
        "--masks",
        str(masks),
        "--config",
        "tiny",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--val-fraction",
        "0",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "run"),
        "--progress-json",
    ]
    # its own process group, so that a hang cannot leave worker processes behind
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in 240 s:\n{stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("done") == 1  # rank 0 alone reports and writes
    training = read_checkpoint_config(tmp_path / "run" / "final")["training"]
    assert training["world_size"] == 2 and training["steps"] == 3
    # each rank hashed its own raw and EMA weights after the last step: DDP kept them identical
    digests = training["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert "2 process(es) on cpu" in stderr
    load_checkpoint(tmp_path / "run" / "final")
