"""The Layers > Segment menu commands, run through the manifest as napari runs them."""

from __future__ import annotations

import numpy as np


def test_the_menu_commands_reach_the_docked_widgets_corrections_panel(
    make_napari_viewer, tiny_model, notifications
):
    from npe2 import PluginManager

    viewer = make_napari_viewer()
    manager = PluginManager.instance()
    dialog = manager.get_command("napari-medsegdiff.finetune").exec(args=(viewer,))
    widget = viewer.window.dock_widgets["MedSegDiff (napari-medsegdiff)"]
    assert dialog is widget.corrections.finetune_dialog and dialog.isVisible()
    dialog.close()

    export = manager.get_command("napari-medsegdiff.export_correction")
    assert export.exec(args=(viewer,)) is None  # nothing to export yet: refused with a message
    assert any("could not export" in message for _, message in notifications())
    viewer.add_image(np.random.rand(32, 32), name="scan")
    labels = viewer.add_labels(np.zeros((32, 32), np.uint8), name="scan corrected")
    labels.data[4:12, 4:12] = 1
    entry = export.exec(args=(viewer,))
    assert entry is not None and len(widget.store) == 1
