"""Fixtures for the plugin tests: a tiny model in a temporary registry, notification capture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def tiny_model(medsegdiff_home: Path) -> str:
    """A tiny (32x32) model registered and selected, for whole images and for boxes, in the
    test's own registry (else boxes would go to the shipped ``general``)."""
    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.registry import ModelRegistry
    from napari_medsegdiff._models import forget_models

    forget_models()
    folder = save_checkpoint(
        medsegdiff_home / "tiny-checkpoint",
        MedSegDiffUNet(named_config("tiny")),
        DiffusionConfig(prediction="v"),
        PreprocessConfig(),
    )
    registry = ModelRegistry()
    registry.add(folder, name="tiny")
    registry.select("tiny")
    registry.select("tiny", role="boxes")
    yield "tiny"
    forget_models()


@pytest.fixture
def notifications():
    """The napari notifications sent during the test, as (severity, message)."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)

    def sent() -> list[tuple[str, str]]:
        return [(str(n.severity), str(n.message)) for n in notification_manager.records[start:]]

    return sent


@pytest.fixture
def widget(make_napari_viewer, tiny_model):
    """A viewer with the MedSegDiff widget docked through the plugin manifest."""
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    dock.advanced.steps.value = 3
    dock.advanced.ensemble.value = (
        1  # one sample unless a test asks for more (test_widget checks the defaults)
    )
    return dock


def synthetic_image(size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    return (disc * 120 + rng.normal(60, 20, (size, size))).clip(0, 255).astype(np.uint8)
