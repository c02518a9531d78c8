"""The widget's "Read as" row: how the image's array is read, and the other reading one click away.

A 3D array of 2-4 planes could be a channel stack or a short volume (a 3-slice TIFF); *auto*
guesses channels. Where it guessed, the line says so and what the model will do with the
channels (a grey model mixes 3-4 planes by RGB luminance and drops a 4th), and a button reads
the planes as slices instead; after that click, another button goes back to the guess.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._layer_axes import (
    INTERPRETATIONS,
    VOLUME_ALONG_0,
    LayerAxes,
    UnsupportedLayerError,
    ambiguous_stack,
    channel_use,
    interpret,
)


class AxesRow(QWidget):
    """``box`` (the reading), ``label`` (what it means) and ``switch_button`` (the other reading)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.box = QComboBox()
        self.box.addItems(INTERPRETATIONS)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.switch_button = QPushButton()
        self.switch_button.setVisible(False)
        self.switch_button.clicked.connect(self._switch)
        self._switch_to = "auto"
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.box, 1)
        row.addWidget(self.switch_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.label)

    def read(self, shape: tuple[int, ...], rgb: bool, stacked: bool) -> LayerAxes:
        """The layer read as the box says (:class:`UnsupportedLayerError` if it cannot be)."""
        return interpret(shape, rgb, self.box.currentText(), stacked)

    def describe(
        self, shape: tuple[int, ...], rgb: bool, stacked: bool, model: str, model_channels: int | None
    ) -> None:
        """Say how the layer reads (and what was guessed), offering the other reading."""
        choice = self.box.currentText()
        try:
            axes = interpret(shape, rgb, choice, stacked)
        except UnsupportedLayerError as error:
            self.label.setText(str(error))
            self.switch_button.setVisible(False)
            return
        text, offer = axes.describe(), None
        if ambiguous_stack(shape, rgb, stacked) and choice == "auto":
            planes = int(shape[0])
            text = (
                f"Guessed: the {planes} planes on axis 0 are channels of one 2D image, "
                f"{channel_use(planes, model_channels)} for '{model}'. A volume of {planes} slices?"
            )
            offer = (f"Read as {planes} slices", VOLUME_ALONG_0)
        elif ambiguous_stack(shape, rgb, stacked) and choice == VOLUME_ALONG_0:
            offer = (f"Read as {int(shape[0])} channels", "auto")
        self.label.setText(text)
        self.switch_button.setVisible(offer is not None)
        if offer is not None:
            self.switch_button.setText(offer[0])
            self._switch_to = offer[1]

    def _switch(self) -> None:
        self.box.setCurrentText(self._switch_to)
