"""The README's Quick start: napari opens with a sample image and the MedSegDiff widget docked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from napari_medsegdiff.__main__ import PLUGIN_NAME, WIDGET_NAME, open_quickstart, sample_keys


@pytest.mark.gui
def test_napari_docks_the_widget_from_the_manifest(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    assert widget is not None
    assert any(WIDGET_NAME in name for name in viewer.window.dock_widgets)


@pytest.mark.gui
def test_quickstart_opens_the_sample_and_docks_the_widget(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    open_quickstart(viewer)
    assert any(WIDGET_NAME in name for name in viewer.window.dock_widgets)
    if sample_keys():
        assert len(viewer.layers) >= 1
        assert viewer.layers[0].data.ndim >= 2


@pytest.mark.gui
@pytest.mark.slow
def test_launcher_starts_napari_and_saves_a_screenshot(tmp_path: Path) -> None:
    screenshot = tmp_path / "quickstart.png"
    result = subprocess.run(
        [sys.executable, "-m", "napari_medsegdiff", "--screenshot", str(screenshot)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert screenshot.stat().st_size > 10_000
    # taken once the pickers show the registry's selected model, not while they are being read
    assert f"saved {screenshot} (model: automatic (default / general)" in result.stdout, result.stdout
