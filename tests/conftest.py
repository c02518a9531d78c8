"""Fixtures shared by the plugin and training tests.

Every test session gets its own temporary ``MEDSEGDIFF_HOME`` (model registry, corrections,
runs) and ``XDG_*`` folders (napari's settings and caches, Qt's runtime folder), so that
tests never read or write the user's real ones. They are set when this file is imported,
before any test module imports napari or the training package.

``--cpu-bf16=native|none`` runs the session under the precision policy of a CPU with (or
without) native bfloat16, whatever this CPU has (``MEDSEGDIFF_CPU_BF16``, which subprocesses
inherit); the tests whose outcome depends on that policy are marked ``precision_policy``, and
CI runs them once more with ``-m precision_policy --cpu-bf16=native`` (scripts/test.sh).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The training package's data-home variable (medsegdiff_training.paths.ENV_HOME); spelled out
# here so that this file imports nothing of the code under test.
MEDSEGDIFF_HOME = "MEDSEGDIFF_HOME"
CPU_BF16 = "MEDSEGDIFF_CPU_BF16"  # medsegdiff_training.precision.ENV_CPU_BF16
THREADS = "MEDSEGDIFF_THREADS"  # medsegdiff_training.threads.ENV_THREADS
_XDG_FOLDERS = ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")

_session_root = Path(tempfile.mkdtemp(prefix="medsegdiff-tests-"))
_saved_environment = {name: os.environ.get(name) for name in (*_XDG_FOLDERS, MEDSEGDIFF_HOME, CPU_BF16)}
for _name in (*_XDG_FOLDERS, MEDSEGDIFF_HOME):
    _folder = _session_root / _name.lower()
    # Qt refuses a runtime folder that others can read.
    _folder.mkdir(mode=0o700)
    os.environ[_name] = str(_folder)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-bf16",
        choices=("hardware", "native", "none"),
        default="hardware",
        help="the CPU precision policy to test: this CPU's (hardware), or that of a CPU with "
        "(native) or without (none) native bfloat16",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "precision_policy: the outcome depends on the CPU's bfloat16 policy (see --cpu-bf16)"
    )
    policy = config.getoption("--cpu-bf16")
    if policy != "hardware":
        os.environ[CPU_BF16] = policy


def pytest_report_header(config: pytest.Config) -> str:
    policy = config.getoption("--cpu-bf16")
    return f"CPU bfloat16 policy: {'this CPU' if policy == 'hardware' else policy + ' (forced)'}"


@pytest.fixture
def cpu_bf16_policy(monkeypatch: pytest.MonkeyPatch):
    """``cpu_bf16_policy("native" | "none")``: that CPU precision policy for one test."""
    return lambda policy: monkeypatch.setenv(CPU_BF16, policy)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved_environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(_session_root, ignore_errors=True)


@pytest.fixture
def medsegdiff_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, empty ``MEDSEGDIFF_HOME`` for one test (registry, corrections and runs)."""
    home = tmp_path / "medsegdiff-home"
    home.mkdir()
    monkeypatch.setenv(MEDSEGDIFF_HOME, str(home))
    yield home


@pytest.fixture(scope="session")
def repository_root() -> Path:
    """The checkout's root folder (the one holding ``napari.yaml``)."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (or ``$MEDSEGDIFF_SHARED_DATA``); tests that need
    it are skipped, with that reason, without it."""
    data = Path(
        os.environ.get("MEDSEGDIFF_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    if not data.is_dir():
        pytest.skip(f"no shared data folder at {data}")
    return data


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Tiny test models run fastest on one thread, and far faster than on two contended ones.

    ``MEDSEGDIFF_THREADS=1`` makes the CLI's ``--threads auto`` (and CLI processes) keep it so.
    """
    import torch

    threads, given = torch.get_num_threads(), os.environ.get(THREADS)
    torch.set_num_threads(1)
    os.environ[THREADS] = "1"
    yield
    torch.set_num_threads(threads)
    if given is None:
        os.environ.pop(THREADS, None)
    else:
        os.environ[THREADS] = given


@pytest.fixture(scope="session")
def dicom_factory():
    """``tests/dicom_factory.py``: small DICOM series made with pydicom (skips without it)."""
    import importlib.util

    pytest.importorskip("pydicom", reason="DICOM tests need the dicom extra (pydicom)")
    spec = importlib.util.spec_from_file_location(
        "dicom_factory", Path(__file__).with_name("dicom_factory.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- fine-tuning: a parent unlike any fresh model, and corrections to tune it on ----------------
PARENT_SEED = 1234  # not the trainer's seed 0: a fresh model from the config never equals the parent


@pytest.fixture
def make_parent(tmp_path: Path):
    """``make_parent(registry, name="parent", diffusion=None, preprocess=None, training=None,
    config=None, select=True)`` registers (and selects) a tiny parent model; returns its name.

    Its weights are no fresh initialisation: built from another seed than the trainer's and
    every parameter perturbed (the zero-initialised output layers too), so a fine-tune that
    started from ``model.config`` instead of the parent's weights could not pass for one.
    """
    import torch

    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
    from medsegdiff_training.model import MedSegDiffUNet

    def make(
        registry, name="parent", *, diffusion=None, preprocess=None, training=None, config=None, select=True
    ):
        generator = torch.Generator().manual_seed(PARENT_SEED)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(PARENT_SEED)
            network = MedSegDiffUNet(config or named_config("tiny"))
        with torch.no_grad():
            for parameter in network.parameters():
                parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
        folder = save_checkpoint(
            tmp_path / f"{name}-checkpoint",
            network,
            diffusion or DiffusionConfig(),
            preprocess or PreprocessConfig(),
            **({} if training is None else {"training": training}),
        )
        registry.add(folder, name=name)
        if select:
            registry.select(name)
        return name

    return make


def blob_correction(rng, label: int = 1, channels: int = 0):
    """A 32x32 image with a brighter 12x12 square, and its label map (``label`` in the square)."""
    import numpy as np

    labels = np.zeros((32, 32), np.uint8)
    row, col = rng.integers(10, 22, 2)
    labels[row - 6 : row + 6, col - 6 : col + 6] = label
    image = rng.normal(0.3, 0.1, (32, 32)) + 0.5 * (labels > 0)
    if channels:
        image = np.stack([image] * channels, axis=-1)
    return image, labels


def blob_pair(rng, size: int = 36):
    """A grey ``size`` x ``size`` uint8 image with a brighter 12x12 square, and its 0/255 mask."""
    import numpy as np

    mask = np.zeros((size, size), np.uint8)
    row, col = rng.integers(10, size - 10, 2)
    mask[row - 6 : row + 6, col - 6 : col + 6] = 255
    image = (rng.normal(70, 15, (size, size)) + (mask > 0) * 110).clip(0, 255).astype(np.uint8)
    return image, mask


def write_blob_folder(root: Path, count: int, mask_suffix: str = ".png", train: int | None = None) -> Path:
    """``root/images/case<i>.png`` and ``root/masks/case<i><mask_suffix>``: ``count`` :func:`blob_pair`
    files (seed 0); with ``train``, a header-less split.csv (the first ``train`` train, the rest test)."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        image, mask = blob_pair(rng)
        Image.fromarray(image).save(root / "images" / f"case{index}.png")
        Image.fromarray(mask).save(root / "masks" / f"case{index}{mask_suffix}")
    if train is not None:
        rows = [f"case{index},{'train' if index < train else 'test'}" for index in range(count)]
        (root / "split.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def blob_data():
    """The small blob data the CLI tests train on: ``blob_data.pair(rng) -> (image, mask)``
    (:func:`blob_pair`) and ``blob_data.folder(root, count, mask_suffix, train) -> root``
    (:func:`write_blob_folder`)."""
    from types import SimpleNamespace

    return SimpleNamespace(pair=blob_pair, folder=write_blob_folder)


@pytest.fixture
def blob():
    """:func:`blob_correction`: ``blob(rng, label=1, channels=0) -> (image, labels)``."""
    return blob_correction


@pytest.fixture
def parent_training() -> dict | None:
    """What the :func:`finetune_setup` parent's checkpoint records as its ``training``
    (``None``: nothing, so it names no data and used the paper's loss); a test module
    overrides this fixture to give its parent a training record."""
    return None


@pytest.fixture
def finetune_setup(tmp_path: Path, make_parent, parent_training):
    """(registry, store, tmp_path): a registry whose selected "parent" is a tiny model unlike
    any fresh one (:func:`make_parent`, its ``training`` record :func:`parent_training`), and a
    store of five blob corrections it predicted empty."""
    import numpy as np

    from medsegdiff_training.corrections import CorrectionsStore
    from medsegdiff_training.registry import ModelRegistry

    registry = ModelRegistry(tmp_path / "models", default_model=None, shipped_models=None)
    make_parent(registry, "parent", training=parent_training)
    store = CorrectionsStore(tmp_path / "corrections")
    rng = np.random.default_rng(0)
    for _ in range(5):
        image, labels = blob_correction(rng)
        store.add(image, labels, prediction=np.zeros_like(labels), model_version="parent")
    return registry, store, tmp_path
