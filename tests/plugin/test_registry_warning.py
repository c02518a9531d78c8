"""Issue 28, class 2 in the plugin: a selection the registry had to give up is shown, not hidden."""

from __future__ import annotations

import shutil

import pytest

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("damage", ["registry-file", "folder-gone"])
def test_opening_the_widget_says_when_the_selected_model_fell_back(
    damage, make_napari_viewer, tiny_model, medsegdiff_home, notifications
):
    models = medsegdiff_home / "models"
    if damage == "registry-file":
        (models / "registry.json").write_text("{torn")
    else:
        shutil.rmtree(models / tiny_model)
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    warnings = [message for severity, message in notifications() if severity == "warning"]
    assert len(warnings) == 1 and "'default'" in warnings[0], notifications()
    assert dock.models.whole_image_version() == "default"  # what the warning says is what is used
