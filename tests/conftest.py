"""Fixtures shared by the plugin and training tests.

Every test session gets its own temporary ``MEDSEGDIFF_HOME`` (model registry, corrections,
runs) and ``XDG_*`` folders (napari's settings and caches, Qt's runtime folder), so that
tests never read or write the user's real ones. They are set when this file is imported,
before any test module imports napari or the training package.
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
_XDG_FOLDERS = ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")

_session_root = Path(tempfile.mkdtemp(prefix="medsegdiff-tests-"))
_saved_environment = {name: os.environ.get(name) for name in (*_XDG_FOLDERS, MEDSEGDIFF_HOME)}
for _name in (*_XDG_FOLDERS, MEDSEGDIFF_HOME):
    _folder = _session_root / _name.lower()
    # Qt refuses a runtime folder that others can read.
    _folder.mkdir(mode=0o700)
    os.environ[_name] = str(_folder)


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
    """Tiny test models run fastest on one thread, and far faster than on two contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
