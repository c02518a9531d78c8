"""The Layers > Segment menu commands: they dock the MedSegDiff widget and use its panel.

Menu → corrections panel, in one hop: the panel owns the corrections store, the export
and the fine-tune dialog; the widget only hosts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari

    from ._corrections_panel import CorrectionsPanel


def _corrections_panel(viewer: napari.Viewer) -> CorrectionsPanel:
    """The docked widget's corrections panel (docking the widget first if needed)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    return widget.corrections


def open_finetune_dialog(viewer: napari.Viewer) -> Any:
    """Menu command: open the fine-tune dialog (the running one, if a fine-tune is under way)."""
    return _corrections_panel(viewer).open_finetune_dialog()


def export_correction(viewer: napari.Viewer) -> Any:
    """Menu command: export the current image and its corrected labels to the corrections store."""
    return _corrections_panel(viewer).export_correction()
