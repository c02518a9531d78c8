"""Issue 28, class 1: two fine-tunes at once both register, each with its own weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.registry import ModelRegistry

# A child that imports everything, says it is ready, waits for the go, then runs the CLI with
# the clock stopped at one second: the two fine-tunes start "in the same second" every time.
CHILD = """
import sys, time
from pathlib import Path
real_strftime = time.strftime
time.strftime = lambda form, *when: real_strftime(form, *(when or (time.localtime(1.8e9),)))
from medsegdiff_training import cli
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.write_text("ready")
while not go.exists():
    time.sleep(0.05)
sys.exit(cli.main(sys.argv[3:]))
"""


def _start(tmp_path: Path, name: str, args: list[str], home: Path) -> tuple[subprocess.Popen, Path]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MEDSEGDIFF_HOME": str(home)}
    environment["OMP_NUM_THREADS"] = "1"
    ready = tmp_path / f"ready-{name}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ready), str(tmp_path / "go"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    return child, ready


def test_two_finetunes_started_in_the_same_second_both_register_their_own_weights(tmp_path, registry):
    home = tmp_path / "home"
    store = CorrectionsStore(tmp_path / "store")
    labels = np.zeros((40, 50), np.uint8)
    labels[5:20, 5:20] = 1
    store.add(np.random.default_rng(0).random((40, 50)), labels)
    children = {}
    for seed in ("1", "2"):
        args = [
            "--threads", "1", "finetune", "--store", str(store.root), "--parent", "good", "--steps", "3",
            "--batch-size", "1", "--seed", seed, "--registry", str(registry.root), "--device", "cpu",
            "--progress-json",
        ]  # fmt: skip
        children[seed] = _start(tmp_path, seed, args, home)
    try:
        deadline = time.monotonic() + 300
        while not all(ready.exists() for _, ready in children.values()):
            assert time.monotonic() < deadline and all(c.poll() is None for c, _ in children.values())
            time.sleep(0.05)
        (tmp_path / "go").write_text("go")
        outcomes = {seed: child.communicate(timeout=600) for seed, (child, _) in children.items()}
    finally:
        for child, _ in children.values():
            if child.poll() is None:  # a failed wait: leave no process behind
                child.kill()
                child.communicate()
    done = {}
    for seed, (out, err) in outcomes.items():
        assert children[seed][0].returncode == 0, err.decode(errors="replace")
        events = [json.loads(line) for line in out.splitlines() if line.startswith(b"{")]
        done[seed] = next(event for event in events if event["event"] == "done")
    versions = {seed: event["version"] for seed, event in done.items()}
    assert len(set(versions.values())) == 2, versions  # two versions, not one
    for seed, version in versions.items():  # each holds the weights its own process trained
        config = json.loads((registry.root / version / "config.json").read_text())
        assert config["training"]["config"]["seed"] == int(seed)
    weights = [load_file(registry.root / v / "model.safetensors") for v in versions.values()]
    assert any(not np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    run_dirs = sorted(p.name for p in (home / "runs").iterdir())
    assert len(run_dirs) == 2, run_dirs  # one run folder each
    assert {v.name for v in ModelRegistry(registry.root).usable()} >= set(versions.values())
