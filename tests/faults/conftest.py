"""Fixtures of the fault sweep: a registry with one good tiny model, and ways to run the CLI.

Every test here makes its own bad input and asserts what the user sees: the exit code,
one line on stderr, no traceback, and that nothing is lost or read from outside a store.
Most run the CLI in-process (``cli.main``); a few run it as a real process, where the
behaviour depends on the process (signals, encodings).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from medsegdiff_training import cli
from medsegdiff_training.checkpoint import save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.registry import ModelRegistry

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    """What a user sees from one command."""

    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def one_line_error(self) -> str:
        """Assert exit 1 with exactly one line on stderr, no traceback; return that line."""
        assert self.code == 1, (self.code, self.err)
        assert "Traceback" not in self.err and "Traceback" not in self.out, self.err
        notes = ("Segmenting", "Evaluating", "Fine-tuning")  # what the command is doing, said first
        lines = [line for line in self.error_lines if not line.startswith(notes)]
        assert len(lines) == 1, self.err
        assert lines[0].startswith("medsegdiff: error: ") and len(lines[0]) > len("medsegdiff: error: ") + 10
        return lines[0]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """Run ``medsegdiff ARGS`` in this process; a traceback escaping ``main`` fails the test."""

    def run(*args: str | os.PathLike[str]) -> Outcome:
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_process() -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """Run ``python -m medsegdiff_training ARGS`` as its own process (bytes out)."""

    def run(*args: str | os.PathLike[str] | bytes, env: dict[str, str] | None = None, timeout: float = 300):
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, sys.path)), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "medsegdiff_training", *[os.fsencode(a) for a in args]],
            capture_output=True,
            env=environment,
            timeout=timeout,
            check=False,
        )

    return run


def tiny_checkpoint(folder: Path) -> Path:
    """A tiny, untrained checkpoint folder (fast to load and to sample)."""
    return save_checkpoint(
        folder, MedSegDiffUNet(named_config("tiny")), DiffusionConfig(timesteps=50), PreprocessConfig()
    )


@pytest.fixture
def make_checkpoint() -> Callable[[Path], Path]:
    """``make_checkpoint(folder)`` writes a tiny checkpoint there."""
    return tiny_checkpoint


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """A registry folder holding one good user version, ``good``."""
    registry = ModelRegistry(tmp_path / "registry")
    registry.add(tiny_checkpoint(tmp_path / "checkpoint"), name="good")
    return registry


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    """A small grey PNG with a bright square."""
    from PIL import Image

    image = np.zeros((40, 36), np.uint8)
    image[10:25, 8:20] = 200
    path = tmp_path / "inputs" / "square.png"
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(image).save(path)
    return path


SAMPLING = ("--steps", "1", "--ensemble", "1", "--device", "cpu")
