"""The widget's Prompts row: the prompts picker, Draw boxes, Propagate, and "same label for all"."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from ._prompts import AUTO, WHOLE_IMAGE, NoPromptsError, choose_prompts, draw_boxes_layer, prompt_layers

if TYPE_CHECKING:
    import napari

    from ._layer_axes import LayerAxes


class PromptsPanel(QWidget):
    """Which prompts a run uses; the segmenting itself stays with the dock widget."""

    def __init__(self, viewer: napari.Viewer, on_propagate: Callable[[], Any]) -> None:
        super().__init__()
        self.viewer = viewer
        self.prompts_box = QComboBox()
        self.prompts_box.setToolTip(
            "Segment the objects in these boxes (Shapes) or at these points (Points), one label each; "
            "the default takes the newest Shapes or Points layer with a prompt over the image."
        )
        self.draw_button = QPushButton("Draw boxes")
        self.draw_button.setToolTip("Add (or select) the Shapes layer '<image> prompts' in rectangle mode.")
        self.propagate_button = QPushButton("Propagate")
        self.propagate_button.setToolTip(
            "Volumes: segment the first prompt's object on this slice, then slice by slice both ways, "
            "each slice prompted by its neighbour's mask, until the object ends."
        )
        self.propagate_button.clicked.connect(on_propagate)
        self.same_label = QCheckBox("same label for all objects")
        self.same_label.setToolTip(
            "Give every object the segmentation layer's selected label instead of 1, 2, 3…"
        )
        # the picker gets its own row, so its choices are never cut short by the buttons
        self.prompts_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.prompts_box.setMinimumContentsLength(12)
        buttons = QHBoxLayout()
        buttons.addWidget(self.draw_button)
        buttons.addWidget(self.propagate_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.prompts_box)
        layout.addLayout(buttons)
        layout.addWidget(self.same_label)
        self.refresh()

    def refresh(self) -> None:
        """List the viewer's Shapes and Points layers, keeping the current choice if it is still there."""
        chosen = self.prompts_box.currentText()
        choices = [AUTO, WHOLE_IMAGE, *(layer.name for layer in prompt_layers(self.viewer))]
        self.prompts_box.clear()
        self.prompts_box.addItems(choices)
        self.prompts_box.setCurrentText(chosen if chosen in choices else AUTO)

    def draw_boxes(self, image_layer: Any, axes: LayerAxes) -> Any:
        """Select (or add) ``<image> prompts`` in rectangle mode, and pick it."""
        shapes = draw_boxes_layer(self.viewer, image_layer, axes)
        self.refresh()
        self.prompts_box.setCurrentText(shapes.name)
        return shapes

    def chosen(
        self, image_layer: Any, axes: LayerAxes, slice_index: int
    ) -> tuple[Any, list[Any]] | None | bool:
        """(prompts layer, prompts), None for the whole image, or False after a notification."""
        from napari.utils.notifications import show_error

        try:
            return choose_prompts(self.viewer, self.prompts_box.currentText(), image_layer, axes, slice_index)
        except NoPromptsError as error:
            show_error(f"MedSegDiff: {error}")
            return False
